"""The dialogue logic over the shipped knowledge base, without Rasa."""

from __future__ import annotations

import pytest

from bot.dialogue import NOT_UNDERSTOOD, REQUESTED, SENSITIVE, Responder, Turn, payload
from bot.services import vocabulary
from bot.vocabulary import WORDS_COMPARED, Vocabulary


@pytest.fixture(scope="module")
def responder(kb) -> Responder:
    return Responder(kb, vocabulary().current())


def text_of(reply) -> str:
    return "\n".join(m.text for m in reply.messages)


def buttons_of(reply) -> list[tuple[str, str]]:
    return [b for m in reply.messages for b in m.buttons]


def test_first_greeting_shows_privacy_notice_once_and_the_seven_audiences(responder, kb):
    first = responder.respond(Turn("greet"))
    assert "asistente virtual" in text_of(first)
    assert kb.entry("conversation.privacy").messages[0] in text_of(first)
    assert first.slots["shown_privacy"] is True
    assert [p for _, p in buttons_of(first)] == [payload(item.intent) for item in kb.menu]
    again = responder.respond(Turn("greet", slots={"shown_privacy": True}))
    assert kb.entry("conversation.privacy").messages[0] not in text_of(again)


def test_social_security_without_country_asks_for_it_and_remembers_the_topic(responder):
    reply = responder.respond(Turn("social_security", text="que convenios de seguridad social hay"))
    assert "¿De qué país" in text_of(reply)
    assert reply.slots["topic"] == "social_security"


def test_follow_up_with_a_country_answers_for_that_country(responder):
    reply = responder.respond(Turn("inform", text="con chile", country="chile", slots={"topic": "social_security"}))
    assert "Chile" in text_of(reply) and "2006" in text_of(reply)
    assert reply.slots["country"] == "Chile"


def test_spain_agreement_is_stated_with_its_source(responder):
    reply = responder.respond(Turn("social_security", country="España"))
    assert "2003" in text_of(reply) and "Fuente: Boletín Oficial del Estado (España) — https://" in text_of(reply)


def test_unverified_agreement_is_not_stated_and_points_to_the_som(responder):
    reply = responder.respond(Turn("social_security", country="Estados Unidos"))
    assert "No tengo información confirmada" in text_of(reply)
    assert "0800-16872" in text_of(reply)


@pytest.mark.parametrize("country", ["Bolivia", "colombiano", "ecuatoriana"])
def test_andean_nationals_wanting_to_work_in_peru_go_to_sivitma(responder, country):
    reply = responder.respond(Turn("foreigner_work_peru", country=country))
    assert "SIVITMA" in text_of(reply) and "empleador" in text_of(reply).lower()


def test_other_foreigners_get_the_foreign_worker_rules(responder):
    reply = responder.respond(Turn("andean_worker", country="venezolano"))
    assert "no es miembro de la Comunidad Andina" in text_of(reply)


def test_country_typed_in_free_text_is_found_when_nlu_missed_it(responder):
    reply = responder.respond(Turn("social_security", text="aporte varios años en espana"))
    assert reply.slots["country"] == "España"


def test_job_offer_warns_gives_1818_and_offers_an_advisor(responder):
    in_japan = responder.respond(Turn("job_offer_check", text="me ofrecen trabajo en japon, sera real?"))
    assert in_japan.entry == "dest.japan.scams", "the destination's own warning signs"
    reply = responder.respond(Turn("job_offer_check", text="me ofrecen un trabajo afuera, sera real?"))
    assert "1818" in text_of(reply)
    assert payload("human_handoff") in [p for _, p in buttons_of(reply)]
    assert reply.slots["pending_offer"] == REQUESTED
    accepted = responder.respond(Turn("affirm", slots={"pending_offer": REQUESTED}))
    assert accepted.handoff == REQUESTED


@pytest.mark.parametrize(
    "intent, text",
    [
        ("job_offer_check", "la agencia se quedo con mi pasaporte y no me lo devuelven"),
        ("rights_abroad", "mi empleador me retiene el dni y no me dejan salir de la casa"),
        ("family_abroad", "creo que mi hija es victima de trata de personas en argentina"),
    ],
)
def test_signs_of_trafficking_earn_a_priority_offer(responder, intent, text):
    reply = responder.respond(Turn(intent, text=text))
    assert "1818" in text_of(reply) and "prioridad" in text_of(reply)
    assert reply.slots["pending_offer"] == SENSITIVE
    accepted = responder.respond(Turn("human_handoff", slots={"pending_offer": SENSITIVE}))
    assert accepted.handoff == SENSITIVE


def test_asking_for_a_person_hands_off(responder):
    assert responder.respond(Turn("human_handoff")).handoff == REQUESTED


def test_fallback_asks_did_you_mean_with_human_titles_then_offers_an_advisor(responder, kb):
    ranking = (("nlu_fallback", 0.5), ("social_security", 0.3), ("return_to_peru", 0.2), ("greet", 0.1))
    first = responder.respond(Turn("nlu_fallback", ranking=ranking))
    assert "¿Quiso decir" in text_of(first)
    assert buttons_of(first)[:2] == [
        (kb.title("social_security"), payload("social_security")),
        (kb.title("return_to_peru"), payload("return_to_peru")),
    ]
    second = responder.respond(Turn("nlu_fallback", ranking=ranking, slots={"fallback_streak": 1.0}))
    assert second.slots["pending_offer"] == NOT_UNDERSTOOD
    assert responder.respond(Turn("affirm", slots=second.slots)).handoff == NOT_UNDERSTOOD
    assert payload("human_handoff") in [p for _, p in buttons_of(second)]


def test_a_country_alone_offers_topics_about_it(responder):
    reply = responder.respond(Turn("inform", text="japon", country="japon"))
    assert "Japón" in text_of(reply)
    assert all('"country": "Japón"' in p for _, p in buttons_of(reply))


def test_follow_up_buttons_open_entries(responder, kb):
    entry = kb.entry("return.card")
    reply = responder.respond(Turn("inform", entry="return.card"))
    assert entry.messages[0] in text_of(reply)


@pytest.mark.parametrize(
    "intent, expected",
    [
        ("contact_channels", "0800-16872"),
        ("return_to_peru", "30001"),
        ("andean_worker", "SIVITMA"),
        ("som_info", "gratuit"),
        ("bot_challenge", "asistente virtual"),
    ],
)
def test_key_facts_per_topic(responder, intent, expected):
    assert expected in text_of(responder.respond(Turn(intent)))


def test_a_bare_detail_with_nothing_to_attach_it_to_counts_as_not_understood(responder):
    ranking = (("inform", 0.6), ("out_of_scope", 0.2), ("som_info", 0.1), ("work_abroad", 0.05))
    first = responder.respond(Turn("inform", text="qwpoe rtuy", ranking=ranking))
    assert "¿Quiso decir" in text_of(first) and first.slots["fallback_streak"] == 1.0


@pytest.mark.parametrize("mashing", ["kkkk", "qwpoe rtuy", "xkcd qwerty zzz"])
def test_keyboard_mashing_is_not_understood_whatever_the_classifier_said(responder, kb, mashing):
    reply = responder.respond(Turn("affirm", text=mashing, ranking=(("affirm", 0.93), ("work_abroad", 0.05)),
                                   slots={"pending_offer": REQUESTED}))  # fmt: skip
    assert reply.handoff is None  # "kkkk" is not a yes to the advisor on offer
    assert kb.entry("conversation.did_you_mean").messages[0] in text_of(reply)
    assert reply.slots["fallback_streak"] == 1.0


@pytest.mark.parametrize("typed", ["kiero trabajr en italya", "jubilasion", "ok", "/work_abroad", "2000"])
def test_misspelt_short_or_button_messages_are_still_read(typed):
    assert not vocabulary().current().is_unreadable(typed)


def test_the_unreadable_check_costs_the_same_for_a_long_message_as_for_a_short_one():
    """Counted in comparisons, not timed: a 1,500-character mash compares as few words as a short one."""
    known = vocabulary().current()
    fresh = Vocabulary(known.words)
    compared: list[str] = []
    compare = fresh._compare_with_known
    fresh._is_close_to_known = lambda word: compared.append(word) or compare(word)
    mash = " ".join(f"qz{chr(97 + i % 26)}x{chr(97 + (i * 7) % 26)}w{i}" for i in range(300))[:1500]
    assert fresh.is_unreadable(mash)
    assert len(compared) == WORDS_COMPARED
    assert not fresh.is_unreadable(mash + " trabajar")  # one known word anywhere is enough to read it
