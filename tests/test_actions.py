"""`action_answer` on saved trackers, as the action server receives them from Rasa."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions.answer import ActionAnswer

FIXTURES = Path(__file__).parent / "fixtures" / "trackers"


def run_action(fixture: str) -> tuple[list[dict], dict]:
    """The messages, and the slot events the action returns (only the slots that change)."""
    tracker = Tracker.from_dict(json.loads((FIXTURES / fixture).read_text()))
    dispatcher = CollectingDispatcher()
    events = asyncio.run(ActionAnswer().run(dispatcher, tracker, {}))
    return dispatcher.messages, {e["name"]: e["value"] for e in events if e["event"] == "slot"}


def test_follow_up_country_answers_the_remembered_topic():
    messages, slots = run_action("chile_after_social_security.json")
    text = "\n".join(m["text"] for m in messages)
    assert "Perú y Chile" in text and "Fuente: Biblioteca del Congreso Nacional de Chile — https://" in text
    assert not {"country", "topic", "fallback_streak"} & slots.keys()  # unchanged, so not sent again


def test_second_failure_in_a_row_offers_an_advisor():
    messages, slots = run_action("fallback_twice.json")
    payloads = [b["payload"] for m in messages for b in m.get("buttons") or []]
    assert "/human_handoff" in payloads
    assert slots == {"fallback_streak": 2.0, "pending_offer": "not_understood"}
