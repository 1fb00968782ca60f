"""The hand-off workflow around the store: what to tell the person, and when the assistant is quiet.

Channels call `on_person_message` for every inbound message; the action server calls `request`;
the advisor console calls `claim`, `reply`, `close`; a periodic sweep calls `expire_unclaimed`.
Texts come from data/content/handoff.yml.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from bot.handoff import HandoffStore, HandoffView, naive_utc
from bot.knowledge import LiveKnowledgeBase
from bot.office_hours import OfficeHours
from bot.text import fill, plain

LEAVE_WORDS = frozenset({"cancelar", "cancela", "cancel", "menu", "salir", "show menu"})  # plain text; "/show_menu" too
RATING = re.compile(r"^\s*([1-5])\s*(estrellas?)?\s*$")
Message = tuple[str, tuple[tuple[str, str], ...]]  # (text, buttons)


@dataclass(frozen=True)
class Decision:
    """What a channel does with an inbound message."""

    to_assistant: str | None  # text to hand to Rasa (None: the assistant stays quiet)
    replies: tuple[Message, ...] = ()


class HandoffDesk:
    def __init__(self, store: HandoffStore, kb: LiveKnowledgeBase, hours: OfficeHours, wait_minutes: float) -> None:
        self.store = store  # its clock is the desk's: one source of time for records and office hours
        self.kb = kb
        self.hours = hours
        self.wait = dt.timedelta(minutes=wait_minutes)

    def _say(self, entry_id: str, **values: Any) -> tuple[Message, ...]:
        entry = self.kb.current().entry(entry_id)
        buttons = tuple((b.title, f"/{b.intent}") for b in entry.buttons if b.intent)
        messages = [fill(text, values) for text in entry.messages]
        return tuple((text, buttons if i == len(messages) - 1 else ()) for i, text in enumerate(messages))

    # --- the person's side --------------------------------------------------------------

    def request(
        self,
        conversation_id: str,
        channel: str,
        reason: str,
        profile: dict[str, Any],
        transcript: list[tuple[str, str]],
    ) -> tuple[HandoffView, tuple[Message, ...]]:
        """Open (or find) the hand-off and say what happens next."""
        existing = self.store.open_for(conversation_id)
        if existing is not None:
            return existing, self._next_steps(existing, repeated=True)
        live = self.hours.is_open(self.store.clock())
        told_before = not live and self.store.offered_message_before(conversation_id)
        view = self.store.open(
            conversation_id, channel, reason, 1 if reason == "sensitive" else 0, profile, transcript,
            mode="live" if live else "message",
        )  # fmt: skip
        return view, self._next_steps(view, repeated=told_before)

    def _next_steps(self, view: HandoffView, repeated: bool) -> tuple[Message, ...]:
        if view.mode == "message":
            return self._say(
                "handoff.out_of_hours_again" if repeated else "handoff.out_of_hours", **self.hours.describe()
            )
        if view.priority > 0:
            return self._say("handoff.queued_priority")
        return self._say("handoff.queued", position=self.store.position(view.id) or 1)

    def on_person_message(self, conversation_id: str, text: str) -> Decision:
        """Route one inbound message: to the assistant, or into the hand-off."""
        if not self.store.involves(conversation_id):
            return Decision(to_assistant=text)
        view = self.store.open_for(conversation_id)
        if view is None:
            return self._after_handoff(conversation_id, text)
        if view.state == "waiting" and plain(text) in LEAVE_WORDS:
            self.store.cancel(view.id)
            return Decision(to_assistant="/show_menu", replies=self._say("handoff.cancelled"))
        self.store.add_message(view.id, "person", text)
        if view.state == "waiting" and view.mode == "message":
            self.store.mark_message_left(view.id)
            return Decision(to_assistant=None, replies=self._say("handoff.message_received"))
        return Decision(to_assistant=None)

    def _after_handoff(self, conversation_id: str, text: str) -> Decision:
        """Right after an advisor closed, a bare 1–5 is the rating; anything else goes on as usual."""
        closed = self.store.awaiting_rating(conversation_id)
        if closed is None:
            return Decision(to_assistant=text)
        match = RATING.match(plain(text))
        if match:
            self.store.rate(closed.id, int(match.group(1)))
            return Decision(to_assistant=None, replies=self._say("handoff.rating_thanks"))
        self.store.stop_awaiting_rating(closed.id)
        return Decision(to_assistant=text)

    def expire_unclaimed(self) -> list[tuple[HandoffView, tuple[Message, ...]]]:
        """Live hand-offs nobody claimed in time become leave-a-message ones; returns who to tell."""
        cutoff = self.store.clock() - self.wait
        expired = []
        for view in self.store.unclaimed_since(cutoff):
            if self.store.switch_to_message_mode(view.id):
                expired.append((view, self._say("handoff.timeout")))
        return expired

    # --- the advisor's side -------------------------------------------------------------

    def claim(self, handoff_id: int, advisor_id: int, advisor_name: str) -> tuple[HandoffView, tuple[Message, ...]]:
        view = self.store.claim(handoff_id, advisor_id)
        self.store.audit(advisor_id, "claim", handoff_id)
        greeting = self._say("handoff.claimed", advisor=advisor_name)
        self.store.add_message(handoff_id, "advisor", greeting[0][0], advisor_id)
        return view, greeting

    def reply(self, handoff_id: int, advisor_id: int, text: str) -> HandoffView:
        view = self.store.require_owner(handoff_id, advisor_id)
        self.store.add_message(handoff_id, "advisor", text, advisor_id)
        self.store.audit(advisor_id, "reply", handoff_id)
        return view

    def note(self, handoff_id: int, advisor_id: int, text: str) -> None:
        self.store.get(handoff_id)
        self.store.add_message(handoff_id, "note", text, advisor_id)
        self.store.audit(advisor_id, "note", handoff_id)

    def close(self, handoff_id: int, advisor_id: int) -> tuple[HandoffView, tuple[Message, ...]]:
        view = self.store.close(handoff_id, advisor_id)
        self.store.audit(advisor_id, "close", handoff_id)
        return view, self._say("handoff.closed")


def is_within_reply_window(view: HandoffView, window: dt.timedelta, now: dt.datetime) -> bool:
    """WhatsApp accepts free text only within 24 h of the person's last message."""
    return naive_utc(now) - view.last_person_message_at <= window
