"""The NLU contract: intent names, enough varied examples, and a held-out set never trained on."""

from __future__ import annotations

from collections import Counter

import yaml
from rasa.shared.nlu.training_data.loading import load_data

from bot.knowledge import ANSWERED_INTENTS, INTENTS
from bot.settings import PROJECT_ROOT

SMALL_TALK = {"greet", "goodbye", "thank", "affirm", "deny", "bot_challenge", "show_menu"}


def _examples(path) -> list:
    return [m for m in load_data(str(path)).training_examples if m.get("intent")]


def test_domain_declares_exactly_the_contract_intents():
    domain = yaml.safe_load((PROJECT_ROOT / "domain.yml").read_text())
    assert domain["intents"] == list(INTENTS)


def test_every_intent_has_enough_training_examples():
    counts = Counter(m.get("intent") for m in _examples(PROJECT_ROOT / "data" / "nlu"))
    for intent in INTENTS:
        minimum = 25 if intent in SMALL_TALK else 30
        assert counts[intent] >= minimum, f"{intent}: {counts[intent]} examples"


def test_held_out_set_covers_every_intent_and_is_never_trained_on():
    held_out = _examples(PROJECT_ROOT / "tests" / "nlu" / "test_nlu.yml")
    counts = Counter(m.get("intent") for m in held_out)
    assert all(counts[intent] >= 10 for intent in INTENTS), counts
    trained = {m.get("text").strip().lower() for m in _examples(PROJECT_ROOT / "data" / "nlu")}
    overlap = [m.get("text") for m in held_out if m.get("text").strip().lower() in trained]
    # One-word replies ("hola", "si", "no") cannot differ; anything longer must.
    assert [t for t in overlap if len(t.split()) > 2] == []


def test_every_answered_intent_has_a_rule():
    rules = "\n".join(p.read_text() for p in (PROJECT_ROOT / "data" / "rules").glob("*.yml"))
    for intent in (*ANSWERED_INTENTS, "inform", "nlu_fallback"):
        assert f"- intent: {intent}\n" in rules, intent
