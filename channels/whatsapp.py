"""WhatsApp through Twilio: `POST /webhooks/whatsapp/webhook`, Rasa channel name `whatsapp`.

Unlike Rasa's Twilio connector, it checks Twilio's signature, answers Twilio at once and works
in the background, ignores redelivered messages, turns buttons into one numbered message (and
maps "1", "uno" or the option's words back) or, with TWILIO_CONTENT_ENABLED, into WhatsApp's own
buttons and lists, splits long answers, answers media, shows "typing…" when an answer takes a
while, and sends through the SDK's async client with retries that never send a message twice.

Every message sent asks Twilio for delivery status callbacks at `POST /webhooks/whatsapp/status`
(signed like the webhook); the hand-off store keeps the furthest status of each message, which
the advisor console shows next to each advisor reply. After WhatsApp's 24-hour window, advisor
replies and the satisfaction question go as approved templates when the operator configured them.

Conversation ids are Twilio's own addresses, "whatsapp:+51…"; the outbound sender registered for
advisors takes that same id.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Mapping
from functools import partial
from typing import Any
from urllib.parse import parse_qs

from rasa.core.agent import Agent
from rasa.shared.core.events import BotUttered
from sanic import Blueprint, response
from sanic.request import Request, RequestParameters
from sanic.response import HTTPResponse

from bot.handoff import DELIVERY_RANK, FAILED_DELIVERY
from bot.messaging import (
    WHATSAPP_MAX_CHARS,
    ExpiringMap,
    FloodLimiter,
    Option,
    RecentIds,
    SharedKeys,
    match_option,
    numbered_options,
    split_message,
)
from bot.privacy import hash_id
from bot.services import handoff_desk
from bot.settings import WHATSAPP_STATUS_PATH, WHATSAPP_WEBHOOK_PATH, Settings
from channels._common import (
    ChatOutput,
    DeliveryError,
    Inbound,
    InboundPath,
    ProviderChannel,
    channel_text,
    require_secret,
    was_offered,
    with_retries,
)
from channels.delivery import OnNewMessage
from channels.outbound import Buttons, OutboundSender
from integrations.redis_keys import shared_keys
from integrations.twilio import (
    EMPTY_TWIML,
    INTERACTIVE_BODY,
    TwilioMessages,
    WebhookSignature,
    content_digest,
    interactive_content,
    refused,
    retry_wait,
)

logger = logging.getLogger(__name__)

PREFIX = "whatsapp:"
MAX_MEDIA = 10  # Twilio forwards at most ten media per message
TYPING_AFTER_SECONDS = 1.0  # an answer slower than this shows "typing…" (best effort)
TEMPLATE_PURPOSES = ("advisor_reply", "rating")


def whatsapp_address(number: str) -> str:
    """Twilio's address for a WhatsApp number: "+51…" and "whatsapp:+51…" are the same person."""
    return number if number.startswith(PREFIX) else PREFIX + number


def twilio_form(request: Request) -> RequestParameters:
    """The posted form with its empty fields: Twilio signs those too, and Sanic's `form` drops them."""
    return RequestParameters(parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True))


def media_of(form: Mapping[str, Any]) -> tuple[dict[str, Any], ...]:
    """What Twilio says the person sent besides text, for the answer and for the advisor."""
    try:
        count = min(int(form.get("NumMedia") or 0), MAX_MEDIA)
    except ValueError:
        count = 0
    media = [
        {"type": form.get(f"MediaContentType{i}") or "", "url": form.get(f"MediaUrl{i}") or ""} for i in range(count)
    ]
    if form.get("Latitude") and form.get("Longitude"):
        media.append({"type": "location", "latitude": form.get("Latitude"), "longitude": form.get("Longitude")})
    return tuple(media)


class WhatsAppSender(OutboundSender):
    """Sends through Twilio's Messages API: buttons as WhatsApp's own buttons or list when enabled
    (content created once per button set), else as one numbered message; approved templates after
    the 24-hour window. Every message asks for delivery status callbacks; `send` returns the SIDs."""

    reply_window = dt.timedelta(hours=24)  # WhatsApp takes free text only this long after the person wrote

    def __init__(self, settings: Settings, shared: SharedKeys | None = None) -> None:
        """`shared`: keys in Redis with several replicas (the person's last message, for "typing…")."""
        self.twilio = TwilioMessages(settings, whatsapp_address(settings.twilio_whatsapp_from))
        self.status_callback = settings.public_url + WHATSAPP_STATUS_PATH if settings.public_url else None
        self.content_enabled = settings.twilio_content_enabled
        templates = (settings.twilio_template_sid_advisor_reply, settings.twilio_template_sid_rating)
        self.templates = {purpose: sid for purpose, sid in zip(TEMPLATE_PURPOSES, templates) if sid}
        self._contents: dict[str, str] = {}  # this process's copy of the store's digest -> content SID
        # The person's last message (its SID), for "typing…" while an advisor writes: in this
        # process, and with several replicas in Redis, since the advisor's may not be the one that
        # received it.
        self._last_inbound: ExpiringMap[str, str] = ExpiringMap(self.reply_window.total_seconds())
        self._shared = shared

    async def send(self, recipient_id: str, text: str, buttons: Buttons = ()) -> tuple[str, ...]:
        to = whatsapp_address(recipient_id)
        if buttons and self.content_enabled:
            sid = await self._send_interactive(to, text, buttons)
            if sid is not None:
                return (sid,)
        if buttons:
            text = numbered_options(text, channel_text("channels.options_header"), [title for title, _ in buttons])
        sids = []
        for chunk in split_message(text, WHATSAPP_MAX_CHARS):
            sent = partial(self.twilio.create, to, chunk, status_callback=self.status_callback)
            sids.append(await with_retries(sent, retry_wait))
        return tuple(sids)

    def has_template(self, purpose: str) -> bool:
        return purpose in self.templates

    async def send_template(self, recipient_id: str, purpose: str, variables: dict[str, str]) -> tuple[str, ...]:
        """An approved template (outside the 24-hour window); WhatsApp refuses line breaks, tabs and
        long runs of spaces in a template's variables, so whitespace is folded to single spaces."""
        variables = {name: " ".join(value.split()) for name, value in variables.items()}
        sent = partial(
            self.twilio.create,
            whatsapp_address(recipient_id),
            content_sid=self.templates[purpose],
            variables=variables,
            status_callback=self.status_callback,
        )
        return (await with_retries(sent, retry_wait),)

    async def _send_interactive(self, to: str, text: str, buttons: tuple[Option, ...]) -> str | None:
        """WhatsApp's own buttons or list; None when these cannot go that way (then: numbered text)."""
        definition = interactive_content(buttons, channel_text("channels.list_button"))
        if definition is None or not text.strip() or len(text) > INTERACTIVE_BODY:
            return None
        try:
            content_sid = await self._content_sid(definition)
        except Exception as error:
            logger.warning("whatsapp: Content API unavailable, buttons go as numbered text: %s", error)
            return None
        sent = partial(
            self.twilio.create, to, content_sid=content_sid, variables={"1": text}, status_callback=self.status_callback
        )
        try:
            return await with_retries(sent, retry_wait)
        except DeliveryError as error:
            if not refused(error.__cause__):
                raise  # Twilio may have it: sending the numbered text too could say it twice
            logger.warning("whatsapp: content %s refused, buttons go as numbered text: %s", content_sid, error)
            return None

    async def _content_sid(self, definition: dict[str, Any]) -> str:
        """The content for this button set: from this process, the store (other replicas, earlier
        runs), or created now and kept."""
        digest = content_digest(definition["types"])
        if digest in self._contents:
            return self._contents[digest]
        store = handoff_desk().store
        sid = await asyncio.to_thread(store.content_sid, digest)
        if sid is None:
            created = await self.twilio.create_content(definition)
            sid = await asyncio.to_thread(store.remember_content, digest, created)
        self._contents[digest] = sid
        return sid

    async def typing(self, message_sid: str) -> None:
        await self.twilio.typing(message_sid)

    def remember_inbound(self, conversation_id: str, message_sid: str) -> None:
        address = whatsapp_address(conversation_id)
        self._last_inbound.set(address, message_sid)
        if self._shared is not None:
            self._shared.set(f"inbound:{address}", message_sid, self._last_inbound.ttl)

    async def typing_to(self, recipient_id: str) -> bool:
        """Show "typing…" to this person (an advisor is writing); False when no replica knows a
        message of theirs from the last 24 hours to attach it to. Raises on failure."""
        address = whatsapp_address(recipient_id)
        message_sid = self._last_inbound.get(address)
        if message_sid is None and self._shared is not None:
            message_sid = self._shared.get(f"inbound:{address}")
        if message_sid is None:
            return False
        await self.twilio.typing(message_sid)
        return True

    async def close(self) -> None:
        await self.twilio.close()


class WhatsAppOutput(ChatOutput):
    @classmethod
    def name(cls) -> str:
        return "whatsapp"


class WhatsAppChannel(ProviderChannel):
    @classmethod
    def name(cls) -> str:
        return "whatsapp"

    def __init__(self, settings: Settings) -> None:
        token = require_secret("TWILIO_AUTH_TOKEN", settings.twilio_auth_token)
        self.signature = WebhookSignature(token, settings.public_url + WHATSAPP_WEBHOOK_PATH)
        self.status_signature = WebhookSignature(token, settings.public_url + WHATSAPP_STATUS_PATH)
        shared = shared_keys(settings, self.name())
        self.sender = WhatsAppSender(settings, shared)
        self.output = WhatsAppOutput(self.sender)
        self.inbound = InboundPath(self.name(), self.output, FloodLimiter(shared=shared))
        self.recent = RecentIds(shared=shared)

    def blueprint(self, on_new_message: OnNewMessage) -> Blueprint:
        webhook = self.webhook_blueprint()

        @webhook.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> HTTPResponse:
            received_at = time.time()
            form = twilio_form(request)
            if not self.signature.is_valid(request.query_string, form, request.headers.get("X-Twilio-Signature")):
                logger.warning("whatsapp: request without a valid Twilio signature rejected")
                return response.text("invalid signature", status=403)
            sender, message_sid = form.get("From") or "", form.get("MessageSid") or ""
            if sender.startswith(PREFIX) and message_sid and self.recent.first_time(message_sid):
                work = partial(self._handle, on_new_message, request.app.ctx.agent, form, received_at)
                self.inbound.in_order(sender, work)
            return response.text(EMPTY_TWIML, content_type="text/xml")

        @webhook.route("/status", methods=["POST"])
        async def status(request: Request) -> HTTPResponse:
            form = twilio_form(request)
            signature = request.headers.get("X-Twilio-Signature")
            if not self.status_signature.is_valid(request.query_string, form, signature):
                logger.warning("whatsapp: status callback without a valid Twilio signature rejected")
                return response.text("invalid signature", status=403)
            await self._note_status(form)
            return response.empty()

        return webhook

    async def _note_status(self, form: Mapping[str, Any]) -> None:
        """Keep how far a message got; a status Twilio adds later, or one for an inbound message,
        is ignored. Twilio retries a callback we fail, so a store error is a 5xx."""
        sid, status = form.get("MessageSid") or "", (form.get("MessageStatus") or "").lower()
        if not sid or status not in DELIVERY_RANK:
            return
        error_code = form.get("ErrorCode") or None
        await asyncio.to_thread(handoff_desk().store.note_delivery, sid, status, error_code)
        if status in FAILED_DELIVERY:
            logger.warning(
                "whatsapp: message %s to conversation %s %s (error %s)",
                sid, hash_id(form.get("To") or ""), status, error_code,
            )  # fmt: skip

    async def _handle(
        self, on_new_message: OnNewMessage, agent: Agent, form: Mapping[str, Any], received_at: float
    ) -> None:
        sender, text = form.get("From"), form.get("Body") or ""
        self.sender.remember_inbound(sender, form.get("MessageSid") or "")
        typing = asyncio.create_task(self._typing_after(TYPING_AFTER_SECONDS, form.get("MessageSid") or ""))
        try:
            payload = await self._tapped(agent, sender, form)
            if payload is None and text:
                payload = match_option(text, await self._last_options(agent, sender))
            inbound = Inbound(sender, received_at, text=text, payload=payload, media=media_of(form))
            await self.inbound.handle(on_new_message, inbound)
        finally:
            typing.cancel()

    async def _typing_after(self, delay: float, message_sid: str) -> None:
        """Show "typing…" if the answer is not out after `delay` seconds; never fails the answer."""
        await asyncio.sleep(delay)
        try:
            await self.sender.typing(message_sid)
        except Exception as error:  # best effort: a missing indicator is no reason to wait or fail
            logger.info("whatsapp: typing indicator not shown: %s", error)

    @staticmethod
    async def _tapped(agent: Agent, sender: str, form: Mapping[str, Any]) -> str | None:
        """The payload of one of WhatsApp's own buttons or list items the person tapped, if it is
        one we offered (Twilio signs the form, but an old message's button may be tapped too)."""
        payload = form.get("ButtonPayload") or form.get("ListId") or ""
        if payload and await was_offered(agent, sender, payload):
            return payload
        return None

    async def _last_options(self, agent: Agent, sender: str) -> tuple[Option, ...]:
        """The numbered options of the last message the person got, if it had any.

        Only the last message counts: after a message without options (a rating question, an
        advisor's reply) a bare number means what it says. Read from the conversation's tracker,
        so options survive restarts and every replica sees them.
        """
        tracker = await agent.tracker_store.retrieve(sender)
        last = next((e for e in reversed(tracker.events) if isinstance(e, BotUttered)), None) if tracker else None
        if last is None or time.time() - last.timestamp > self.sender.reply_window.total_seconds():
            return ()
        return tuple((str(b["title"]), str(b["payload"])) for b in last.data.get("buttons") or ())
