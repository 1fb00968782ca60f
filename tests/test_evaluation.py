"""`make eval`'s harness on small inputs: the peer, conversations played with a given parse, the sources."""

from __future__ import annotations

import datetime as dt

from bot import evaluation
from bot.dialogue import Responder


def test_the_peer_learns_from_the_training_pairs():
    train = [
        ("hola buenas", "greet"),
        ("buenos dias", "greet"),
        ("chau gracias", "goodbye"),
        ("hasta luego", "goodbye"),
    ]
    assert evaluation.peer_accuracy(train * 5, [("hola", "greet"), ("chau", "goodbye")]) == 1.0


def test_nlu_examples_drop_entity_annotations(tmp_path):
    path = tmp_path / "nlu.yml"
    path.write_text(
        'nlu:\n- intent: inform\n  examples: |\n    - con [chile](country)\n    - [eeuu]{"entity": "country"}\n'
    )
    assert evaluation.nlu_examples([path]) == [("con chile", "inform"), ("eeuu", "inform")]


def test_a_conversation_is_played_with_the_slots_carried_and_each_turn_judged(kb):
    parses = {
        "soy venezolano, como saco permiso para trabajar en peru": {
            "intent": {"name": "foreigner_work_peru"},
            "entities": [{"entity": "country", "value": "Venezuela"}],
        },
        "y cuanto demora": {"intent": {"name": "out_of_scope"}},
    }
    conversation = evaluation.Conversation(
        "venezuelan",
        [
            {"say": "soy venezolano, como saco permiso para trabajar en peru", "expect": "foreigner.venezuela"},
            {"say": "y cuanto demora", "expect": "no_detail", "contains": ["Migraciones"], "not_contains": ["1818"]},
        ],
    )
    outcomes = evaluation.ConversationRunner(Responder(kb), parses.__getitem__).play(conversation)
    assert [(o.got, o.ok) for o in outcomes] == [("foreigner.venezuela", True), ("no_detail", True)]
    assert evaluation.accuracy(outcomes, first_turns=False) == 1.0


def test_source_figures_count_every_item_once(kb):
    figures = evaluation.source_figures(kb, dt.date(2026, 12, 2))
    assert figures["items"] == len(kb.entries) + len(list(kb.countries))
    assert figures["neither"] == 0 and figures["bare_domains"] == 0
    assert figures["primary"] + figures["neither"] <= figures["items"]
