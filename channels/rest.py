"""Rasa's REST channel, stamping each message with its arrival time for the turn log."""

from __future__ import annotations

import time
from typing import Any

from rasa.core.channels.rest import RestInput
from sanic.request import Request


class RestChannel(RestInput):
    """`POST /webhooks/rest/webhook` with `{"sender": ..., "message": ...}`."""

    @classmethod
    def name(cls) -> str:
        return "rest"

    def get_metadata(self, request: Request) -> dict[str, Any]:
        metadata = super().get_metadata(request) or {}
        return {**metadata, "received_at": time.time()}
