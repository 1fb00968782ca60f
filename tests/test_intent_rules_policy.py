"""The one-step rule policy learns intent → action from rules, predicts by lookup, refuses other rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from rasa.engine.graph import ExecutionContext, GraphSchema
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, SessionStarted, UserUttered
from rasa.shared.core.generator import TrainingDataGenerator
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.importers.importer import TrainingDataImporter

from extensions.intent_rules_policy import IntentRulePolicy, UnsupportedRule

DOMAIN = """
version: "3.1"
intents: [greet, thank, ask_more]
slots:
  topic: {type: text, mappings: [{type: custom}]}
actions: [action_answer, action_thanks]
"""
ONE_STEP_RULES = """
version: "3.1"
rules:
  - rule: greet
    steps: [{intent: greet}, {action: action_answer}]
  - rule: thank
    steps: [{intent: thank}, {action: action_thanks}]
"""


def train(tmp_path: Path, rules: str) -> tuple[IntentRulePolicy, Domain]:
    (tmp_path / "domain.yml").write_text(DOMAIN)
    (tmp_path / "rules.yml").write_text(rules)
    importer = TrainingDataImporter.load_from_dict(
        domain_path=str(tmp_path / "domain.yml"), training_data_paths=[str(tmp_path / "rules.yml")]
    )
    domain = importer.get_domain()
    trackers = TrainingDataGenerator(importer.get_stories(), domain, augmentation_factor=0).generate()
    (tmp_path / "storage").mkdir()
    storage, resource = LocalModelStorage(tmp_path / "storage"), Resource("policy")
    context = ExecutionContext(GraphSchema({}), "test")
    config = {**IntentRulePolicy.get_default_config(), "fallback_action": "action_answer"}
    IntentRulePolicy(config, storage, resource, context).train(trackers, domain)
    return IntentRulePolicy.load(config, storage, resource, context), domain


def after(domain: Domain, *events) -> DialogueStateTracker:
    tracker = DialogueStateTracker("persona", domain.slots)
    tracker.update_with_events([SessionStarted(), ActionExecuted("action_listen"), *events], domain)
    return tracker


def predicted(policy: IntentRulePolicy, domain: Domain, tracker: DialogueStateTracker) -> str | None:
    prediction = policy.predict_action_probabilities(tracker, domain)
    if max(prediction.probabilities) == 0:
        return None
    return domain.action_names_or_texts[prediction.max_confidence_index]


def test_predicts_what_the_rules_say_then_listens(tmp_path):
    policy, domain = train(tmp_path, ONE_STEP_RULES)  # trained, persisted and loaded back
    greeted = after(domain, UserUttered("hola", {"name": "greet", "confidence": 0.9}))
    thanked = after(domain, UserUttered("gracias", {"name": "thank", "confidence": 0.9}))
    assert predicted(policy, domain, greeted) == "action_answer"
    assert predicted(policy, domain, thanked) == "action_thanks"
    greeted.update(ActionExecuted("action_answer"))
    assert predicted(policy, domain, greeted) == "action_listen"


def test_intents_without_a_rule_get_the_fallback_and_default_intents_their_action(tmp_path):
    policy, domain = train(tmp_path, ONE_STEP_RULES)
    unruled = after(domain, UserUttered("y eso?", {"name": "ask_more", "confidence": 0.9}))
    restart = after(domain, UserUttered("/restart", {"name": "restart", "confidence": 1.0}))
    assert predicted(policy, domain, unruled) == "action_answer"
    assert predicted(policy, domain, restart) == "action_restart"


@pytest.mark.parametrize(
    "rule",
    [
        "{rule: with a condition, condition: [{slot_was_set: [{topic: x}]}], steps: [{intent: greet}, {action: action_answer}]}",
        "{rule: at the start only, conversation_start: true, steps: [{intent: greet}, {action: action_answer}]}",
        "{rule: two steps, steps: [{intent: greet}, {action: action_answer}, {intent: thank}, {action: action_thanks}]}",
    ],
)
def test_rules_of_another_shape_stop_the_training(tmp_path, rule):
    with pytest.raises(UnsupportedRule):
        train(tmp_path, f'version: "3.1"\nrules:\n  - {rule}\n')


def test_two_rules_answering_one_intent_differently_stop_the_training(tmp_path):
    contradiction = ONE_STEP_RULES + "  - rule: greet again\n    steps: [{intent: greet}, {action: action_thanks}]\n"
    with pytest.raises(UnsupportedRule):
        train(tmp_path, contradiction)
