"""Text handling for chat apps (bot/messaging.py): splitting, numbered options, limits, escaping."""

from __future__ import annotations

import pytest
from standins import telegram_html_problem

from bot.messaging import (
    TELEGRAM_MAX_CALLBACK_BYTES,
    CallbackData,
    ExpiringMap,
    Flood,
    FloodLimiter,
    RecentIds,
    as_free_text,
    cut_input,
    match_option,
    numbered_options,
    split_message,
    telegram_html,
)

MENU = (
    ("Quiero trabajar afuera", "/work_abroad"),
    ("Ya trabajo afuera", "/rights_abroad"),
    ("Quiero volver al Perú", "/return_to_peru"),
    ("Ya regresé al Perú", "/returned_migrant"),
)


def test_short_text_is_one_message_even_with_blank_lines():
    text = "Primer párrafo.\n\nSegundo párrafo."
    assert split_message(text, 1600) == [text]


def test_long_text_is_split_in_order_at_sentence_ends_within_the_limit():
    sentences = [f"Oración número {n} sobre trámites de migración laboral." for n in range(120)]
    text = " ".join(sentences)
    chunks = split_message(text, 500)
    assert len(chunks) > 1
    assert all(len(chunk) <= 500 for chunk in chunks)
    assert all(chunk.endswith(".") for chunk in chunks), "every chunk ends where a sentence ends"
    assert " ".join(chunks) == text


def test_paragraph_breaks_inside_a_chunk_are_kept():
    text = ("Un párrafo corto.\n\n" * 40).strip()
    chunks = split_message(text, 200)
    assert all(len(c) <= 200 for c in chunks)
    assert "\n\n" in chunks[0]
    assert "".join(c.replace("\n\n", "") for c in chunks) == text.replace("\n\n", "")


def test_a_sentence_or_word_longer_than_the_limit_is_still_cut_within_it():
    words = "palabra " * 100 + "https://example.pe/" + "x" * 250
    chunks = split_message(words, 100)
    assert all(len(c) <= 100 for c in chunks)
    assert "".join(chunks).replace(" ", "") == words.replace(" ", "")


def test_decimals_and_numbers_do_not_end_a_sentence():
    text = "Cuesta 2.5 soles. " * 60
    assert all(not c.endswith("2.") for c in split_message(text, 100))


def test_over_long_input_is_cut_at_a_word_and_reported():
    text = "consulta " * 300
    cut, was_cut = cut_input(text, 1500)
    assert was_cut and len(cut) <= 1500 and cut.endswith("consulta")
    assert cut_input("hola", 1500) == ("hola", False)


def test_numbered_options_are_one_message_with_the_header_and_titles():
    text = numbered_options("¿En qué le puedo ayudar?", "Responda con el número:", [t for t, _ in MENU])
    assert text == (
        "¿En qué le puedo ayudar?\n\nResponda con el número:\n"
        "1. Quiero trabajar afuera\n2. Ya trabajo afuera\n3. Quiero volver al Perú\n4. Ya regresé al Perú"
    )
    assert "/" not in text, "payloads never reach the person"


@pytest.mark.parametrize(
    "reply, payload",
    [
        ("1", "/work_abroad"),
        (" 2 ", "/rights_abroad"),
        ("uno", "/work_abroad"),
        ("Tres", "/return_to_peru"),
        ("la 2", "/rights_abroad"),
        ("opción 4", "/returned_migrant"),
        ("4.", "/returned_migrant"),
        ("1️⃣", "/work_abroad"),
        ("quiero volver al peru", "/return_to_peru"),
        ("Ya regresé al Perú!", "/returned_migrant"),
        ("volver", "/return_to_peru"),
        ("regrese", "/returned_migrant"),
    ],
)
def test_a_number_or_the_option_words_map_back_to_the_payload(reply, payload):
    assert match_option(reply, MENU) == payload


@pytest.mark.parametrize(
    "reply",
    ["9", "0", "no", "afuera", "Perú", "quiero volver al peru el proximo año, que hago", "hola", ""],
)
def test_anything_else_goes_to_the_nlu(reply):
    assert match_option(reply, MENU) is None


def test_without_remembered_options_nothing_maps():
    assert match_option("1", ()) is None


def test_typed_payloads_are_read_as_words():
    assert as_free_text("/human_handoff") == "human_handoff"
    assert as_free_text('  /inform{"entry": "x"}') == 'inform{"entry": "x"}'
    assert as_free_text("hola") == "hola"


def test_telegram_html_escapes_text_and_keeps_our_bold():
    html = telegram_html("*SOM* <script> & 3 < 4 * 2")
    assert html == "<b>SOM</b> &lt;script&gt; &amp; 3 &lt; 4 * 2"
    assert telegram_html_problem(html) is None
    assert telegram_html_problem(telegram_html("a *b\nc* d <b>x</b>")) is None


def test_recent_ids_see_a_delivery_once_until_it_expires():
    recent = RecentIds(ttl=60)
    assert recent.first_time("SM1", now=0) is True
    assert recent.first_time("SM1", now=30) is False
    assert recent.first_time("SM2", now=30) is True
    assert recent.first_time("SM1", now=61) is True


def test_expiring_map_is_bounded():
    cache: ExpiringMap[int, int] = ExpiringMap(ttl=60, max_items=3)
    for n in range(5):
        cache.set(n, n, now=0)
    assert [cache.get(n, now=1) for n in range(5)] == [None, None, 2, 3, 4]


def test_flood_limiter_warns_once_then_drops_until_the_window_passes():
    flood = FloodLimiter(limit=3, window=10)
    verdicts = [flood.check("whatsapp:+51911111111", now=t) for t in (0, 1, 2, 3, 4, 5)]
    assert verdicts == [Flood.ALLOW] * 3 + [Flood.WARN, Flood.DROP, Flood.DROP]
    assert flood.check("whatsapp:+51922222222", now=5) is Flood.ALLOW, "limits are per sender"
    assert flood.check("whatsapp:+51911111111", now=12) is Flood.ALLOW


def test_callback_data_fits_telegram_and_long_payloads_come_back():
    data = CallbackData()
    assert data.for_payload("/work_abroad") == "/work_abroad"
    long_payload = '/inform{"entry": "' + "social_security.a_very_long_entry_identifier" * 2 + '"}'
    key = data.for_payload(long_payload)
    assert len(key.encode()) <= TELEGRAM_MAX_CALLBACK_BYTES
    assert data.payload(key) == long_payload
    assert data.payload("/work_abroad") == "/work_abroad"
    assert CallbackData().payload(key) is None, "after a restart the key is unknown"
