"""What the WhatsApp and Telegram channels share.

Both acknowledge the webhook at once and work in the background, one message at a time per
conversation (so answers keep the order of the questions); both apply the flood limit, cut
over-long input and answer media the same way; and both send with retries that never repeat a
message the provider may already have accepted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from rasa.core.channels.channel import InputChannel, OutputChannel, UserMessage
from rasa.shared.core.events import BotUttered
from sanic import Blueprint

from bot.messaging import Flood, FloodLimiter, Option, as_free_text, cut_input
from bot.privacy import hash_id
from bot.services import knowledge_base
from bot.settings import MIN_SECRET, Settings
from channels import outbound
from channels.delivery import OnNewMessage, deliver
from channels.outbound import OutboundSender

logger = logging.getLogger(__name__)
T = TypeVar("T")

RETRY_DELAYS = (0.5, 1.0, 2.0)  # seconds before the 2nd, 3rd and 4th attempt
MAX_RETRY_WAIT = 30.0
MEDIA_ENTRY = "channels.media"
# Media reaches Rasa as this payload: the dialogue answers with the knowledge-base entry, and the
# tracker keeps the media in the message's metadata for an advisor.
MEDIA_PAYLOAD = f'/inform{{"entry": "{MEDIA_ENTRY}"}}'


# Payloads any conversation may send unprompted: the widget's greeting, Telegram's /start and /menu.
OPEN_PAYLOADS = frozenset({"/greet", "/show_menu"})
OFFERS_REMEMBERED = 30  # a button of one of the assistant's last this-many messages still counts
DRAIN_SECONDS = 10.0  # at shutdown, how long acknowledged messages may still take to be answered


class DeliveryError(Exception):
    """A message could not be delivered; the provider did not accept it (or may not have).

    The channels' outbound senders raise it; Rasa's output (`ChatOutput`) logs it instead."""


def require_secret(name: str, value: str) -> str:
    """A channel never runs on an empty or weak secret: anyone could then forge its requests."""
    if len(value) < MIN_SECRET:
        raise ValueError(f"{name} must be set to a secret of at least {MIN_SECRET} characters")
    return value


def channel_text(entry_id: str) -> str:
    """A short text of `data/content/channels.yml`, as it is on disk now."""
    return knowledge_base().current().entry(entry_id).messages[0]


async def with_retries(attempt: Callable[[], Awaitable[T]], retry_wait: Callable[[Exception], float | None]) -> T:
    """Run `attempt`, retrying with backoff while `retry_wait` says the provider did not take it.

    `retry_wait(error)` is None when a retry could duplicate the message (or cannot help), else
    the least time to wait (a 429's retry-after). Raises `DeliveryError` when giving up.
    """
    delays = iter(RETRY_DELAYS)
    while True:
        try:
            return await attempt()
        except Exception as error:
            wait, delay = retry_wait(error), next(delays, None)
            if wait is None or delay is None:
                raise DeliveryError(f"{type(error).__name__}: {error}") from error
            await asyncio.sleep(min(max(delay, wait), MAX_RETRY_WAIT))


async def was_offered(agent: Any, conversation_id: str, payload: str) -> bool:
    """Whether `payload` is one the assistant itself offered this conversation (a button of one of
    its recent messages). Button data comes from the client, so it can be forged: entities in a
    payload ("/inform{...}") are trusted only when they are ours."""
    if payload in OPEN_PAYLOADS:
        return True
    tracker = await agent.tracker_store.retrieve(conversation_id)
    if tracker is None:
        return False
    said = [event for event in reversed(tracker.events) if isinstance(event, BotUttered)][:OFFERS_REMEMBERED]
    return any(str(button.get("payload")) == payload for event in said for button in event.data.get("buttons") or ())


class ChatOutput(OutputChannel):
    """Rasa's output for a chat app: one message per knowledge-base message (no split on blank
    lines), buttons rendered by the channel's sender, and failures logged, never raised into Rasa
    (so the turn is still saved)."""

    def __init__(self, sender: OutboundSender) -> None:
        self.sender = sender

    async def send_text_message(self, recipient_id: str, text: str, **kwargs: Any) -> None:
        await self._send(recipient_id, text, ())

    async def send_text_with_buttons(
        self, recipient_id: str, text: str, buttons: list[dict[str, Any]], **kwargs: Any
    ) -> None:
        await self._send(recipient_id, text, tuple((str(b["title"]), str(b["payload"])) for b in buttons))

    async def _send(self, recipient_id: str, text: str, buttons: tuple[Option, ...]) -> None:
        try:
            await self.sender.send(recipient_id, text, buttons)
        except DeliveryError as error:
            logger.error("%s: message to conversation %s not delivered: %s", self.name(), hash_id(recipient_id), error)


@dataclass(frozen=True)
class Inbound:
    """One message from a person, as the channel understood it."""

    sender_id: str  # the conversation id, namespaced: "whatsapp:+51…", "telegram:<chat id>"
    received_at: float
    text: str = ""  # typed by the person
    payload: str | None = None  # from one of our buttons or numbered options
    media: tuple[dict[str, Any], ...] = ()


@dataclass
class InboundPath:
    """From webhook to Rasa for one channel: ordering, flood limit, length cut, media."""

    channel: str
    output: ChatOutput
    flood: FloodLimiter = field(default_factory=FloodLimiter)
    _tails: dict[str, asyncio.Task] = field(default_factory=dict)

    def in_order(self, conversation: str, work: Callable[[], Awaitable[Any]]) -> None:
        """Run `work` in the background after earlier work of the same conversation; log failures."""
        previous = self._tails.get(conversation)

        async def run() -> None:
            if previous is not None:
                await asyncio.wait({previous})
            await work()

        task = asyncio.create_task(run())
        self._tails[conversation] = task
        task.add_done_callback(lambda done: self._finished(conversation, done))

    async def drain(self, timeout: float) -> None:
        """Let messages already acknowledged to the provider finish (each conversation's last task
        waits for the earlier ones), for at most `timeout` seconds: the provider will not resend them."""
        if tails := set(self._tails.values()):
            await asyncio.wait(tails, timeout=timeout)

    def _finished(self, conversation: str, task: asyncio.Task) -> None:
        if self._tails.get(conversation) is task:
            del self._tails[conversation]
        if not task.cancelled() and task.exception() is not None:
            logger.error(
                "%s: message of conversation %s failed", self.channel, hash_id(conversation), exc_info=task.exception()
            )

    async def handle(self, on_new_message: OnNewMessage, inbound: Inbound) -> None:
        """Give the message to Rasa, unless the sender is flooding; media first, then the text."""
        sender = inbound.sender_id
        verdict = self.flood.check(sender)
        if verdict is Flood.WARN:
            await self.output.send_text_message(sender, channel_text("channels.flood"))
        if verdict is not Flood.ALLOW:
            return
        if inbound.media:
            await self._to_rasa(on_new_message, inbound, MEDIA_PAYLOAD, media=list(inbound.media))
        if inbound.payload:
            await self._to_rasa(on_new_message, inbound, inbound.payload)
        elif text := as_free_text(inbound.text):
            text, was_cut = cut_input(text)
            if was_cut:
                await self.output.send_text_message(sender, channel_text("channels.too_long"))
            await self._to_rasa(on_new_message, inbound, text)

    async def _to_rasa(self, on_new_message: OnNewMessage, inbound: Inbound, text: str, **metadata: Any) -> None:
        message = UserMessage(
            text,
            self.output,
            inbound.sender_id,
            input_channel=self.channel,
            metadata={"received_at": inbound.received_at, **metadata},
        )
        await deliver(on_new_message, message)


class ProviderChannel(InputChannel):
    """The wiring WhatsApp and Telegram share: settings from the environment (never from
    credentials.yml), an outbound sender registered for advisor hand-off, and a webhook blueprint
    that closes the sender's HTTP client when the server stops."""

    sender: Any
    output: OutputChannel
    inbound: InboundPath

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any] | None) -> ProviderChannel:
        return cls(Settings.from_env())

    def get_output_channel(self) -> OutputChannel:
        return self.output

    def webhook_blueprint(self) -> Blueprint:
        outbound.register(self.name(), self.sender)
        webhook = Blueprint(f"{self.name()}_channel", __name__)

        @webhook.listener("before_server_stop")
        async def finish(app: Any, loop: Any) -> None:
            await self.inbound.drain(timeout=DRAIN_SECONDS)

        @webhook.listener("after_server_stop")
        async def close(app: Any, loop: Any) -> None:
            await self.sender.close()

        return webhook
