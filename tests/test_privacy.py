from bot.privacy import hash_id, redact
from bot.turnlog import summarise_last_turn


def test_redacts_phones_documents_and_emails():
    text = "Soy Ana, mi DNI es 45781234, cel +51 987 654 321, correo ana.perez@gmail.com, CE 001234567"
    cleaned = redact(text)
    for secret in ("45781234", "987 654 321", "ana.perez@gmail.com", "001234567"):
        assert secret not in cleaned
    assert "Soy Ana" in cleaned


def test_hash_is_stable_and_hides_the_id():
    assert hash_id("whatsapp:+51987654321") == hash_id("whatsapp:+51987654321")
    assert "987654321" not in hash_id("whatsapp:+51987654321")


def test_turn_line_names_intent_actions_and_latency_but_no_text():
    events = [
        {"event": "action", "name": "action_listen", "timestamp": 1.0},
        {
            "event": "user",
            "text": "mi numero es 987654321",
            "timestamp": 10.0,
            "input_channel": "rest",
            "metadata": {"received_at": 9.9},
            "parse_data": {"intent": {"name": "contact_channels", "confidence": 0.93}},
        },
        {"event": "action", "name": "action_extract_slots", "timestamp": 10.01},
        {"event": "action", "name": "action_answer", "timestamp": 10.02},
        {"event": "bot", "text": "Puede llamar al 0800-16872", "timestamp": 10.03},
        {"event": "action", "name": "action_listen", "timestamp": 10.04},
    ]
    line = summarise_last_turn("whatsapp:+51987654321", events, now=10.0).log_line()
    assert "intent=contact_channels" in line and "confidence=0.93" in line
    assert "actions=action_answer " in line and "channel=rest" in line and "latency_ms=100" in line
    assert "987654321" not in line and "0800" not in line


def test_every_log_record_is_redacted_once_installed(caplog):
    import logging

    from bot.privacy import install_log_redaction

    install_log_redaction()
    install_log_redaction()  # idempotent
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("rasa.core.processor").debug("Received user message '%s'", "mi dni 45781234 y a@b.pe")
    assert "45781234" not in caplog.text and "a@b.pe" not in caplog.text
    assert "[número]" in caplog.text and "[correo]" in caplog.text


def test_pseudonyms_and_figures_in_log_lines_survive_redaction():
    line = "turn conversation=655e786674d9 channel=rest intent=greet confidence=0.98 latency_ms=132"
    assert redact(line) == line
