"""WhatsApp through Twilio: `POST /webhooks/whatsapp/webhook`, Rasa channel name `whatsapp`.

Unlike Rasa's Twilio connector, it checks Twilio's signature, answers Twilio at once and works
in the background, ignores redelivered messages, turns buttons into one numbered message (and
maps "1", "uno" or the option's words back), splits long answers, answers media, and sends through
the SDK's async client with retries that never send a message twice.

Conversation ids are Twilio's own addresses, "whatsapp:+51…"; the outbound sender registered for
advisors takes that same id.
"""

from __future__ import annotations

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

from bot.messaging import WHATSAPP_MAX_CHARS, Option, RecentIds, match_option, numbered_options, split_message
from bot.settings import WHATSAPP_WEBHOOK_PATH, Settings
from channels._common import (
    ChatOutput,
    Inbound,
    InboundPath,
    ProviderChannel,
    channel_text,
    require_secret,
    with_retries,
)
from channels.delivery import OnNewMessage
from integrations.redis_keys import shared_keys
from integrations.twilio import EMPTY_TWIML, TwilioMessages, WebhookSignature, retry_wait

logger = logging.getLogger(__name__)

PREFIX = "whatsapp:"
MAX_MEDIA = 10  # Twilio forwards at most ten media per message


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


class WhatsAppSender:
    """Sends through Twilio's Messages API, buttons as one numbered message."""

    reply_window = dt.timedelta(hours=24)  # WhatsApp takes free text only this long after the person wrote

    def __init__(self, settings: Settings) -> None:
        self.twilio = TwilioMessages(settings, whatsapp_address(settings.twilio_whatsapp_from))

    async def send(self, recipient_id: str, text: str, buttons: tuple[Option, ...] = ()) -> None:
        to = whatsapp_address(recipient_id)
        if buttons:
            text = numbered_options(text, channel_text("channels.options_header"), [title for title, _ in buttons])
        for chunk in split_message(text, WHATSAPP_MAX_CHARS):
            await with_retries(partial(self.twilio.create, to, chunk), retry_wait)

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
        self.sender = WhatsAppSender(settings)
        self.output = WhatsAppOutput(self.sender)
        self.inbound = InboundPath(self.name(), self.output)
        self.recent = RecentIds(shared=shared_keys(settings, self.name()))

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

        return webhook

    async def _handle(
        self, on_new_message: OnNewMessage, agent: Agent, form: Mapping[str, Any], received_at: float
    ) -> None:
        sender, text = form.get("From"), form.get("Body") or ""
        payload = match_option(text, await self._last_options(agent, sender)) if text else None
        inbound = Inbound(sender, received_at, text=text, payload=payload, media=media_of(form))
        await self.inbound.handle(on_new_message, inbound)

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
