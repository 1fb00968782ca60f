"""A rule policy for one-step rules ("this intent → this action"), which are all this assistant has.

Rasa's RulePolicy re-featurizes the whole conversation and matches it against every rule twice
per message (issue 8: about a tenth of a turn's CPU). Here the rules in `data/rules/` are read at
training time into a table from intent to action, and a prediction is a lookup on the latest
message. A rule of any other shape (conditions, several steps, forms) fails the training with a
clear message, so the table can never silently differ from what the rules say.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

from rasa.core.policies.policy import Policy, PolicyPrediction, SupportedData
from rasa.core.policies.rule_policy import DEFAULT_ACTION_MAPPINGS
from rasa.engine.graph import ExecutionContext
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.shared.core.constants import ACTION_LISTEN_NAME, RULE_SNIPPET_ACTION_NAME
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, UserUttered
from rasa.shared.core.generator import TrackerWithCachedStates
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.exceptions import RasaException

TABLE_FILE = "intent_rules.json"
# Rasa warns at training that without its RulePolicy the default intents (restart, back,
# session_start) trigger nothing; this policy maps them as RulePolicy does (`next_action`).
warnings.filterwarnings("ignore", message="'RulePolicy' is not included in the model", category=UserWarning)


class UnsupportedRule(RasaException):
    """A rule this policy cannot follow: use Rasa's RulePolicy for it."""


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.POLICY_WITHOUT_END_TO_END_SUPPORT, is_trainable=True)
class IntentRulePolicy(Policy):
    @staticmethod
    def supported_data() -> SupportedData:
        return SupportedData.RULE_DATA

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        # Rasa's RulePolicy priority; `fallback_action` answers intents that no rule names.
        return {"priority": 6, "fallback_action": None}

    def __init__(
        self,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
        actions_by_intent: dict[str, str] | None = None,
    ) -> None:
        super().__init__(config, model_storage, resource, execution_context)
        self.actions_by_intent = actions_by_intent or {}

    def _standard_featurizer(self) -> Any:
        return None  # predictions read the latest event: nothing to featurize

    def train(self, training_trackers: list[TrackerWithCachedStates], domain: Domain, **kwargs: Any) -> Resource:
        table: dict[str, str] = {}
        for tracker in training_trackers:
            if not tracker.is_rule_tracker:
                continue
            intent, action = _one_step(tracker)
            if table.setdefault(intent, action) != action:
                raise UnsupportedRule(f"Rules answer intent '{intent}' with both '{table[intent]}' and '{action}'.")
        self.actions_by_intent = table
        with self._model_storage.write_to(self._resource) as directory:
            (directory / TABLE_FILE).write_text(json.dumps(table, sort_keys=True))
        return self._resource

    @classmethod
    def load(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
        **kwargs: Any,
    ) -> IntentRulePolicy:
        with model_storage.read_from(resource) as directory:
            table = json.loads((directory / TABLE_FILE).read_text())
        return cls(config, model_storage, resource, execution_context, actions_by_intent=table)

    def predict_action_probabilities(
        self, tracker: DialogueStateTracker, domain: Domain, rule_only_data: Any = None, **kwargs: Any
    ) -> PolicyPrediction:
        action = self.next_action(tracker)
        probabilities = self._default_predictions(domain)
        if action is not None:
            probabilities[domain.index_for_action(action)] = 1.0
        return self._prediction(probabilities)

    def next_action(self, tracker: DialogueStateTracker) -> str | None:
        """After a message, the action its intent's rule names; after any action, listen."""
        if tracker.latest_action_name != ACTION_LISTEN_NAME:
            return ACTION_LISTEN_NAME
        if not tracker.latest_message or not tracker.latest_message.intent.get("name"):
            return None
        intent = tracker.latest_message.intent["name"]
        return (
            DEFAULT_ACTION_MAPPINGS.get(intent) or self.actions_by_intent.get(intent) or self.config["fallback_action"]
        )


def _one_step(tracker: TrackerWithCachedStates) -> tuple[str, str]:
    """The (intent, action) of a rule that is exactly "at any point, this intent → this action"."""
    events = list(tracker.events)
    if (
        len(events) == 5
        and isinstance(events[2], UserUttered)
        and events[2].intent_name
        and all(isinstance(event, ActionExecuted) for event in events[:2] + events[3:])
        and [events[0].action_name, events[1].action_name, events[4].action_name]
        == [RULE_SNIPPET_ACTION_NAME, ACTION_LISTEN_NAME, ACTION_LISTEN_NAME]
        and events[3].action_name not in (ACTION_LISTEN_NAME, RULE_SNIPPET_ACTION_NAME)
    ):
        return events[2].intent_name, events[3].action_name
    raise UnsupportedRule(
        f"Rule '{tracker.sender_id}' is not of the form 'intent → action' (without conditions or "
        "conversation_start); this policy only follows such rules."
    )
