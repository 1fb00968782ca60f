"""Twilio as the WhatsApp channel uses it (no Rasa here): sending through the Messages API (text,
or content by its SID: buttons, lists, approved templates), creating content through the Content
API, the typing indicator, checking a webhook's signature, and which failures mean Twilio took
nothing.

The client is pointed at TWILIO_API_BASE_URL (and the Content and Messaging domains at
TWILIO_CONTENT_BASE_URL and TWILIO_MESSAGING_BASE_URL), so tests run the SDK's real request path
against a local stand-in.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

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
CONTENT_TIMEOUT_SECONDS = 5.0  # creating content: on failure the numbered text goes instead
TYPING_TIMEOUT_SECONDS = 3.0  # best effort: an answer never waits for it

# WhatsApp's limits for interactive messages (Twilio's Content API documents them).
QUICK_REPLY_MAX, QUICK_REPLY_TITLE = 3, 20
LIST_MAX, LIST_ITEM_TITLE, LIST_ITEM_DESCRIPTION, LIST_BUTTON = 10, 24, 72, 20
INTERACTIVE_BODY = 1024
BODY_VARIABLE = "{{1}}"  # one content per button set: the message's text goes in as variable 1

# A person's file (inbound media), fetched only when an advisor opens it.
MEDIA_MAX_BYTES = 16 * 1024 * 1024  # WhatsApp's own limit for a document is 100 MB; photos and audio are far below
MEDIA_CHUNK = 64 * 1024
MEDIA_MAX_REDIRECTS = 3  # Twilio answers with a redirect to its storage
MEDIA_PATH = re.compile(
    r"^/2010-04-01/Accounts/(?P<account>AC[0-9a-fA-F]{32})/Messages/(?:MM|SM)[0-9a-fA-F]{32}/Media/ME[0-9a-fA-F]{32}$"
)
CONTENT_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$")


class TimedHttpClient(AsyncTwilioHttpClient):
    """The SDK's async client with its timeout applied: the SDK passes None on every call, which
    aiohttp takes as "no time limit", so a Twilio that never answers would hold a message forever."""

    async def request(self, method: str, url: str, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        return await super().request(method, url, *args, timeout=timeout or self.timeout, **kwargs)


class TwilioMessages:
    """Twilio's Messages API for one sender address, through the SDK's async client."""

    def __init__(self, settings: Settings, from_address: str) -> None:
        self.settings = settings
        self.from_address = from_address
        self._client: Client | None = None

    def client(self) -> Client:
        """Built on first use, inside the server's event loop (its aiohttp session needs one)."""
        if self._client is None:
            http = TimedHttpClient(timeout=SEND_TIMEOUT_SECONDS, logger=http_logger)
            self._client = Client(self.settings.twilio_account_sid, self.settings.twilio_auth_token, http_client=http)
            # Each Twilio domain has its own base URL (api., content., messaging.twilio.com).
            self._client.api.base_url = self.settings.twilio_api_base_url
            self._client.content.base_url = self.settings.twilio_content_base_url
            self._client.messaging.base_url = self.settings.twilio_messaging_base_url
        return self._client

    async def create(
        self,
        to: str,
        body: str | None = None,
        content_sid: str | None = None,
        variables: Mapping[str, str] | None = None,
        status_callback: str | None = None,
    ) -> str:
        """Send a text, or a content by its SID with its variables; the new message's SID."""
        options: dict[str, Any] = {"to": to, "from_": self.from_address}
        if content_sid:
            options["content_sid"] = content_sid
            if variables:
                options["content_variables"] = json.dumps(dict(variables), ensure_ascii=False)
        else:
            options["body"] = body
        if status_callback:
            options["status_callback"] = status_callback
        message = await self.client().messages.create_async(**options)
        return str(message.sid)

    async def create_content(self, definition: Mapping[str, Any]) -> str:
        """Create a content; its SID. A list refused without a description on every item is
        created again with them. Raises TwilioRestException when Twilio refuses."""
        try:
            return await self._post_content(definition)
        except TwilioRestException as error:
            described = with_every_description(definition)
            if described is None or not refused(error):
                raise
            return await self._post_content(described)

    async def _post_content(self, definition: Mapping[str, Any]) -> str:
        """The SDK has no method for it: its generic request, as the SDK would send it, JSON."""
        url = self.client().content.absolute_url("v1/Content")
        response = await self.client().request_async(
            "POST",
            url,
            data=json.dumps(definition, ensure_ascii=False),
            headers={"Content-Type": "application/json"},
            timeout=CONTENT_TIMEOUT_SECONDS,
        )
        return str(_json_of(response, "POST", url)["sid"])

    async def typing(self, message_sid: str) -> None:
        """Show "typing…" to the person who sent `message_sid` (Twilio clears it when we answer or
        after 25 seconds). Raises on failure; callers treat it as best effort."""
        url = self.client().messaging.absolute_url("v2/Indicators/Typing.json")
        response = await self.client().request_async(
            "POST", url, data={"messageId": message_sid, "channel": "whatsapp"}, timeout=TYPING_TIMEOUT_SECONDS
        )
        _json_of(response, "POST", url)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.http_client.close()


class MediaError(Exception):
    """Twilio could not give a person's file (gone, refused, unreachable)."""


class MediaTooLarge(MediaError):
    """The file is larger than MEDIA_MAX_BYTES: not passed on."""


@dataclass(frozen=True)
class MediaDownload:
    content_type: str
    length: int | None  # as Twilio (its storage) announced it
    chunks: AsyncIterator[bytes]


def is_our_media_url(url: str, settings: Settings) -> bool:
    """Whether `url` is the address of a file sent to our Twilio account: Twilio's API host (or the
    configured TWILIO_API_BASE_URL), no credentials, query or fragment in it, and the path of a
    message's media under our account SID. Anything else is never fetched (no SSRF through a URL
    that came with a message)."""
    try:
        parts, base = urlsplit(url), urlsplit(settings.twilio_api_base_url)
        port, base_port = parts.port, base.port
    except ValueError:
        return False
    match = MEDIA_PATH.match(parts.path)
    return bool(
        match
        and match["account"] == settings.twilio_account_sid
        and (parts.scheme, parts.hostname, port) == (base.scheme, base.hostname, base_port)
        and parts.scheme in ("https", "http")
        and parts.username is None
        and parts.password is None
        and not parts.query
        and not parts.fragment
    )


@asynccontextmanager
async def open_media(settings: Settings, url: str, max_bytes: int | None = None) -> AsyncIterator[MediaDownload]:
    """Stream a person's file from Twilio: GET with Basic auth (account SID, auth token), following
    Twilio's redirect to its storage (aiohttp drops the credentials when the redirect leaves the
    host). Nothing is written anywhere: the chunks go to whoever reads them. Raises MediaTooLarge
    before reading when Twilio announces more than `max_bytes` (MEDIA_MAX_BYTES), and while reading when more come;
    MediaError when Twilio refuses or cannot be reached. Only for URLs `is_our_media_url` accepts."""
    max_bytes = max_bytes or MEDIA_MAX_BYTES
    if not is_our_media_url(url, settings):
        raise MediaError("not a media URL of this Twilio account")
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=SEND_TIMEOUT_SECONDS, sock_read=SEND_TIMEOUT_SECONDS)
    auth = aiohttp.BasicAuth(settings.twilio_account_sid, settings.twilio_auth_token)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        try:
            response = await session.get(url, auth=auth, allow_redirects=True, max_redirects=MEDIA_MAX_REDIRECTS)
        except (aiohttp.ClientError, TimeoutError) as error:
            raise MediaError(f"Twilio unreachable: {type(error).__name__}") from error
        async with response:
            if response.status != 200:
                raise MediaError(f"Twilio answered {response.status}")
            if response.content_length is not None and response.content_length > max_bytes:
                raise MediaTooLarge(f"{response.content_length} bytes, more than {max_bytes}")
            content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if not CONTENT_TYPE.match(content_type):
                content_type = "application/octet-stream"

            async def chunks() -> AsyncIterator[bytes]:
                read = 0
                try:
                    async for chunk in response.content.iter_chunked(MEDIA_CHUNK):
                        read += len(chunk)
                        if read > max_bytes:
                            raise MediaTooLarge(f"more than {max_bytes} bytes")
                        yield chunk
                except (aiohttp.ClientError, TimeoutError) as error:
                    raise MediaError(f"download interrupted: {type(error).__name__}") from error

            yield MediaDownload(content_type, response.content_length, chunks())


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


def _json_of(response: Any, method: str, url: str) -> dict[str, Any]:
    """The body of a successful response, or the TwilioRestException the SDK would raise."""
    try:
        payload = json.loads(response.text or "{}")
    except ValueError:
        payload = {}
    if not 200 <= response.status_code < 300:
        raise TwilioRestException(
            response.status_code, url, payload.get("message") or response.text, payload.get("code"), method
        )
    return payload


def interactive_content(buttons: Sequence[tuple[str, str]], list_button: str) -> dict[str, Any] | None:
    """A Content API definition for WhatsApp's own buttons (up to 3 short titles, `twilio/quick-reply`)
    or list (up to 10, `twilio/list-picker`, opened with `list_button`), the text as variable 1;
    None when WhatsApp could not show these options (then they go as numbered text).

    A list item's title is at most 24 characters: a longer title (up to 72) is shortened at a word
    and given whole as the item's description, which the list shows under it."""
    titles = [title for title, _ in buttons]
    if not buttons or len({p for _, p in buttons}) != len(buttons) or any(not t.strip() for t in titles):
        return None
    if len(buttons) <= QUICK_REPLY_MAX and all(len(t) <= QUICK_REPLY_TITLE for t in titles):
        kind = "twilio/quick-reply"
        actions = [{"type": "QUICK_REPLY", "title": t, "id": p} for t, p in buttons]
        types = {kind: {"body": BODY_VARIABLE, "actions": actions}}
    elif len(buttons) <= LIST_MAX and all(len(t) <= LIST_ITEM_DESCRIPTION for t in titles):
        kind = "twilio/list-picker"
        items = [list_item(t, p) for t, p in buttons]
        types = {kind: {"body": BODY_VARIABLE, "button": list_button[:LIST_BUTTON], "items": items}}
    else:
        return None
    digest = content_digest(types)
    return {
        "friendly_name": f"som_{kind.split('/')[1].replace('-', '_')}_{digest[:16]}",
        "language": "es",
        "variables": {"1": "-"},
        "types": types,
    }


def list_item(title: str, payload: str) -> dict[str, str]:
    if len(title) <= LIST_ITEM_TITLE:
        return {"item": title, "id": payload}
    short = title[: LIST_ITEM_TITLE - 1].rsplit(" ", 1)[0].rstrip(" ,:;.-") or title[: LIST_ITEM_TITLE - 1]
    return {"item": short + "…", "id": payload, "description": title}


def with_every_description(definition: Mapping[str, Any]) -> dict[str, Any] | None:
    """The same list with a description on every item (its title where it had none), for a
    Content API that requires one (Twilio's pages disagree on it); None when nothing would change."""
    types = definition["types"]
    items = types.get("twilio/list-picker", {}).get("items", [])
    if all("description" in item for item in items):
        return None
    described = [{**item, "description": item.get("description", item["item"])} for item in items]
    picker = {**types["twilio/list-picker"], "items": described}
    return {**definition, "types": {"twilio/list-picker": picker}}


def content_digest(definition: Mapping[str, Any]) -> str:
    """The same button set gives the same hash, whatever the order of its JSON keys."""
    canonical = json.dumps(definition, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def refused(error: BaseException | None) -> bool:
    """Twilio answered and refused the request (a 4xx other than 429): it took nothing."""
    return isinstance(error, TwilioRestException) and 400 <= error.status < 500 and error.status != 429


def retry_wait(error: Exception) -> float | None:
    """Retry only when Twilio did not take the message: 429, a 5xx, or no connection at all."""
    if isinstance(error, TwilioRestException):
        return 0.0 if error.status == 429 or error.status >= 500 else None
    return 0.0 if isinstance(error, aiohttp.ClientConnectorError) else None
