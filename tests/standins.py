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

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        split = urlsplit(handler.path)
        raw = handler.rfile.read(int(handler.headers.get("Content-Length") or 0)).decode("utf-8")
        if "json" in (handler.headers.get("Content-Type") or ""):
            params = {k: v if isinstance(v, str) else json.dumps(v) for k, v in json.loads(raw or "{}").items()}
        else:
            params = dict(parse_qsl(raw, keep_blank_values=True))
        params.update(parse_qsl(split.query, keep_blank_values=True))
        request = Recorded(handler.command, split.path, params, dict(handler.headers), 0)
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
    """POST /2010-04-01/Accounts/{sid}/Messages.json, with Basic auth, as Twilio answers it."""

    MESSAGES = re.compile(r"^/2010-04-01/Accounts/(?P<sid>[^/]+)/Messages\.json$")

    def env(self) -> dict[str, str]:
        return {
            "TWILIO_ACCOUNT_SID": TWILIO_ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": TWILIO_AUTH_TOKEN,
            "TWILIO_WHATSAPP_FROM": TWILIO_WHATSAPP_FROM,
            "TWILIO_API_BASE_URL": self.url,
        }

    def respond(self, request: Recorded) -> tuple[int, dict]:
        match = self.MESSAGES.match(request.path)
        if request.method != "POST" or not match:
            return 404, {"code": 20404, "message": "The requested resource was not found", "status": 404}
        credentials = base64.b64encode(f"{TWILIO_ACCOUNT_SID}:{TWILIO_AUTH_TOKEN}".encode()).decode()
        if match["sid"] != TWILIO_ACCOUNT_SID or request.headers.get("Authorization") != f"Basic {credentials}":
            return 401, {"code": 20003, "message": "Authenticate", "status": 401}
        body, to, sender = request.params.get("Body", ""), request.params.get("To", ""), request.params.get("From", "")
        if not body or not to.startswith("whatsapp:") or sender != TWILIO_WHATSAPP_FROM:
            return 400, {"code": 21602, "message": "Message body, To and From are required", "status": 400}
        if len(body) > 1600:
            return 400, {"code": 21617, "message": "The message body exceeds the 1600 character limit", "status": 400}
        return 201, {
            "sid": "SM" + uuid.uuid4().hex,
            "account_sid": TWILIO_ACCOUNT_SID,
            "to": to,
            "from": sender,
            "body": body,
            "status": "queued",
            "num_segments": "1",
            "direction": "outbound-api",
            "date_created": formatdate(usegmt=True),
            "uri": f"/2010-04-01/Accounts/{TWILIO_ACCOUNT_SID}/Messages.json",
        }

    def attempts(self, to: str) -> list[Recorded]:
        return [r for r in self.recorded() if r.params.get("To") == to]

    def bodies(self, to: str) -> list[str]:
        """The messages Twilio accepted for `to`, in the order they were sent."""
        return [r.params["Body"] for r in self.attempts(to) if r.status == 201]


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

    def __init__(self) -> None:
        super().__init__()
        self._message_ids = itertools.count(1000)
        self._updates: list[dict] = []

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
            return _ok({"message_id": next(self._message_ids), "date": int(time.time()), "chat": chat, "text": text})
        if method == "getupdates":
            return _ok(self._take_updates(int(params.get("offset") or 0), float(params.get("timeout") or 0)))
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
