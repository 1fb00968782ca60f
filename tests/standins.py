"""Stand-ins for the parties around the assistant: Twilio's Messages API and Telegram's Bot API
as local servers on loopback, and an advisor answering through the advisor API.

The servers implement only what our channels and commands use, check what the real services
check (credentials, WhatsApp's 1600 characters, Telegram's HTML), record every request, and can
be told to answer errors first or to be down, so tests drive the real SDKs without the internet.
"""

from __future__ import annotations

import asyncio
import base64
import html
import itertools
import json
import random
import re
import socket
import sqlite3
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

from twilio.request_validator import RequestValidator

from bot.settings import WHATSAPP_WEBHOOK_PATH

T = TypeVar("T")

TWILIO_ACCOUNT_SID = "AC" + "0" * 31 + "1"
TWILIO_AUTH_TOKEN = "stand-in-twilio-auth-token"
TWILIO_WHATSAPP_FROM = "whatsapp:+14155238886"
MESSAGE_SID = re.compile(r"^(SM|MM)[0-9a-fA-F]{32}$")  # what the typing indicator takes (messaging v2 spec)
TELEGRAM_BOT_ID = 700100200
TELEGRAM_BOT_USERNAME = "som_test_bot"
TELEGRAM_BOT_TOKEN = f"{TELEGRAM_BOT_ID}:stand-in-telegram-token"
TELEGRAM_WEBHOOK_SECRET = "stand-in-webhook-secret"
PUBLIC_URL = "https://som.example.pe"
WHATSAPP_SIGNED_URL = PUBLIC_URL + WHATSAPP_WEBHOOK_PATH  # the address Twilio signs


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    status: int  # what the stand-in answered


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` on a fresh event loop in its own thread: Playwright's sync API (browser
    tests) keeps a loop running in the main thread, where `asyncio.run` would refuse."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def wait_for(check: Callable[[], T], timeout: float = 20.0, what: str = "the condition") -> T:
    """Poll `check` until it returns something truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def user_messages(tracker_db: Path, conversation_id: str, at_least: int) -> list[dict]:
    """The person's messages as Rasa stored them (text, metadata), once `at_least` are saved
    (Rasa saves a turn just after sending its answer)."""

    def stored() -> list[dict]:
        with sqlite3.connect(tracker_db) as db:
            rows = db.execute(
                "SELECT data FROM events WHERE sender_id = ? AND type_name = 'user' ORDER BY id", (conversation_id,)
            ).fetchall()
        return [json.loads(data) for (data,) in rows]

    return wait_for(lambda: len(stored()) >= at_least and stored(), what=f"{at_least} stored user messages")


class StandIn:
    """A threaded HTTP server on 127.0.0.1 that answers through `respond` and records requests."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._scripted: list[tuple[Callable[[Recorded], bool], int, dict]] = []
        self._stalls: list[tuple[Callable[[Recorded], bool], float]] = []
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> StandIn:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                standin._serve(self)

            def do_POST(self) -> None:
                standin._serve(self)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @contextmanager
    def down(self) -> Iterator[None]:
        """The service is unreachable (connections refused) inside the block."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    def fail_next(
        self, status: int, body: dict, when: Callable[[Recorded], bool] = lambda r: True, times: int = 1
    ) -> None:
        """Answer the next `times` requests matching `when` with this error instead of serving them."""
        with self._lock:
            self._scripted += [(when, status, body)] * times

    def stall_next(self, seconds: float, when: Callable[[Recorded], bool] = lambda r: True) -> None:
        """Answer the next request matching `when` only after `seconds` (it is still served)."""
        with self._lock:
            self._stalls.append((when, seconds))

    def _stall(self, request: Recorded) -> None:
        with self._lock:
            stall = next(((i, s) for i, (when, s) in enumerate(self._stalls) if when(request)), None)
            if stall is not None:
                del self._stalls[stall[0]]
        if stall is not None:
            time.sleep(stall[1])

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        split = urlsplit(handler.path)
        raw = handler.rfile.read(int(handler.headers.get("Content-Length") or 0)).decode("utf-8")
        if "json" in (handler.headers.get("Content-Type") or ""):
            params = {k: v if isinstance(v, str) else json.dumps(v) for k, v in json.loads(raw or "{}").items()}
        else:
            params = dict(parse_qsl(raw, keep_blank_values=True))
        params.update(parse_qsl(split.query, keep_blank_values=True))
        request = Recorded(handler.command, split.path, params, dict(handler.headers), 0)
        self._stall(request)
        status, body = self._scripted_answer(request) or self.respond(request)
        with self._lock:
            self.requests.append(Recorded(request.method, request.path, params, request.headers, status))
        data = json.dumps(body).encode("utf-8")
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _scripted_answer(self, request: Recorded) -> tuple[int, dict] | None:
        with self._lock:
            for index, (when, status, body) in enumerate(self._scripted):
                if when(request):
                    del self._scripted[index]
                    return status, body
        return None

    def respond(self, request: Recorded) -> tuple[int, dict]:
        raise NotImplementedError

    def recorded(self) -> list[Recorded]:
        with self._lock:
            return list(self.requests)


class TwilioStandIn(StandIn):
    """Twilio as our WhatsApp channel uses it, with Basic auth on every request:

    - POST /2010-04-01/Accounts/{sid}/Messages.json: a text (Body), or a content (ContentSid, with
      ContentVariables) created through the Content API or approved as a template (`approve`);
    - POST /v1/Content (the Content API, JSON): twilio/quick-reply and twilio/list-picker, checked
      against WhatsApp's limits;
    - POST /v2/Indicators/Typing.json (the typing indicator), for an inbound message SID;
    - GET /2010-04-01/Accounts/{sid}/Messages/{MM…}/Media/{ME…}: a file a person sent (`add_media`),
      answered like Twilio with a redirect to its storage (`/media-store/…`, no credentials needed
      there: the address is the secret), which serves the bytes.

    `status_callback` builds the signed callback Twilio would post for a message it took, to the
    StatusCallback address that message asked for; `stall_next` makes it answer late (a timeout).
    """

    MESSAGES = re.compile(r"^/2010-04-01/Accounts/(?P<sid>[^/]+)/Messages\.json$")
    CONTENT = "/v1/Content"
    TYPING = "/v2/Indicators/Typing.json"
    MEDIA = re.compile(r"^/2010-04-01/Accounts/(?P<sid>[^/]+)/Messages/(?P<message>[^/]+)/Media/(?P<media>[^/]+)$")
    MEDIA_STORE = "/media-store/"

    def __init__(self) -> None:
        super().__init__()
        self.media: dict[str, tuple[str, bytes, bool]] = {}  # media path -> (content type, bytes, length told)
        self._stored: dict[str, str] = {}  # storage token -> media path
        self.contents: dict[str, dict] = {}  # content SID -> its types (created or approved)
        self.templates: set[str] = set()  # approved templates (usable outside the 24-hour window)
        self.messages: dict[str, dict[str, str]] = {}  # message SID -> the parameters it was sent with
        # Twilio's pages disagree on whether a list item needs a description: both are tried.
        self.list_descriptions_required = False

    def env(self) -> dict[str, str]:
        return {
            "TWILIO_ACCOUNT_SID": TWILIO_ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": TWILIO_AUTH_TOKEN,
            "TWILIO_WHATSAPP_FROM": TWILIO_WHATSAPP_FROM,
            "TWILIO_API_BASE_URL": self.url,
            "TWILIO_CONTENT_BASE_URL": self.url,
            "TWILIO_MESSAGING_BASE_URL": self.url,
        }

    def approve(self, body: str) -> str:
        """A template the operator had approved (its text with {{1}}-style variables); its SID."""
        sid = "HX" + uuid.uuid4().hex
        with self._lock:
            self.contents[sid] = {"twilio/text": {"body": body}}
            self.templates.add(sid)
        return sid

    def add_media(self, content: bytes, content_type: str, tell_length: bool = True) -> str:
        """A file a person sent to our number: the MediaUrl Twilio would post with the message.
        Without `tell_length`, the storage sends it with no Content-Length (to the connection's end)."""
        path = f"/2010-04-01/Accounts/{TWILIO_ACCOUNT_SID}/Messages/MM{uuid.uuid4().hex}/Media/ME{uuid.uuid4().hex}"
        with self._lock:
            self.media[path] = (content_type, content, tell_length)
        return self.url + path

    def media_requests(self) -> list[Recorded]:
        """Every request for a file: Twilio's media address and its storage."""
        return [r for r in self.recorded() if self.MEDIA.match(r.path) or r.path.startswith(self.MEDIA_STORE)]

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        path = urlsplit(handler.path).path
        if handler.command != "GET" or not (self.MEDIA.match(path) or path.startswith(self.MEDIA_STORE)):
            super()._serve(handler)
            return
        headers = dict(handler.headers)
        credentials = base64.b64encode(f"{TWILIO_ACCOUNT_SID}:{TWILIO_AUTH_TOKEN}".encode()).decode()
        with self._lock:
            if path.startswith(self.MEDIA_STORE):
                stored = self.media.get(self._stored.get(path[len(self.MEDIA_STORE) :], ""))
                status = 200 if stored else 404
            elif headers.get("Authorization") != f"Basic {credentials}":
                stored, status = None, 401
            elif path in self.media:
                token = uuid.uuid4().hex
                self._stored[token] = path
                stored, status = None, 307
            else:
                stored, status = None, 404
            self.requests.append(Recorded("GET", path, {}, headers, status))
        handler.send_response(status)
        if status == 307:
            handler.send_header("Location", f"{self.url}{self.MEDIA_STORE}{token}")
        if stored:
            content_type, content, tell_length = stored
            handler.send_header("Content-Type", content_type)
            if tell_length:
                handler.send_header("Content-Length", str(len(content)))
            handler.end_headers()
            handler.wfile.write(content)
            return
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    def respond(self, request: Recorded) -> tuple[int, dict]:
        credentials = base64.b64encode(f"{TWILIO_ACCOUNT_SID}:{TWILIO_AUTH_TOKEN}".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {credentials}":
            return 401, {"code": 20003, "message": "Authenticate", "status": 401}
        if request.method == "POST" and request.path == self.CONTENT:
            return self._create_content(request)
        if request.method == "POST" and request.path == self.TYPING:
            if request.params.get("channel") != "whatsapp" or not MESSAGE_SID.match(
                request.params.get("messageId", "")
            ):
                return 400, {"code": 21211, "message": "Invalid messageId or channel", "status": 400}
            return 200, {"success": True}
        match = self.MESSAGES.match(request.path)
        if request.method != "POST" or not match:
            return 404, {"code": 20404, "message": "The requested resource was not found", "status": 404}
        if match["sid"] != TWILIO_ACCOUNT_SID:
            return 401, {"code": 20003, "message": "Authenticate", "status": 401}
        return self._create_message(request)

    def _create_message(self, request: Recorded) -> tuple[int, dict]:
        params = request.params
        body, to, sender = params.get("Body", ""), params.get("To", ""), params.get("From", "")
        content_sid = params.get("ContentSid", "")
        if not (body or content_sid) or not to.startswith("whatsapp:") or sender != TWILIO_WHATSAPP_FROM:
            return 400, {"code": 21602, "message": "Message body, To and From are required", "status": 400}
        if len(body) > 1600:
            return 400, {"code": 21617, "message": "The message body exceeds the 1600 character limit", "status": 400}
        if content_sid:
            problem = self._content_problem(content_sid, params.get("ContentVariables", ""))
            if problem:
                return 400, {"code": 21656, "message": problem, "status": 400}
        sid = "SM" + uuid.uuid4().hex
        with self._lock:
            self.messages[sid] = dict(params)
        return 201, {
            "sid": sid,
            "account_sid": TWILIO_ACCOUNT_SID,
            "to": to,
            "from": sender,
            "body": body or self.render(params),
            "status": "queued",
            "num_segments": "1",
            "direction": "outbound-api",
            "date_created": formatdate(usegmt=True),
            "uri": f"/2010-04-01/Accounts/{TWILIO_ACCOUNT_SID}/Messages/{sid}.json",
        }

    def _content_problem(self, content_sid: str, variables: str) -> str | None:
        with self._lock:
            known, template = content_sid in self.contents, content_sid in self.templates
        if not known:
            return f"Content {content_sid} not found"
        try:
            values = json.loads(variables or "{}")
        except ValueError:
            return "ContentVariables is not valid JSON"
        if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
            return "ContentVariables must map names to strings"
        if template and any(re.search(r"[\n\t]| {5,}", v) for v in values.values()):
            return "Template variables cannot have line breaks, tabs or more than 4 spaces in a row"
        return None

    def _create_content(self, request: Recorded) -> tuple[int, dict]:
        if "json" not in (request.headers.get("Content-Type") or ""):
            return 400, {"code": 20001, "message": "The Content API takes JSON", "status": 400}
        try:
            types = json.loads(request.params.get("types") or "null")
        except ValueError:
            types = None
        problem = content_types_problem(types, self.list_descriptions_required)
        if problem or not request.params.get("friendly_name"):
            return 400, {"code": 20001, "message": problem or "friendly_name is required", "status": 400}
        sid = "HX" + uuid.uuid4().hex
        with self._lock:
            self.contents[sid] = types
        return 201, {
            "sid": sid,
            "account_sid": TWILIO_ACCOUNT_SID,
            "friendly_name": request.params["friendly_name"],
            "language": request.params.get("language", "en"),
            "variables": json.loads(request.params.get("variables") or "{}"),
            "types": types,
            "url": f"https://content.twilio.com/v1/Content/{sid}",
        }

    def render(self, params: dict[str, str]) -> str:
        """What the person reads: the text, or the content's body with its variables filled in."""
        if params.get("Body"):
            return params["Body"]
        with self._lock:
            types = self.contents.get(params.get("ContentSid", ""), {})
        body = next(iter(types.values()), {}).get("body", "")
        values = json.loads(params.get("ContentVariables") or "{}")
        return re.sub(r"\{\{(\w+)\}\}", lambda m: values.get(m.group(1), m.group(0)), body)

    def status_callback(
        self, message_sid: str, status: str, error_code: str | None = None
    ) -> tuple[str, dict[str, str], str]:
        """The callback Twilio posts when message `message_sid` reaches `status`: the address it goes
        to (the message's StatusCallback), the form and its X-Twilio-Signature."""
        with self._lock:
            params = self.messages[message_sid]
        url = params["StatusCallback"]
        fields = {
            "MessageSid": message_sid,
            "SmsSid": message_sid,
            "MessageStatus": status,
            "SmsStatus": status,
            "AccountSid": TWILIO_ACCOUNT_SID,
            "From": params["From"],
            "To": params["To"],
            "ApiVersion": "2010-04-01",
            "ChannelPrefix": "whatsapp",
            **({"ErrorCode": error_code} if error_code else {}),
        }
        return url, fields, RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(url, fields)

    def calls(self, path: str) -> list[Recorded]:
        return [r for r in self.recorded() if r.path == path]

    def attempts(self, to: str) -> list[Recorded]:
        return [r for r in self.recorded() if r.params.get("To") == to]

    def accepted(self, to: str) -> list[Recorded]:
        return [r for r in self.attempts(to) if r.status == 201]

    def bodies(self, to: str) -> list[str]:
        """The messages Twilio accepted for `to`, in the order they were sent, as the person reads them."""
        return [self.render(r.params) for r in self.accepted(to)]


def content_types_problem(types: Any, list_descriptions_required: bool = False) -> str | None:
    """Why the Content API would refuse these types, for the two our channel creates (limits as
    Twilio's Content API documents them, and its OpenAPI models: a quick reply's type is required)."""
    if not isinstance(types, dict) or len(types) != 1:
        return "types must hold one content type"
    ((kind, data),) = types.items()
    if kind == "twilio/quick-reply":
        actions = data.get("actions") or []
        if not data.get("body") or not 1 <= len(actions) <= 3:
            return "quick-reply needs a body and 1 to 3 actions"
        if any(not 1 <= len(a.get("title", "")) <= 20 or not a.get("id") for a in actions):
            return "quick-reply titles are 1 to 20 characters, each with an id"
        if any(a.get("type") != "QUICK_REPLY" for a in actions):
            return "quick-reply actions need type QUICK_REPLY"
        return None
    if kind == "twilio/list-picker":
        items = data.get("items") or []
        if not data.get("body") or not 1 <= len(data.get("button", "")) <= 20 or not 1 <= len(items) <= 10:
            return "list-picker needs a body, a button of up to 20 characters and 1 to 10 items"
        if any(not 1 <= len(i.get("item", "")) <= 24 or not 1 <= len(i.get("id", "")) <= 200 for i in items):
            return "list-picker items are 1 to 24 characters, ids up to 200"
        if any(len(i.get("description", "")) > 72 for i in items):
            return "list-picker descriptions are up to 72 characters"
        if list_descriptions_required and not all(i.get("description") for i in items):
            return "list-picker items need a description"
        return None
    return f"unsupported content type {kind}"


TOO_MANY_REQUESTS_TWILIO = {"code": 20429, "message": "Too Many Requests", "status": 429}
TOO_MANY_REQUESTS_TELEGRAM = {
    "ok": False,
    "error_code": 429,
    "description": "Too Many Requests: retry after 1",
    "parameters": {"retry_after": 1},
}
_TELEGRAM_TAG = re.compile(r"<(/?)([a-z-]+)[^>]*>|&(?:lt|gt|amp|quot|#\d+);|[<>&]")


def telegram_html_problem(text: str) -> str | None:
    """Why Telegram would refuse `text` with parse_mode HTML, or None (the checks it makes)."""
    open_tags: list[str] = []
    for token in _TELEGRAM_TAG.finditer(text):
        if token.group(0) in "<>&":
            return f"unescaped {token.group(0)!r} at {token.start()}"
        if token.group(2) is None:
            continue
        closing, tag = token.group(1), token.group(2)
        if tag not in ("b", "strong", "i", "em", "u", "s", "code", "pre", "a", "tg-spoiler", "blockquote"):
            return f"unsupported tag <{tag}>"
        if not closing:
            open_tags.append(tag)
        elif not open_tags or open_tags.pop() != tag:
            return f"unexpected end tag </{tag}>"
    return f"unclosed <{open_tags[-1]}>" if open_tags else None


class TelegramStandIn(StandIn):
    """/bot<token>/<method> for the methods we call, answering as the Bot API does."""

    CHAT_ACTIONS = ("typing", "upload_photo", "record_voice", "upload_document", "find_location")

    def __init__(self) -> None:
        super().__init__()
        self._message_ids = itertools.count(1000)
        self._updates: list[dict] = []
        self._accepted: list[tuple[float, int, str]] = []  # (time.monotonic(), chat id, text) of each message taken

    def env(self) -> dict[str, str]:
        return {
            "TELEGRAM_BOT_TOKEN": TELEGRAM_BOT_TOKEN,
            "TELEGRAM_WEBHOOK_SECRET": TELEGRAM_WEBHOOK_SECRET,
            "TELEGRAM_API_BASE_URL": self.url,
        }

    def queue_update(self, update: dict) -> None:
        """An update for getUpdates to hand out (polling mode)."""
        with self._lock:
            self._updates.append(update)

    def respond(self, request: Recorded) -> tuple[int, dict]:
        prefix = f"/bot{TELEGRAM_BOT_TOKEN}/"
        if not request.path.startswith(prefix):
            return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
        method, params = request.path[len(prefix) :].lower(), request.params
        if method == "getme":
            return _ok({"id": TELEGRAM_BOT_ID, "is_bot": True, "first_name": "SOM", "username": TELEGRAM_BOT_USERNAME})
        if method == "sendmessage":
            text = params.get("text", "")
            problem = telegram_html_problem(text) if params.get("parse_mode") == "HTML" else None
            if problem or not text or len(html.unescape(re.sub(r"<[^>]+>", "", text))) > 4096:
                return 400, {"ok": False, "error_code": 400, "description": f"Bad Request: {problem or 'bad text'}"}
            chat = {"id": int(params["chat_id"]), "type": "private"}
            with self._lock:
                self._accepted.append((time.monotonic(), chat["id"], text))
            return _ok({"message_id": next(self._message_ids), "date": int(time.time()), "chat": chat, "text": text})
        if method == "getupdates":
            return _ok(self._take_updates(int(params.get("offset") or 0), float(params.get("timeout") or 0)))
        if method == "sendchataction":
            if not params.get("chat_id") or params.get("action") not in self.CHAT_ACTIONS:
                return 400, {"ok": False, "error_code": 400, "description": "Bad Request: wrong parameter action"}
            return _ok(True)
        if method == "editmessagereplymarkup":
            if not params.get("chat_id") or not params.get("message_id"):
                return 400, {"ok": False, "error_code": 400, "description": "Bad Request: message to edit not found"}
            return _ok(True)  # Telegram answers with the edited message; True is what it says for inline ones
        if method in ("answercallbackquery", "setwebhook", "deletewebhook"):
            return _ok(True)
        return 404, {"ok": False, "error_code": 404, "description": "Not Found"}

    def _take_updates(self, offset: int, timeout: float) -> list[dict]:
        deadline = time.monotonic() + min(timeout, 1.0)
        while True:
            with self._lock:
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
                if self._updates or time.monotonic() > deadline:
                    return list(self._updates)
            time.sleep(0.05)

    def calls(self, method: str) -> list[Recorded]:
        return [r for r in self.recorded() if r.path.lower().endswith("/" + method.lower())]

    def attempts(self, chat_id: int) -> list[Recorded]:
        return [r for r in self.calls("sendMessage") if r.params.get("chat_id") == str(chat_id)]

    def sent(self, chat_id: int) -> list[Recorded]:
        """sendMessage requests Telegram accepted for `chat_id`, in order."""
        return [r for r in self.attempts(chat_id) if r.status == 200]

    def texts(self, chat_id: int) -> list[str]:
        return [r.params["text"] for r in self.sent(chat_id)]

    def accepted_at(self, chat_id: int) -> list[tuple[float, str]]:
        """When (`time.monotonic()`) each message to `chat_id` was taken, and its text, in order."""
        with self._lock:
            return [(at, text) for at, chat, text in self._accepted if chat == chat_id]

    def chat_actions(self, chat_id: int) -> list[Recorded]:
        return [r for r in self.calls("sendChatAction") if r.params.get("chat_id") == str(chat_id)]

    def keyboards_removed(self, chat_id: int) -> list[Recorded]:
        """editMessageReplyMarkup requests for `chat_id` that left no keyboard."""
        return [
            r
            for r in self.calls("editMessageReplyMarkup")
            if r.params.get("chat_id") == str(chat_id) and not json.loads(r.params.get("reply_markup") or "{}")
        ]


def _ok(result: Any) -> tuple[int, dict]:
    return 200, {"ok": True, "result": result}


class WhatsAppPerson:
    """Someone writing to the SOM's WhatsApp number, as Twilio would post it to our webhook."""

    def __init__(self, server_url: str, twilio: TwilioStandIn) -> None:
        self.webhook = server_url + WHATSAPP_WEBHOOK_PATH
        self.twilio = twilio
        self.address = f"whatsapp:+519{random.randrange(10**8):08d}"

    def fields(self, body: str = "", **extra: str) -> dict[str, str]:
        """Twilio's form for one incoming message; empty fields included, as Twilio signs them."""
        return {
            "MessageSid": f"SM{uuid.uuid4().hex}",
            "AccountSid": TWILIO_ACCOUNT_SID,
            "From": self.address,
            "To": TWILIO_WHATSAPP_FROM,
            "Body": body,
            "NumMedia": "0",
            "ProfileName": "Ana",
            **extra,
        }

    def post(self, fields: dict[str, str], signature: str | None = "valid") -> tuple[int, str]:
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if signature == "valid":
            signature = RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(WHATSAPP_SIGNED_URL, fields)
        if signature is not None:
            headers["X-Twilio-Signature"] = signature
        request = urllib.request.Request(self.webhook, urllib.parse.urlencode(fields).encode(), headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def send(self, body: str = "", **extra: str) -> None:
        status, _ = self.post(self.fields(body, **extra))
        assert status == 200

    def replies(self) -> list[str]:
        return self.twilio.bodies(self.address)

    def wait_reply(self, containing: str, count: int = 1) -> list[str]:
        """All replies so far, once `count` of them contain `containing`."""
        return wait_for(
            lambda: sum(containing in r for r in self.replies()) >= count and self.replies(),
            what=f"{count} WhatsApp repl(y/ies) containing {containing!r}",
        )


class Advisor:
    """An SOM advisor using the advisor API: takes a person's hand-off and writes to them."""

    def __init__(self, assistant_url: str) -> None:
        self.api = f"{assistant_url}/advisor/api"
        self.token: str | None = None

    def log_in(self, username: str, password: str) -> Advisor:
        self.token = self._call("POST", "/login", {"username": username, "password": password})["token"]
        return self

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body or {}).encode() if method == "POST" else None
        request = urllib.request.Request(self.api + path, data, headers, method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    def take(self, conversation_id: str) -> int:
        """Claim the waiting hand-off of `conversation_id`; its id."""

        def waiting() -> dict | None:
            handoffs = self._call("GET", "/handoffs?status=waiting")["handoffs"]
            return next((h for h in handoffs if h["conversation_id"] == conversation_id), None)

        handoff = wait_for(waiting, what=f"the hand-off of {conversation_id}")
        self._call("POST", f"/handoffs/{handoff['id']}/claim")
        return handoff["id"]

    def write(self, handoff_id: int, text: str) -> None:
        self._call("POST", f"/handoffs/{handoff_id}/messages", {"text": text})

    def close(self, handoff_id: int) -> None:
        self._call("POST", f"/handoffs/{handoff_id}/close")
