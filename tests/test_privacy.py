import pytest

from bot.privacy import hash_id, redact
from bot.turnlog import summarise_last_turn


def test_redacts_phones_documents_and_emails():
    text = "Soy Ana, mi DNI es 45781234, cel +51 987 654 321, correo ana.perez@gmail.com, CE 001234567"
    cleaned = redact(text)
    for secret in ("45781234", "987 654 321", "ana.perez@gmail.com", "001234567"):
        assert secret not in cleaned
    assert "Soy Ana" in cleaned
    assert redact("llame al 987-654-321, DNI 45781234-5.") == "llame al [número], DNI [número]."


def test_model_file_names_are_not_taken_for_numbers():
    line = "Loading model models/20261203-043602-electric-annuity.tar.gz"
    assert redact(line) == line


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


# --- pseudonyms: keyed, so that a phone number cannot be found by trying them all -------------------


def test_a_pseudonym_is_an_hmac_under_the_deployment_key():
    import hashlib
    import hmac

    conversation = "whatsapp:+51987654321"
    expected = hmac.new(b"clave-del-despliegue", conversation.encode(), hashlib.sha256).hexdigest()[:12]
    assert hash_id(conversation, key=b"clave-del-despliegue") == expected
    assert hash_id(conversation, key=b"otra-clave") != expected
    # The old pseudonym, an unsalted sha256, anyone could compute for every mobile number.
    assert hash_id(conversation) != hashlib.sha256(conversation.encode()).hexdigest()[:12]
    assert len(hash_id(conversation)) == 12 and hash_id(conversation) == hash_id(conversation)


def test_the_key_is_log_pseudonym_key_or_one_generated_once_in_a_private_file(tmp_path):
    import stat

    from bot.privacy import pseudonym_key
    from bot.settings import Settings

    key_file = tmp_path / "var" / "log_pseudonym.key"
    assert pseudonym_key(Settings.from_env({"LOG_PSEUDONYM_KEY": "secreto"}), key_file) == b"secreto"
    assert not key_file.exists()

    generated = pseudonym_key(Settings.from_env({}), key_file)
    assert len(generated) == 64 and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert pseudonym_key(Settings.from_env({}), key_file) == generated  # kept, not generated anew
    assert list(key_file.parent.iterdir()) == [key_file]  # no temporary file left behind

    key_file.chmod(0o644)  # e.g. copied by hand: made private again when read
    assert pseudonym_key(Settings.from_env({}), key_file) == generated
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_processes_starting_at_once_agree_on_one_key(tmp_path):
    import threading

    from bot.privacy import pseudonym_key
    from bot.settings import Settings

    key_file, keys = tmp_path / "log_pseudonym.key", []
    start = threading.Barrier(8)

    def read() -> None:
        start.wait()
        keys.append(pseudonym_key(Settings.from_env({}), key_file))

    workers = [threading.Thread(target=read) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(keys) == 8 and len(set(keys)) == 1
    assert key_file.read_text().strip().encode() == keys[0]


def test_secret_files_are_written_for_their_owner_only(tmp_path):
    import stat

    from bot.privacy import write_private

    write_private(tmp_path / "secreto", "x")
    write_private(tmp_path / "secreto", "y")
    assert (tmp_path / "secreto").read_text() == "y"
    assert stat.S_IMODE((tmp_path / "secreto").stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        write_private(tmp_path / "secreto", "z", exclusive=True)
    assert (tmp_path / "secreto").read_text() == "y" and len(list(tmp_path.iterdir())) == 1


# --- exceptions in the logs -----------------------------------------------------------------------


def test_an_exception_logged_with_its_traceback_is_redacted_too(caplog):
    import logging

    from bot.privacy import install_log_redaction

    install_log_redaction()
    logger = logging.getLogger("rasa.core.processor")
    with caplog.at_level(logging.ERROR):
        try:
            raise ValueError("no se pudo enviar a whatsapp:+51987654321 (ana.perez@gmail.com)")
        except ValueError:
            logger.exception("message of %s failed", "DNI 45781234")
    assert "Traceback" in caplog.text and "ValueError: no se pudo enviar" in caplog.text
    for secret in ("987654321", "ana.perez@gmail.com", "45781234"):
        assert secret not in caplog.text
    record = caplog.records[-1]
    assert record.exc_info is None and "[número]" in record.exc_text and "[correo]" in record.exc_text


# --- redaction is linear: a long message cannot stall the server -----------------------------------


@pytest.mark.parametrize(
    "adversarial",
    [
        "1" * 100_000,  # the e-mail pattern used to retry its local part from every digit
        "a" * 100_000,
        "1" * 99_998 + "ab",
        "1 " * 50_000,
        "1 " * 49_999 + "1a",
        "1-" * 50_000 + "a",
        "a@" * 50_000,
        "a." * 50_000 + "@",
        ("12345 " * 16_667)[:100_000],
        "x@" + "a-" * 49_999,
    ],
    ids=lambda text: f"{text[:6]!r}…",
)
def test_redaction_takes_linear_time_on_adversarial_input(adversarial):
    import time

    started = time.perf_counter()
    redact(adversarial)
    assert time.perf_counter() - started < 2.0


def test_addresses_are_still_found_whole():
    assert redact("escriba a juan.perez+som@trabajo.gob.pe hoy") == "escriba a [correo] hoy"
    assert redact("ana@gmail.com, beto@yahoo.es") == "[correo], [correo]"
    assert redact("usuario@localhost") == "usuario@localhost"  # no domain: not an address
