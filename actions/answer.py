"""The one action that answers every intent from the knowledge base (see `bot.dialogue`),
and opens the hand-off to an advisor when the dialogue asks for one (see `bot.handoff_desk`)."""

from __future__ import annotations

import logging
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from bot.dialogue import Responder, Turn
from bot.services import handoff_desk, knowledge_base, ranker, vocabulary

logger = logging.getLogger(__name__)
REMEMBERED_SLOTS = ("country", "topic", "shown_privacy", "pending_offer", "last_entry", "fallback_streak")
TRANSCRIPT_EVENTS = 60


def turn_from_tracker(tracker: Tracker) -> Turn:
    message = tracker.latest_message or {}
    entities = {e.get("entity"): e.get("value") for e in message.get("entities") or []}
    ranking = tuple((r["name"], r.get("confidence", 0.0)) for r in message.get("intent_ranking") or [])
    return Turn(
        intent=(message.get("intent") or {}).get("name") or "nlu_fallback",
        text=message.get("text") or "",
        ranking=ranking,
        country=entities.get("country"),
        entry=entities.get("entry"),
        slots={name: tracker.get_slot(name) for name in REMEMBERED_SLOTS},
    )


def transcript_of(tracker: Tracker) -> list[tuple[str, str]]:
    """The current session's messages, oldest first, for the advisor."""
    lines = []
    for event in tracker.events_after_latest_restart()[-TRANSCRIPT_EVENTS:]:
        if event.get("event") == "session_started":
            lines = []
        elif event.get("event") in ("user", "bot") and event.get("text"):
            lines.append(("person" if event["event"] == "user" else "assistant", event["text"]))
    return lines


def profile_of(tracker: Tracker) -> dict[str, Any]:
    """What the assistant learned, in the advisor's words."""
    kb = knowledge_base().current()
    topic = tracker.get_slot("topic")
    audience = next((item.title for item in kb.menu if item.intent == topic), None)
    return {
        "audiencia": audience,
        "país": tracker.get_slot("country"),
        "tema": kb.title(topic) if topic else None,
    }


def client_of(tracker: Tracker) -> str | None:
    """Who sent the message, where the channel tells (REST and the web chat: a pseudonym of the address)."""
    message = tracker.get_last_event_for("user") or {}
    client = (message.get("metadata") or {}).get("client")
    return str(client) if client else None


class ActionAnswer(Action):
    def name(self) -> str:
        return "action_answer"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict[str, Any]]:
        kb = knowledge_base().current()
        reply = Responder(kb, vocabulary().current(), ranker().for_kb(kb)).respond(turn_from_tracker(tracker))
        messages = [(m.text, m.buttons) for m in reply.messages]
        if reply.handoff:
            messages += self._hand_off(tracker, reply.handoff)
        for text, buttons in messages:
            dispatcher.utter_message(text=text, buttons=[{"title": t, "payload": p} for t, p in buttons] or None)
        # Only what changed: every event makes each later turn load, replay and send a little more.
        return [SlotSet(name, value) for name, value in reply.slots.items() if tracker.get_slot(name) != value]

    @staticmethod
    def _hand_off(tracker: Tracker, reason: str) -> list:
        try:
            _, next_steps = handoff_desk().request(
                tracker.sender_id,
                tracker.get_latest_input_channel() or "rest",
                reason,
                profile_of(tracker),
                transcript_of(tracker),
                client=client_of(tracker),
            )
            return list(next_steps)
        except Exception:  # the queue is down: never leave the person without a way to reach the SOM
            logger.exception("could not open a hand-off")
            fallback = knowledge_base().current().main_entry("human_handoff")
            return [(text, ()) for text in fallback.messages]
