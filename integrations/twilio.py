"""Twilio as the WhatsApp channel uses it (no Rasa here): sending through the Messages API, checking a
webhook's signature, and which failures mean Twilio took nothing.

The client is pointed at TWILIO_API_BASE_URL, so tests run the SDK's real request path against a
local stand-in.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import aiohttp
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from twilio.twiml.messaging_response import MessagingResponse

from bot.settings import Settings

# The SDK logs every request at INFO, recipients included: keep it to warnings.
http_logger = logging.getLogger(f"{__name__}.http")
http_logger.setLevel(logging.WARNING)

EMPTY_TWIML = str(MessagingResponse())  # "received; nothing to answer in this response"
SEND_TIMEOUT_SECONDS = 15.0


class TwilioMessages:
    """Twilio's Messages API for one sender address, through the SDK's async client."""

    def __init__(self, settings: Settings, from_address: str) -> None:
        self.settings = settings
        self.from_address = from_address
        self._client: Client | None = None

    def client(self) -> Client:
        """Built on first use, inside the server's event loop (its aiohttp session needs one)."""
        if self._client is None:
            http = AsyncTwilioHttpClient(timeout=SEND_TIMEOUT_SECONDS, logger=http_logger)
            self._client = Client(self.settings.twilio_account_sid, self.settings.twilio_auth_token, http_client=http)
            self._client.api.base_url = self.settings.twilio_api_base_url
        return self._client

    async def create(self, to: str, body: str) -> None:
        await self.client().messages.create_async(to=to, from_=self.from_address, body=body)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.http_client.close()


class WebhookSignature:
    """Twilio signs the URL it called (ours as seen from outside, behind any proxy) and the form."""

    def __init__(self, auth_token: str, public_url: str) -> None:
        self.validator = RequestValidator(auth_token)
        self.public_url = public_url

    def is_valid(self, query_string: str, form: Mapping[str, Any], signature: str | None) -> bool:
        if not signature:
            return False
        url = self.public_url + (f"?{query_string}" if query_string else "")
        return self.validator.validate(url, form, signature)


def retry_wait(error: Exception) -> float | None:
    """Retry only when Twilio did not take the message: 429, a 5xx, or no connection at all."""
    if isinstance(error, TwilioRestException):
        return 0.0 if error.status == 429 or error.status >= 500 else None
    return 0.0 if isinstance(error, aiohttp.ClientConnectorError) else None
