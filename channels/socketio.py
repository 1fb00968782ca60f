"""The web chat's channel: Rasa's socket.io channel, made fit for a widget any page can embed.

What changes from `rasa.core.channels.socketio.SocketIOInput`, and why:
- the conversation id is an unguessable UUIDv4 (the server makes one unless the widget presents
  one it was given before): whoever knows it can read the conversation, so it must not be guessable;
- every message goes through `channels.delivery.deliver` (hand-off) stamped with its arrival
  time, and answers are not split on blank lines (one knowledge-base message, one bubble);
- advisor replies reach the widget: an outbound sender emits to the conversation's room, and
  with REDIS_URL emits travel through Redis to widgets connected to other Rasa processes;
- only the server's own origin and WEBCHAT_ALLOWED_ORIGINS may connect;
- with JWT on, a token with a subject (`sub`) opens that subject's conversation only, and the
  history of no other: the session id alone is then no longer the credential;
- `GET /webhooks/socketio/history/<conversation id>` gives a reloaded widget its conversation.

The client's `metadata` is ignored: the tracker is shared with advisors, so what the widget can
put there is limited to the title of the button it pressed.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import socketio
from rasa.core.channels.channel import UserMessage, decode_bearer_token
from rasa.core.channels.socketio import SocketBlueprint, SocketIOInput, SocketIOOutput
from rasa.shared.core.events import BotUttered, UserUttered
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.messaging import ExpiringMap, Flood, WebFloodLimiter, as_free_text, cut_input
from bot.privacy import hash_id
from bot.services import handoff_desk, settings
from channels import outbound
from channels._common import channel_text, was_offered
from channels.delivery import deliver
from channels.outbound import Buttons, OutboundSender
from channels.requests import bearer_token, request_client
from integrations.redis_keys import shared_keys

SESSION_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
SHOWN_TEXT = "shown_text"  # user-message metadata: what the person saw as their own message
MAX_TITLE_CHARS = 200
MAX_CLIENT_ID_CHARS = 64
MAX_HISTORY = 300  # messages a reloaded widget shows
ADVISOR_TYPING_EVENT = "advisor_typing"  # the widget shows "writing…" until the next message, 25 s at most


def is_session_id(value: Any) -> bool:
    """A UUIDv4 in canonical lower-case form, as `crypto.randomUUID()` and `uuid.uuid4()` write it."""
    return isinstance(value, str) and SESSION_ID.fullmatch(value) is not None


def bound_session(subject: str) -> str:
    """The conversation of a token's subject (`sub`): a token opens that conversation and no other."""
    digest = hashlib.sha256(f"som-webchat:{subject}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


class Origins:
    """Which web pages may talk to the channel: the server's own origin, plus the configured ones."""

    def __init__(self, configured: Iterable[str]) -> None:
        configured = [origin.rstrip("/") for origin in configured]
        self.any = "*" in configured
        self.listed = frozenset(configured)

    def allows(self, origin: str | None, own_host: str | None, own_scheme: str) -> bool:
        """No Origin header means no browser page is involved (curl, a server): nothing to refuse."""
        if not origin:
            return True
        return self.any or origin in self.listed or origin == f"{own_scheme}://{own_host}"

    def allows_socket(self, origin: str | None, environ: dict[str, Any]) -> bool:
        """python-engineio's origin check (its sanic driver already reads X-Forwarded-Proto)."""
        host = environ.get("HTTP_X_FORWARDED_HOST") or environ.get("HTTP_HOST") or ""
        return self.allows(origin, host.split(",")[0].strip(), environ.get("wsgi.url_scheme", "http"))

    def allows_request(self, request: Request) -> bool:
        host = request.headers.get("x-forwarded-host") or request.host
        scheme = request.headers.get("x-forwarded-proto") or request.scheme
        return self.allows(request.headers.get("origin"), host.split(",")[0].strip(), scheme.split(",")[0].strip())


class WebChatOutput(SocketIOOutput):
    """Emits to the conversation's room (every tab showing it), one bubble per message.

    Each message carries what the widget needs to rebuild the conversation after a reload: when
    it was said (`ts`, the tracker's timestamp when Rasa gives it), whether the tracker keeps it
    (`kept`: hand-off notices are not kept, so the widget stores those itself) and, for an
    advisor's message, the advisor's name.
    """

    def __init__(self, sio: socketio.AsyncServer, bot_message_evt: str, kept: bool = True) -> None:
        super().__init__(sio, bot_message_evt)
        self.kept = kept

    async def send_text_message(self, recipient_id: str, text: str, **kwargs: Any) -> None:
        await self.emit(recipient_id, text, (), timestamp=kwargs.get("timestamp"))

    async def send_text_with_buttons(
        self, recipient_id: str, text: str, buttons: list[dict[str, Any]], **kwargs: Any
    ) -> None:
        await self.emit(recipient_id, text, buttons, timestamp=kwargs.get("timestamp"))

    async def emit(
        self,
        recipient_id: str,
        text: str,
        buttons: Iterable[dict[str, Any]],
        timestamp: float | None = None,
        advisor: str | None = None,
    ) -> None:
        message: dict[str, Any] = {
            "text": text.strip(),
            "metadata": {"ts": timestamp or time.time(), "kept": self.kept, "advisor": advisor},
        }
        quick_replies = [
            {"content_type": "text", "title": str(b["title"]), "payload": str(b["payload"])} for b in buttons
        ]
        if quick_replies:
            message["quick_replies"] = quick_replies
        await self._send_message(recipient_id, message)


class WebChatSender(OutboundSender):
    """Outbound messages (advisor replies, hand-off notices) for the widgets of a conversation.

    The advisor console does not say who wrote a message, but during an active hand-off the only
    messages sent this way are the advisor's (the greeting when claiming, then the replies), so
    the state of the hand-off names the author.
    """

    def __init__(self, output: WebChatOutput) -> None:
        self.output = output

    async def send(self, recipient_id: str, text: str, buttons: Buttons = ()) -> tuple[str, ...]:
        view = await asyncio.to_thread(handoff_desk().store.open_for, recipient_id)
        advisor = view.advisor if view is not None and view.state == "active" else None
        await self.output.emit(recipient_id, text, [{"title": t, "payload": p} for t, p in buttons], advisor=advisor)
        return ()  # a widget that is closed gets the message from the history when it opens

    async def typing_to(self, recipient_id: str) -> bool:
        """Every open widget of the conversation shows that the advisor is writing."""
        await self.output.sio.emit(ADVISOR_TYPING_EVENT, {}, room=recipient_id)
        return True


def transcript(events: Iterable[Any]) -> list[dict[str, Any]]:
    """The messages a person saw, from tracker events: payloads without a title (the greeting
    the widget sends on opening) are hidden, a pressed button shows its title."""
    lines: list[dict[str, Any]] = []
    for event in events:
        if isinstance(event, UserUttered):
            metadata = event.metadata or {}
            shown = metadata.get(SHOWN_TEXT) or event.text or ""
            if shown and not shown.startswith("/"):
                # Arrival time, not the event's: hand-off notices answering it came before the event.
                lines.append({"role": "user", "text": shown, "ts": metadata.get("received_at", event.timestamp)})
        elif isinstance(event, BotUttered) and event.text:
            author = str((event.metadata or {}).get("author", ""))
            lines.append(
                {
                    "role": "bot",
                    "text": event.text,
                    "buttons": [
                        {"title": str(b.get("title", "")), "payload": str(b.get("payload", ""))}
                        for b in (event.data or {}).get("buttons") or []
                    ],
                    "advisor": author.removeprefix("advisor:") if author.startswith("advisor:") else None,
                    "ts": event.timestamp,
                }
            )
    return lines[-MAX_HISTORY:]


def client_manager(redis_url: str, key_prefix: str) -> socketio.AsyncManager | None:
    """With Redis, emits are published there so every Rasa process delivers them to its sockets."""
    if not redis_url:
        return None
    return socketio.AsyncRedisManager(redis_url, channel=f"{key_prefix}:socketio")


class WebChatSocketIO(SocketIOInput):
    """Rasa's socket.io channel with UUIDv4 sessions, hand-off, origins, Redis and history."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.session_persistence = True  # the room named after the session is how messages reach it
        current = settings()
        self.jwt_key = self.jwt_key or current.webchat_jwt_key or None
        self.origins = Origins(current.webchat_allowed_origins)
        self.manager = client_manager(current.redis_url, current.redis_key_prefix)
        self.answered: ExpiringMap[str, dict[str, Any]] = ExpiringMap(ttl=3600.0)
        self.trusted_proxies = current.trusted_proxies
        self.flood = WebFloodLimiter(
            current.web_conversation_rate, current.web_client_rate, shared=shared_keys(current, self.name())
        )

    def get_output_channel(self) -> WebChatOutput | None:
        """For Rasa's external events (`/conversations/<id>/trigger_intent?output_channel=socketio`)."""
        return WebChatOutput(self.sio, self.bot_message_evt) if self.sio is not None else None

    def authorised(self, token: Any) -> bool:
        return self.claims(token) is not None

    def claims(self, token: Any) -> dict[str, Any] | None:
        """The token's claims when JWT is on ({} when it is off); None for a missing or invalid token."""
        if not self.jwt_key:
            return {}
        if not isinstance(token, str):
            return None
        return decode_bearer_token(token, self.jwt_key, self.jwt_algorithm)

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        sio = socketio.AsyncServer(
            async_mode="sanic", cors_allowed_origins=self.origins.allows_socket, client_manager=self.manager
        )
        self.sio = sio
        namespace = self.namespace
        outbound.register(self.name(), WebChatSender(WebChatOutput(sio, self.bot_message_evt)))
        webhook = SocketBlueprint(sio, self.socketio_path, "socketio_webhook", __name__)

        @webhook.route("/", methods=["GET"])
        async def health(request: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @webhook.route("/history/<session_id:str>", methods=["GET", "OPTIONS"])
        async def history(request: Request, session_id: str) -> HTTPResponse:
            if not self.origins.allows_request(request):
                return response.json({"error": "origin not allowed"}, status=403)
            headers = self._cors_headers(request)
            if request.method == "OPTIONS":
                return response.empty(headers=headers)
            claims = self.claims(bearer_token(request))
            if claims is None:
                return response.json({"error": "a valid token is required"}, status=401, headers=headers)
            if claims.get("sub") and session_id != bound_session(str(claims["sub"])):
                return response.json({"error": "this token is for another conversation"}, status=403, headers=headers)
            messages: list[dict[str, Any]] = []
            if is_session_id(session_id):
                tracker = await request.app.ctx.agent.tracker_store.retrieve_full_tracker(session_id)
                if tracker is not None and tracker.get_latest_input_channel() == self.name():
                    messages = transcript(tracker.events)
            return response.json({"messages": messages}, headers=headers)

        @sio.on("connect", namespace=namespace)
        async def connect(sid: str, environ: dict, auth: dict | None) -> bool:
            claims = self.claims((auth or {}).get("token"))
            if claims is None:
                return False
            request = environ.get("sanic.request")
            client = request_client(request, self.trusted_proxies) if request is not None else sid
            subject = str(claims["sub"]) if claims.get("sub") else None
            await sio.save_session(sid, {"client": client, "subject": subject}, namespace=namespace)
            return True

        @sio.on("session_request", namespace=namespace)
        async def session_request(sid: str, data: Any) -> None:
            requested = data.get("session_id") if isinstance(data, dict) else None
            session = await sio.get_session(sid, namespace=namespace)
            if session.get("subject"):  # a token for one person: their conversation, whatever was asked
                session_id = bound_session(session["subject"])
            else:
                session_id = requested if is_session_id(requested) else str(uuid.uuid4())
            previous = session.get("session_id")
            if previous and previous != session_id:
                await sio.leave_room(sid, previous, namespace=namespace)
            await sio.save_session(sid, {**session, "session_id": session_id}, namespace=namespace)
            await sio.enter_room(sid, session_id, namespace=namespace)
            await sio.emit("session_confirm", session_id, room=sid, namespace=namespace)

        @sio.on(self.user_message_evt, namespace=namespace)
        async def handle_message(sid: str, data: Any) -> dict[str, Any]:
            """Returns the acknowledgement: when the message arrived and whether the tracker keeps it."""
            received_at = time.time()
            session = await sio.get_session(sid, namespace=namespace)
            session_id = session.get("session_id")
            if session_id is None:
                return {"error": "send session_request first"}
            if not isinstance(data, dict) or not isinstance(data.get("message"), str) or not data["message"].strip():
                return {"error": "'message' must be a non-empty string"}
            client_id = str(data.get("id") or "")[:MAX_CLIENT_ID_CHARS]
            key = f"{session_id}:{client_id}"
            if client_id:
                if (ack := self.answered.get(key)) is not None:
                    return ack  # sent again after a reconnection: handled (or being handled) already
                self.answered.set(key, {"ts": received_at, "kept": True})
            verdict = self.flood.check(session.get("client", sid), session_id)
            if verdict is not Flood.ALLOW:
                if verdict is Flood.WARN:
                    notice = WebChatOutput(sio, self.bot_message_evt, kept=False)
                    await notice.send_text_message(session_id, channel_text("channels.flood"))
                return {"error": "too many messages", "ts": received_at, "kept": False}
            agent = sio.get_environ(sid, namespace=namespace)["sanic.request"].app.ctx.agent
            ack = await self._deliver(
                on_new_message, agent, session_id, data, received_at, client=hash_id(session.get("client", sid))
            )
            if client_id:
                self.answered.set(key, ack)
            return ack

        return webhook

    async def _deliver(
        self,
        on_new_message: Callable[[UserMessage], Awaitable[Any]],
        agent: Any,
        session_id: str,
        data: dict,
        received_at: float,
        client: str,
    ) -> dict[str, Any]:
        text, was_cut = cut_input(data["message"].strip())
        if text.startswith("/") and not await was_offered(agent, session_id, text):
            text = as_free_text(text)  # a payload the assistant never offered is read as words
        title = data.get("title")
        metadata: dict[str, Any] = {"received_at": received_at, "client": client}
        if isinstance(title, str) and title.strip():
            metadata[SHOWN_TEXT] = title.strip()[:MAX_TITLE_CHARS]
        # Hand-off notices sent before Rasa gets the message are not in the tracker: say so.
        output = WebChatOutput(self.sio, self.bot_message_evt, kept=False)
        if was_cut:
            await output.send_text_message(session_id, channel_text("channels.too_long"))

        async def to_rasa(message: UserMessage) -> None:
            output.kept = True
            if message.text != text:  # the hand-off desk answered for the person ("cancelar" → menu)
                message = UserMessage(
                    message.text,
                    message.output_channel,
                    message.sender_id,
                    input_channel=message.input_channel,
                    metadata={**(message.metadata or {}), SHOWN_TEXT: metadata.get(SHOWN_TEXT, text)},
                    message_id=message.message_id,
                )
            await on_new_message(message)

        await deliver(to_rasa, UserMessage(text, output, session_id, input_channel=self.name(), metadata=metadata))
        return {"ts": received_at, "kept": output.kept}

    def _cors_headers(self, request: Request) -> dict[str, str]:
        origin = request.headers.get("origin")
        if not origin:
            return {}
        return {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": "GET, OPTIONS",
            "Access-Control-Allow-Headers": "Authorization",
            "Access-Control-Max-Age": "600",
            "Vary": "Origin",
        }
