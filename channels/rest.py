"""The REST channel: `POST /webhooks/rest/webhook` with `{"sender": "...", "message": "..."}`.

Replaces Rasa's RestInput handler to reject malformed requests with a clear 400, stamp each
message with its arrival time for the turn log, and keep each answer in one message. REST answers
requests only: it registers no outbound sender, so an advisor's reply to a REST conversation is kept
but reported as not delivered.

Anyone may choose a `sender`, so REST conversations live in their own namespace: "+51987…" or
"whatsapp:+51987…" become "rest:+51987…" and "rest:whatsapp:+51987…", never another channel's
conversation. With REST_TOKEN set, requests need `Authorization: Bearer <REST_TOKEN>`; the
production profile does not load the channel without it (see credentials.yml). The web flood
limits and the input cut apply as on every channel.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from rasa.core.channels.channel import CollectingOutputChannel, InputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.messaging import Flood, WebFloodLimiter, cut_input
from bot.privacy import hash_id
from bot.services import settings
from channels._common import channel_text
from channels.delivery import deliver
from channels.requests import bearer_token, json_object, request_client, same_secret
from integrations.redis_keys import shared_keys

MAX_SENDER_CHARS = 128
NAMESPACE = "rest:"


def conversation_id(sender: str) -> str:
    """REST's own namespace: a REST client can never speak in another channel's conversation."""
    return sender if sender.startswith(NAMESPACE) else NAMESPACE + sender


class WholeMessageCollector(CollectingOutputChannel):
    """Collects answers without Rasa's split on blank lines: one knowledge-base message, one bubble."""

    async def send_text_message(self, recipient_id: str, text: str, **kwargs: Any) -> None:
        await self._persist_message(self._message(recipient_id, text=text.strip()))


def parse_rest_request(request: Request) -> tuple[str, str] | str:
    """The (sender, text) of a well-formed request, or the error to return."""
    body = json_object(request)
    if body is None:
        return 'the body must be a JSON object: {"sender": "...", "message": "..."}'
    sender, text = body.get("sender"), body.get("message")
    if not isinstance(sender, str) or not sender.strip() or len(sender) > MAX_SENDER_CHARS:
        return f"'sender' must be a non-empty string of at most {MAX_SENDER_CHARS} characters"
    if not isinstance(text, str):
        return "'message' must be a string"
    return sender, text


class RestChannel(InputChannel):
    @classmethod
    def name(cls) -> str:
        return "rest"

    def __init__(self) -> None:
        current = settings()
        self.token = current.rest_token
        self.trusted_proxies = current.trusted_proxies
        self.flood = WebFloodLimiter(
            current.web_conversation_rate, current.web_client_rate, shared=shared_keys(current, self.name())
        )

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        webhook = Blueprint("rest_channel", __name__)

        @webhook.route("/", methods=["GET"])
        async def health(request: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @webhook.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> HTTPResponse:
            received_at = time.time()
            if self.token and not same_secret(bearer_token(request), self.token):
                return response.json({"error": "a valid 'Authorization: Bearer <token>' is required"}, status=401)
            parsed = parse_rest_request(request)
            if isinstance(parsed, str):
                return response.json({"error": parsed}, status=400)
            sender, text = conversation_id(parsed[0]), parsed[1]
            client = request_client(request, self.trusted_proxies)
            if self.flood.check(client, sender) is not Flood.ALLOW:
                return response.json(
                    {"error": channel_text("channels.flood")}, status=429, headers={"Retry-After": "60"}
                )
            collector = WholeMessageCollector()
            text, was_cut = cut_input(text)
            if was_cut:
                await collector.send_text_message(sender, channel_text("channels.too_long"))
            metadata = {"received_at": received_at, "client": hash_id(client)}
            await deliver(
                on_new_message, UserMessage(text, collector, sender, input_channel=self.name(), metadata=metadata)
            )
            return response.json(collector.messages)

        return webhook
