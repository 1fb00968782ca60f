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

import aiohttp
from rasa.core.agent import Agent
from rasa.shared.core.events import BotUttered
from sanic import Blueprint, response
from sanic.request import Request, RequestParameters
from sanic.response import HTTPResponse
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from twilio.twiml.messaging_response import MessagingResponse

from bot.messaging import WHATSAPP_MAX_CHARS, Option, RecentIds, match_option, numbered_options, split_message
from bot.settings import WHATSAPP_WEBHOOK_PATH, Settings
from channels._common import ChatOutput, Inbound, InboundPath, ProviderChannel, channel_text, with_retries
from channels.delivery import OnNewMessage
from integrations.redis_keys import shared_keys

logger = logging.getLogger(__name__)
# The SDK logs every request at INFO, recipients included: keep it to warnings.
twilio_http_logger = logging.getLogger(f"{__name__}.twilio_http")
twilio_http_logger.setLevel(logging.WARNING)

PREFIX = "whatsapp:"
EMPTY_TWIML = str(MessagingResponse())
SEND_TIMEOUT_SECONDS = 15.0
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


def _retry_wait(error: Exception) -> float | None:
    """Retry only when Twilio did not take the message: 429, a 5xx, or no connection at all."""
    if isinstance(error, TwilioRestException):
        return 0.0 if error.status == 429 or error.status >= 500 else None
    return 0.0 if isinstance(error, aiohttp.ClientConnectorError) else None


class WhatsAppSender:
    """Sends through Twilio's Messages API, buttons as one numbered message."""

    reply_window = dt.timedelta(hours=24)  # WhatsApp takes free text only this long after the person wrote

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sender_address = whatsapp_address(settings.twilio_whatsapp_from)
        self._client: Client | None = None

    def client(self) -> Client:
        """Built on first use, inside the server's event loop (its aiohttp session needs one)."""
        if self._client is None:
            http = AsyncTwilioHttpClient(timeout=SEND_TIMEOUT_SECONDS, logger=twilio_http_logger)
            self._client = Client(self.settings.twilio_account_sid, self.settings.twilio_auth_token, http_client=http)
            self._client.api.base_url = self.settings.twilio_api_base_url
        return self._client

    async def send(self, recipient_id: str, text: str, buttons: tuple[Option, ...] = ()) -> None:
        to = whatsapp_address(recipient_id)
        if buttons:
            text = numbered_options(text, channel_text("channels.options_header"), [title for title, _ in buttons])
        for chunk in split_message(text, WHATSAPP_MAX_CHARS):
            await with_retries(partial(self._create, to, chunk), _retry_wait)

    async def _create(self, to: str, body: str) -> None:
        await self.client().messages.create_async(to=to, from_=self.sender_address, body=body)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.http_client.close()


class WhatsAppOutput(ChatOutput):
    @classmethod
    def name(cls) -> str:
        return "whatsapp"


class WhatsAppChannel(ProviderChannel):
    @classmethod
    def name(cls) -> str:
        return "whatsapp"

    def __init__(self, settings: Settings) -> None:
        self.public_webhook_url = settings.public_url + WHATSAPP_WEBHOOK_PATH
        self.validator = RequestValidator(settings.twilio_auth_token)
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
            if not self._signed(request, form):
                logger.warning("whatsapp: request without a valid Twilio signature rejected")
                return response.text("invalid signature", status=403)
            sender, message_sid = form.get("From") or "", form.get("MessageSid") or ""
            if sender.startswith(PREFIX) and message_sid and self.recent.first_time(message_sid):
                work = partial(self._handle, on_new_message, request.app.ctx.agent, form, received_at)
                self.inbound.in_order(sender, work)
            return response.text(EMPTY_TWIML, content_type="text/xml")

        return webhook

    def _signed(self, request: Request, form: RequestParameters) -> bool:
        """Twilio signs the URL it called (ours as seen from outside, behind any proxy) and the form."""
        signature = request.headers.get("X-Twilio-Signature")
        if not signature:
            return False
        url = self.public_webhook_url + (f"?{request.query_string}" if request.query_string else "")
        return self.validator.validate(url, form, signature)

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
