"""Question-level answers over the shipped knowledge base: the ranker, follow-ups in context and no repeats.

The classifier's intent is given, as Rasa would give it, so these run without a trained model; the
held-out sets in tests/nlu/entries.yml and tests/stories/ measure the same with the real NLU (`make eval`).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import yaml

from bot.dialogue import Responder, Turn
from bot.followups import ASPECT_PATTERNS, asked_aspects, is_short
from bot.knowledge import ASPECTS, KnowledgeBase, LiveKnowledgeBase
from bot.ranker import Context, LiveRanker
from bot.settings import CONTENT_DIR


@pytest.fixture(scope="module")
def responder(kb) -> Responder:
    return Responder(kb)


def converse(responder: Responder, *turns: tuple[str, str] | tuple[str, str, str]):
    """Play (intent, text[, country]) turns, carrying the slots as the action does; return the replies."""
    slots: dict = {"shown_privacy": True}
    replies = []
    for intent, text, *country in turns:
        reply = responder.respond(Turn(intent, text=text, country=country[0] if country else None, slots=dict(slots)))
        slots.update(reply.slots)
        replies.append(reply)
    return replies


def text_of(reply) -> str:
    return "\n".join(m.text for m in reply.messages)


def test_a_leaflet_fact_asked_in_free_text_is_answered_even_when_the_classifier_gave_up(responder):
    (reply,) = converse(responder, ("nlu_fallback", "donde quedan ustedes? quiero ir personalmente"))
    assert reply.entry == "som.address"


def test_a_specific_question_gets_its_specific_entry_not_the_topics_main_one(responder):
    (reply,) = converse(
        responder, ("foreigner_work_peru", "soy venezolano, como saco permiso para trabajar en peru", "Venezuela")
    )
    assert reply.entry == "foreigner.venezuela"


def test_a_follow_up_without_an_entry_is_answered_honestly_within_the_topic(responder):
    first, follow_up = converse(
        responder,
        ("foreigner_work_peru", "soy venezolano, como saco permiso para trabajar en peru", "Venezuela"),
        ("out_of_scope", "y cuanto demora"),
    )
    assert first.entry == "foreigner.venezuela"
    assert follow_up.prompt == "followup.no_detail"
    said = text_of(follow_up)
    assert "el plazo" in said and "Trabajadores venezolanos" in said and "Migraciones" in said
    assert ("Hablar con un asesor", "/human_handoff") in follow_up.messages[-1].buttons
    assert "no lo puedo atender" not in said


@pytest.mark.parametrize("intent", ["contact_channels", "som_info", "out_of_scope"])
def test_what_it_costs_after_the_address_is_the_soms_own_cost_not_the_phone(responder, intent):
    address, cost = converse(
        responder, ("contact_channels", "donde quedan ustedes? quiero ir personalmente"), (intent, "¿y cuánto cuesta?")
    )
    assert (address.entry, cost.entry) == ("som.address", "som.cost")


def test_a_follow_up_is_answered_by_the_entry_for_that_aspect_in_the_conversations_country(responder):
    first, cost = converse(
        responder,
        ("work_abroad", "quiero irme a trabajar a españa como hago", "España"),
        ("out_of_scope", "y cuanto cuesta?"),
    )
    assert first.entry == "dest.spain.overview"
    assert cost.entry == "dest.spain.documents"


def test_an_answer_just_given_is_not_repeated(responder):
    first, again = converse(
        responder,
        ("work_abroad", "quiero irme a trabajar a españa como hago", "España"),
        ("work_abroad", "y necesito visa?"),
    )
    assert first.entry == "dest.spain.overview"
    assert again.entry != first.entry
    assert text_of(again) != text_of(first)


def test_the_same_detail_for_another_country(responder):
    _, switched = converse(
        responder,
        ("work_abroad", "que documentos piden para la visa de trabajo en españa", "España"),
        ("inform", "y para chile?", "Chile"),
    )
    assert switched.entry == "dest.chile.documents"


def test_destination_questions_reach_the_country_guide(responder):
    cases = [
        ("work_abroad", "puedo entrar a chile como turista y buscar trabajo alla?", "Chile", "dest.chile.tourist"),
        ("work_abroad", "mi abuelo era japones, puedo trabajar en japon?", "Japón", "dest.japan.nikkei"),
        (
            "job_offer_check",
            "vi en tiktok ofertas en fabricas de corea, como postulo?",
            "Corea del Sur",
            "dest.korea.eps",
        ),
    ]
    for intent, text, country, expected in cases:
        (reply,) = converse(responder, (intent, text, country))
        assert reply.entry == expected, text


def test_the_source_line_names_the_institution(responder):
    (reply,) = converse(responder, ("work_abroad", "puedo entrar a chile como turista y buscar trabajo alla?", "Chile"))
    assert "Fuente: Servicio Nacional de Migraciones de Chile — https://" in text_of(reply)


@pytest.fixture
def content_copy(tmp_path) -> Path:
    target = tmp_path / "content"
    shutil.copytree(CONTENT_DIR, target)
    return target


def _add_question(content_dir: Path, file: str, entry_id: str, question: str) -> None:
    path = content_dir / file
    data = yaml.safe_load(path.read_text())
    next(e for e in data["entries"] if e["id"] == entry_id)["questions"].append(question)
    path.write_text(yaml.safe_dump(data, allow_unicode=True))


def test_a_question_an_editor_adds_is_answered_after_the_reload_without_retraining(content_copy, monkeypatch):
    monkeypatch.setattr(LiveKnowledgeBase, "CHECK_INTERVAL_SECONDS", 0.0)
    live, rankers = LiveKnowledgeBase(content_copy), LiveRanker()
    question = "el zorzal del parque canta de noche"
    context = Context(intent_scores={"nlu_fallback": 1.0})
    assert rankers.for_kb(live.current()).rank(question, context)[0].entry.id != "som.virtual_appointment"
    _add_question(content_copy, "som.yml", "som.virtual_appointment", question)
    time.sleep(0.01)
    kb = live.current()
    assert rankers.for_kb(kb).rank(question, context)[0].entry.id == "som.virtual_appointment"


def test_two_entries_equally_close_are_offered_as_a_choice(content_copy):
    question = "tramite zeta para la constancia omega"
    path = content_copy / "som.yml"
    data = yaml.safe_load(path.read_text())
    for entry in data["entries"]:
        if entry["id"] in ("som.email", "som.website"):
            entry["questions"] = [question] * 30  # the same questions: only the titles differ
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    (reply,) = converse(Responder(KnowledgeBase.load(content_copy)), ("nlu_fallback", question))
    assert reply.prompt == "followup.which_one"
    titles = [title for title, _ in reply.messages[0].buttons]
    kb = KnowledgeBase.load(content_copy)
    assert kb.entry("som.email").title in titles and kb.entry("som.website").title in titles


@pytest.mark.parametrize(
    "text, aspects",
    [
        ("y cuanto cuesta?", {"cost"}),
        ("cuanto demora el tramite", {"duration"}),
        ("y dónde?", {"where"}),
        ("q documentos piden", {"documents"}),
        ("¿y quién hace el trámite?", {"who"}),
        ("y necesito visa?", {"permit"}),
        ("puedo ir de turista", {"tourist"}),
        ("me convalidan el titulo?", {"recognition"}),
        ("hola, buenas tardes", set()),
    ],
)
def test_follow_up_aspects_are_read_from_how_people_ask(text, aspects):
    assert asked_aspects(text) == aspects


def test_every_aspect_the_content_may_use_can_be_asked():
    assert set(ASPECT_PATTERNS) == ASPECTS
    assert is_short("y eso cuanto demora?") and not is_short(
        "quisiera saber cuanto demora el tramite de la tarjeta del migrante retornado en lima"
    )


def test_an_unsourced_fee_on_a_destination_is_answered_honestly_with_who_has_it(responder):
    first, fee = converse(
        responder,
        ("work_abroad", "como hago para trabajar legalmente en corea", "Corea del Sur"),
        ("out_of_scope", "y cuanto cuesta?"),
    )
    assert first.entry == "dest.korea.overview"
    assert fee.entry == "dest.korea.documents"
    said = text_of(fee)
    assert "no tengo confirmada la tasa" in said and "Embajada de Corea" in said


def test_who_does_the_procedure_is_answered_for_the_country_in_the_conversation(responder):
    _, tourist, who = converse(
        responder,
        ("work_abroad", "quiero irme a trabajar a canada", "Canadá"),
        ("work_abroad", "y si entro como turista puedo chambear?"),
        ("out_of_scope", "y quien hace el tramite?"),
    )
    assert tourist.entry == "dest.canada.tourist"
    assert who.entry == "dest.canada.overview"


def test_a_guide_for_a_country_nobody_named_is_not_offered_as_a_choice(responder):
    (reply,) = converse(
        responder,
        ("job_offer_check", "me ofrecen chamba afuera pero la agencia me pide pagar 2000 dolares por adelantado"),
    )
    assert reply.entry == "job_offer.check" and "1818" in text_of(reply)
