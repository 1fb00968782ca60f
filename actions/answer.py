"""The one action that answers every intent from the knowledge base (see `bot.dialogue`)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from bot.dialogue import Responder, Turn
from bot.knowledge import LiveKnowledgeBase
from bot.settings import Settings

REMEMBERED_SLOTS = ("country", "topic", "shown_privacy", "pending_offer", "fallback_streak")


@lru_cache(maxsize=1)
def knowledge_base() -> LiveKnowledgeBase:
    return LiveKnowledgeBase(Settings.from_env().content_dir)


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


class ActionAnswer(Action):
    def name(self) -> str:
        return "action_answer"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict[str, Any]]:
        reply = Responder(knowledge_base().current()).respond(turn_from_tracker(tracker))
        for message in reply.messages:
            buttons = [{"title": title, "payload": payload} for title, payload in message.buttons]
            dispatcher.utter_message(text=message.text, buttons=buttons or None)
        return [SlotSet(name, value) for name, value in reply.slots.items()]
