"""The REST channel: `POST /webhooks/rest/webhook` with `{"sender": "...", "message": "..."}`.

Replaces Rasa's RestInput handler to reject malformed requests with a clear 400, stamp each
message with its arrival time for the turn log, and keep each answer in one message. REST answers
requests only: it registers no outbound sender, so an advisor's reply to a REST conversation is kept
but reported as not delivered.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from rasa.core.channels.channel import CollectingOutputChannel, InputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from channels.delivery import deliver
from channels.requests import json_object

MAX_SENDER_CHARS = 128


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

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        webhook = Blueprint("rest_channel", __name__)

        @webhook.route("/", methods=["GET"])
        async def health(request: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @webhook.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> HTTPResponse:
            received_at = time.time()
            parsed = parse_rest_request(request)
            if isinstance(parsed, str):
                return response.json({"error": parsed}, status=400)
            sender, text = parsed
            collector = WholeMessageCollector()
            await deliver(
                on_new_message,
                UserMessage(text, collector, sender, input_channel=self.name(), metadata={"received_at": received_at}),
            )
            return response.json(collector.messages)

        return webhook
