"""The hand-off workflow around the store: what to tell the person, and when the assistant is quiet.

Channels call `on_person_message` for every inbound message; the action server calls `request`;
the advisor console calls `sign_in`, `claim`, `reply`, `note`, `close` and reads through `queue` and
`case`; a periodic sweep calls `expire_unclaimed`. Whatever reaches the person goes through an
`Outbox` (the conversation's channel, and Rasa's record of the conversation), in an order the desk
owns: send, then record what was sent. Texts come from data/content/handoff.yml.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from dataclasses import dataclass
from typing import Any, Protocol

from bot.handoff import Advisor, Conflict, HandoffStore, HandoffView, TranscriptLine, naive_utc
from bot.knowledge import LiveKnowledgeBase
from bot.office_hours import OfficeHours
from bot.ratelimit import RateLimiter, SharedCounter
from bot.text import fill, plain

LEAVE_WORDS = frozenset({"cancelar", "cancela", "cancel", "menu", "salir", "show menu"})  # plain text; "/show_menu" too
RATING = re.compile(r"^\s*([1-5])\s*(estrellas?)?\s*$")
Message = tuple[str, tuple[tuple[str, str], ...]]  # (text, buttons)
ADVISOR_REPLY_TEMPLATE, RATING_TEMPLATE = "advisor_reply", "rating"  # what an approved template is for
READ_AUDIT_EVERY = dt.timedelta(minutes=10)


@dataclass(frozen=True)
class Decision:
    """What a channel does with an inbound message."""

    to_assistant: str | None  # text to hand to Rasa (None: the assistant stays quiet)
    replies: tuple[Message, ...] = ()


@dataclass(frozen=True)
class Delivery:
    """What reached the person: the first `sent` of `total` messages. `reachable` is False for a
    channel that cannot send on its own (REST answers requests only): nothing reaches the person."""

    sent: int
    total: int
    reachable: bool = True
    # The provider's message ids (SIDs) of each message it took, in order: a long text goes in parts.
    receipts: tuple[tuple[str, ...], ...] = ()
    template: bool = False  # sent as an approved template (after WhatsApp's 24-hour window)

    @property
    def delivered(self) -> bool:
        return self.reachable and self.sent == self.total

    def said(self, messages: tuple[Message, ...]) -> tuple[Message, ...]:
        """What counts as said: what the channel took, or everything kept on a channel that cannot send."""
        return messages[: self.sent] if self.reachable else messages

    def as_json(self) -> dict[str, Any]:
        return {
            "delivered": self.delivered,
            "sent": self.sent,
            "total": self.total,
            "reachable": self.reachable,
            "template": self.template,
        }

    def receipts_of(self, index: int) -> tuple[str, ...]:
        return self.receipts[index] if index < len(self.receipts) else ()


class Outbox(Protocol):
    """How the desk reaches a person outside of a request: the conversation's own channel."""

    def reply_window(self, channel: str) -> dt.timedelta | None:
        """How long after the person's last message free text may still be sent (None: no limit)."""

    async def send(self, view: HandoffView, messages: tuple[Message, ...], template: str | None = None) -> Delivery:
        """Send in order; stop at the first message the channel refuses. With `template`, each
        message goes as that approved template (outside the reply window)."""

    def has_template(self, channel: str, purpose: str) -> bool:
        """Whether the operator configured an approved template for `purpose` on `channel`."""

    async def record(self, view: HandoffView, messages: tuple[Message, ...], author: str) -> None:
        """Keep messages in the conversation's own record (Rasa's tracker), as said by `author`."""


class OutsideReplyWindow(Conflict):
    """WhatsApp takes free text only within 24 hours of the person's last message."""


class HandoffDesk:
    def __init__(
        self,
        store: HandoffStore,
        kb: LiveKnowledgeBase,
        hours: OfficeHours,
        wait_minutes: float,
        handoffs_per_client_hour: int = 5,
        shared: SharedCounter | None = None,
    ) -> None:
        self.store = store  # its clock is the desk's: one source of time for records and office hours
        self.kb = kb
        self.hours = hours
        self.wait = dt.timedelta(minutes=wait_minutes)
        # One web client (an address) can open any number of conversations: this caps what it can
        # put in the advisors' queue; with `shared` counters, across every action server.
        self.per_client = RateLimiter(handoffs_per_client_hour, 3600.0, shared, name="handoffs")

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
        client: str | None = None,
    ) -> tuple[HandoffView | None, tuple[Message, ...]]:
        """Open (or find) the hand-off and say what happens next. `client` names who sent the
        request when one sender can speak as many conversations (the web); past their hourly
        share of hand-offs, none is opened."""
        existing = self.store.open_for(conversation_id)
        if existing is not None:
            return existing, self._next_steps(existing, repeated=True)
        if client is not None and not self.per_client.allow(client, self.store.clock().timestamp()):
            self.store.audit(None, "handoff_refused", None, f"too many from client {client[:16]}")
            return None, self._say("handoff.too_many")
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

    def on_person_message(
        self, conversation_id: str, text: str, channel: str, media: tuple[dict[str, Any], ...] = ()
    ) -> Decision:
        """Route one inbound message: to the assistant, or into the hand-off. Files the person sent
        (`media`: their type and the provider's URL, never the bytes) stay on the hand-off's record
        for an advisor to open.

        A hand-off takes messages only from the channel it was opened on: the same id arriving on
        another channel is not the same person, and goes to the assistant."""
        if not self.store.involves(conversation_id):
            return Decision(to_assistant=text)
        view = self.store.open_for(conversation_id)
        if view is not None and view.channel != channel:
            return Decision(to_assistant=text)
        if view is None:
            return self._after_handoff(conversation_id, text)
        if view.state == "waiting" and plain(text) in LEAVE_WORDS:
            self.store.cancel(view.id)
            return Decision(to_assistant="/show_menu", replies=self._say("handoff.cancelled"))
        self.store.add_message(view.id, "person", text, media=media)
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

    def _expire_unclaimed(self) -> list[tuple[HandoffView, tuple[Message, ...]]]:
        """Live hand-offs nobody claimed in time become leave-a-message ones; returns who to tell."""
        cutoff = self.store.clock() - self.wait
        expired = []
        for view in self.store.unclaimed_since(cutoff):
            if self.store.switch_to_message_mode(view.id):
                expired.append((view, self._say("handoff.timeout")))
        return expired

    async def expire_unclaimed(self, outbox: Outbox) -> int:
        """Tell people whose hand-off nobody claimed in time that they can leave a message; how many."""
        expired = await asyncio.to_thread(self._expire_unclaimed)
        for view, messages in expired:
            await self._send_and_record(outbox, view, messages, author="assistant")
        return len(expired)

    # --- the advisor's side -------------------------------------------------------------

    def sign_in(self, username: str, password: str) -> tuple[str, Advisor] | None:
        """A session token and who it is for, or None; every attempt is audited."""
        signed_in = self.store.login(username, password)
        if signed_in is None:
            self.store.audit(None, "login_failed", None, username[:64])
            return None
        self.store.audit(signed_in[1].id, "login")
        return signed_in

    def sign_in_refused(self, username: str) -> None:
        """Too many attempts: audited, not tried."""
        self.store.audit(None, "login_throttled", None, username[:64])

    def sign_out(self, token: str, advisor: Advisor) -> None:
        if self.store.end_session(token):
            self.store.audit(advisor.id, "logout")

    def revoke(self, username: str) -> int:
        """End every session of an advisor; audited with how many ended."""
        ended = self.store.end_sessions_of(username)
        self.store.audit(None, "sessions_revoked", None, f"{username[:64]}: {ended}")
        return ended

    def is_supervisor(self, advisor: Advisor) -> bool:
        return self.store.is_supervisor(advisor.id)

    def advisor_for(self, token: str) -> Advisor | None:
        return self.store.advisor_for_token(token)

    def queue(self, state: str, advisor: Advisor) -> list[HandoffView]:
        """The queue shows each case's last words and profile: reading it is audited too (the console
        polls it, so once per interval)."""
        self.store.audit_unless_recent(advisor.id, f"list_{state}", None, READ_AUDIT_EVERY)
        return self.store.queue(state)

    def case(self, handoff_id: int, advisor: Advisor, opened: bool = False) -> tuple[HandoffView, list[TranscriptLine]]:
        """A hand-off and its record, as an advisor reads it. Every time an advisor opens a case is
        audited; the console's refreshes of an open case, once per interval."""
        view = self.store.get(handoff_id)
        transcript = self.store.transcript(handoff_id)
        if opened:
            self.store.audit(advisor.id, "open", handoff_id)
        else:
            self.store.audit_unless_recent(advisor.id, "read", handoff_id, READ_AUDIT_EVERY)
        return view, transcript

    async def claim(self, handoff_id: int, advisor: Advisor, outbox: Outbox) -> tuple[HandoffView, Delivery]:
        """Take the hand-off (of two advisors at once, one wins), then greet the person by name."""
        view = await asyncio.to_thread(self._claim, handoff_id, advisor)
        greeting = self._say("handoff.claimed", advisor=advisor.name)
        # A left message may be older than WhatsApp's window: the greeting then goes as the reply template.
        _, template = self._window(outbox, view, ADVISOR_REPLY_TEMPLATE)
        delivery = await self._send_and_record(outbox, view, greeting, f"advisor:{advisor.name}", template)
        for index, (text, _) in enumerate(delivery.said(greeting)):
            await asyncio.to_thread(
                self.store.add_sent_message,
                handoff_id, "advisor", text, advisor.id, delivery.receipts_of(index), delivery.template,
            )  # fmt: skip
        return view, delivery

    def _claim(self, handoff_id: int, advisor: Advisor) -> HandoffView:
        view = self.store.claim(handoff_id, advisor.id)
        self.store.audit(advisor.id, "claim", handoff_id)
        return view

    async def reply(self, handoff_id: int, advisor: Advisor, text: str, outbox: Outbox) -> Delivery:
        """An advisor's message: checked, sent through the person's channel, then recorded.

        What the channel refused is not recorded as said (the advisor is told and can retry); on a
        channel that cannot send at all it is recorded and reported as not delivered."""
        view = await asyncio.to_thread(self.store.require_owner, handoff_id, advisor.id)
        outside, template = self._window(outbox, view, ADVISOR_REPLY_TEMPLATE)
        if outside and template is None:
            raise OutsideReplyWindow(
                "WhatsApp solo admite texto libre hasta 24 horas después del último mensaje de la persona: "
                "contáctela por teléfono o correo"
            )
        delivery = await self._send_and_record(
            outbox, view, ((text, ()),), author=f"advisor:{advisor.name}", template=template
        )
        if delivery.said(((text, ()),)):
            await asyncio.to_thread(self._record_reply, handoff_id, advisor, text, delivery)
        return delivery

    def _record_reply(self, handoff_id: int, advisor: Advisor, text: str, delivery: Delivery) -> None:
        self.store.add_sent_message(handoff_id, "advisor", text, advisor.id, delivery.receipts_of(0), delivery.template)
        self.store.audit(advisor.id, "reply", handoff_id, "template" if delivery.template else "")

    def note(self, handoff_id: int, advisor: Advisor, text: str) -> None:
        """An internal note: the person never sees it."""
        self.store.get(handoff_id)
        self.store.add_message(handoff_id, "note", text, advisor.id)
        self.store.audit(advisor.id, "note", handoff_id)

    async def release(self, handoff_id: int, advisor: Advisor, outbox: Outbox) -> tuple[HandoffView, Delivery]:
        """Give the case back to the queue (an advisor going off shift; a supervisor reassigning):
        the record says who did, and the person is told another advisor will write."""
        view = await asyncio.to_thread(self._release, handoff_id, advisor)
        outside, _ = self._window(outbox, view, ADVISOR_REPLY_TEMPLATE)
        if outside:  # past WhatsApp's window no free text goes; the next advisor's greeting will
            return view, Delivery(sent=0, total=0)
        return view, await self._send_and_record(outbox, view, self._say("handoff.released"), author="assistant")

    def _release(self, handoff_id: int, advisor: Advisor) -> HandoffView:
        view = self.store.release(handoff_id, advisor.id, supervisor=self.store.is_supervisor(advisor.id))
        self.store.add_message(handoff_id, "system", f"Devuelta a la fila por {advisor.name}.", advisor.id)
        self.store.audit(advisor.id, "release", handoff_id)
        return view

    async def close(self, handoff_id: int, advisor: Advisor, outbox: Outbox) -> tuple[HandoffView, Delivery]:
        """Close the hand-off, then say goodbye and ask for a rating."""
        view = await asyncio.to_thread(self._close, handoff_id, advisor)
        goodbye = self._say("handoff.closed")
        _, template = self._window(outbox, view, RATING_TEMPLATE)
        if template:  # past WhatsApp's window only an approved template goes: the satisfaction question
            return view, await self._send_and_record(outbox, view, goodbye[-1:], "assistant", template)
        return view, await self._send_and_record(outbox, view, goodbye, author="assistant")

    def _close(self, handoff_id: int, advisor: Advisor) -> HandoffView:
        view = self.store.close(handoff_id, advisor.id)
        self.store.audit(advisor.id, "close", handoff_id)
        return view

    def _window(self, outbox: Outbox, view: HandoffView, purpose: str) -> tuple[bool, str | None]:
        """Whether the channel would refuse free text now (WhatsApp after 24 hours), and then the
        approved template for `purpose` to send instead, if the operator configured one."""
        window = outbox.reply_window(view.channel)
        outside = window is not None and not is_within_reply_window(view, window, self.store.clock())
        return outside, (purpose if outside and outbox.has_template(view.channel, purpose) else None)

    @staticmethod
    async def _send_and_record(
        outbox: Outbox, view: HandoffView, messages: tuple[Message, ...], author: str, template: str | None = None
    ) -> Delivery:
        delivery = await outbox.send(view, messages, template)
        said = delivery.said(messages)
        if said:
            await outbox.record(view, said, author)
        return delivery


def is_within_reply_window(view: HandoffView, window: dt.timedelta, now: dt.datetime) -> bool:
    """WhatsApp accepts free text only within 24 h of the person's last message."""
    return naive_utc(now) - view.last_person_message_at <= window
