"""The advisor console at /advisor/: a static page and the JSON API it (and other tools) use.

The use cases live in `bot.handoff_desk`; this module only translates HTTP to them and back, and
gives the desk its `Outbox`: the conversation's channel sender and its Rasa tracker. It also runs the
sweep that tells people when nobody claimed their hand-off in time, and passes on a person's files
(WhatsApp media) from Twilio when an advisor opens one: fetched then, streamed, never kept.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rasa.core.channels.channel import InputChannel, UserMessage
from rasa.shared.core.events import BotUttered, SessionStarted, UserUttered
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.handoff import (
    Advisor,
    Conflict,
    HandoffError,
    HandoffView,
    InvalidRequest,
    NotFound,
    NotYours,
    TranscriptLine,
    missing_history,
)
from bot.handoff_desk import ADVISOR_REPLY_TEMPLATE, Delivery, Message
from bot.ratelimit import RateLimiter
from bot.services import handoff_desk, settings
from channels import outbound
from channels.requests import bearer_token, json_object, request_client
from integrations.redis_keys import shared_keys
from integrations.twilio import MediaError, MediaTooLarge, is_our_media_url, open_media

logger = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).parent / "static" / "advisor"
STATES = ("waiting", "active", "closed")
MAX_TEXT = 4000
SWEEP_SECONDS = 15.0
LOGIN_ATTEMPTS, LOGIN_WINDOW_SECONDS = 5, 300.0  # per client address and username
password_checks = ThreadPoolExecutor(max_workers=2, thread_name_prefix="password-check")
MAX_USERNAME, MAX_PASSWORD = 64, 256
STATUS_OF = {InvalidRequest: 400, NotYours: 403, NotFound: 404, Conflict: 409}


def _error(status: int, message: str) -> HTTPResponse:
    return response.json({"error": message}, status=status)


def _body_text(request: Request) -> str | HTTPResponse:
    body = json_object(request)
    if body is None:
        return _error(400, "el cuerpo debe ser un objeto JSON")
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        return _error(400, "'text' debe ser un texto no vacío")
    if len(text) > MAX_TEXT:
        return _error(413, f"'text' supera los {MAX_TEXT} caracteres")
    return text.strip()


class ChannelOutbox:
    """The desk's way to a person: the channel's registered sender, and the conversation's tracker."""

    def __init__(self, agent: Any) -> None:
        self.agent = agent

    def reply_window(self, channel: str) -> dt.timedelta | None:
        sender = outbound.sender_for(channel)
        return sender.reply_window if sender is not None else None

    def has_template(self, channel: str, purpose: str) -> bool:
        sender = outbound.sender_for(channel)
        return sender is not None and sender.has_template(purpose)

    async def send(self, view: HandoffView, messages: tuple[Message, ...], template: str | None = None) -> Delivery:
        sender = outbound.sender_for(view.channel)
        if sender is None:
            return Delivery(sent=0, total=len(messages), reachable=False)
        receipts: list[tuple[str, ...]] = []
        for text, buttons in messages:
            try:
                if template:  # an advisor's words go in the reply template; other templates are fixed text
                    variables = {"1": text} if template == ADVISOR_REPLY_TEMPLATE else {}
                    sids = await sender.send_template(view.conversation_id, template, variables)
                else:
                    sids = await sender.send(view.conversation_id, text, buttons)
            except Exception:
                logger.exception("could not deliver a hand-off message on channel %s", view.channel)
                break
            receipts.append(sids)
        return Delivery(
            sent=len(receipts), total=len(messages), receipts=tuple(receipts), template=template is not None
        )

    async def typing(self, view: HandoffView) -> bool:
        """Show the person that an advisor is writing, where the channel can; best effort."""
        sender = outbound.sender_for(view.channel)
        if sender is None:
            return False
        try:
            return await sender.typing_to(view.conversation_id)
        except Exception as error:
            logger.info("typing indicator not shown on channel %s: %s", view.channel, error)
            return False

    async def record(self, view: HandoffView, messages: tuple[Message, ...], author: str) -> None:
        async with self.agent.lock_store.lock(view.conversation_id):
            tracker = await self.agent.tracker_store.get_or_create_tracker(view.conversation_id)
            for text, buttons in messages:
                data = {"buttons": [{"title": t, "payload": p} for t, p in buttons]} if buttons else {}
                tracker.update(BotUttered(text, data, metadata={"author": author}))
            await self.agent.tracker_store.save(tracker)


@dataclass(frozen=True)
class MediaRef:
    """A file the person sent, as the console lists it: `n` is its number in the hand-off (the
    files of the session before it first, then those sent during it, in order); `line` the
    index of the line carrying it in `part` ("earlier" or "transcript"), if shown."""

    n: int
    content_type: str
    url: str
    part: str
    line: int | None

    def as_json(self) -> dict[str, Any]:
        return {"n": self.n, "type": self.content_type}


async def _session_before(request_app: Any, view: HandoffView) -> list[tuple[TranscriptLine, list[dict[str, Any]]]]:
    """The messages of the session the hand-off was opened in, up to its opening, each with the
    files the person sent with it (kept in the message's metadata by Rasa's tracker)."""
    tracker = await request_app.ctx.agent.tracker_store.retrieve_full_tracker(view.conversation_id)
    if tracker is None:
        return []
    opened = view.created_at.replace(tzinfo=dt.timezone.utc).timestamp()
    session: list[tuple[TranscriptLine, list[dict[str, Any]]]] = []
    for event in tracker.events:
        if event.timestamp > opened:
            break
        if isinstance(event, SessionStarted):
            session = []
        elif isinstance(event, UserUttered | BotUttered) and event.text:
            author = "person" if isinstance(event, UserUttered) else "assistant"
            at = dt.datetime.fromtimestamp(event.timestamp, dt.timezone.utc).replace(tzinfo=None)
            media = (event.metadata or {}).get("media") if isinstance(event, UserUttered) else None
            files = [m for m in media or () if isinstance(m, dict) and isinstance(m.get("url"), str) and m["url"]]
            session.append((TranscriptLine(author, event.text, at), files))
    return session


async def earlier_history(
    request_app: Any, view: HandoffView, record: list[TranscriptLine], media: list[MediaRef] | None = None
) -> list[TranscriptLine]:
    """What the person and the assistant said in the session before the hand-off, as far as its
    record lacks it: the record keeps only the recent turns the assistant saw. With `media`, the
    files of that session are added to it (see `MediaRef`)."""
    session = await _session_before(request_app, view)
    earlier = missing_history([line for line, _ in session], record)
    if media is not None:
        media.extend(_numbered(session, len(earlier)))
    return earlier


def _numbered(session: list[tuple[TranscriptLine, list[dict[str, Any]]]], shown: int) -> list[MediaRef]:
    refs: list[MediaRef] = []
    for index, (_, files) in enumerate(session):
        for item in files:
            line = index if index < shown else None
            refs.append(MediaRef(len(refs), str(item.get("type") or ""), item["url"], "earlier", line))
    return refs


async def handoff_media(request_app: Any, view: HandoffView, store: Any) -> list[MediaRef]:
    """Every file of the hand-off's conversation, numbered as the console shows them."""
    refs = _numbered(await _session_before(request_app, view), 0)
    return await _with_record_files(refs, store, view.id)


async def _with_record_files(refs: list[MediaRef], store: Any, handoff_id: int) -> list[MediaRef]:
    """`refs` (the session's files) followed by the files sent during the hand-off, numbered on."""
    for line, content_type, url in await asyncio.to_thread(store.media, handoff_id):
        refs.append(MediaRef(len(refs), content_type, url, "transcript", line))
    return refs


def _media_headers(content_type: str, n: int) -> dict[str, str]:
    """Shown in the console (images, audio) or saved (anything else); never cached, never run."""
    shown = content_type.startswith(("image/", "audio/")) and content_type != "image/svg+xml"
    return {
        "Content-Disposition": f'{"inline" if shown else "attachment"}; filename="archivo-{n}"',
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
    }


class AdvisorConsole(InputChannel):
    """Not a chat channel: Rasa mounts it so the console runs inside the Rasa server."""

    @classmethod
    def name(cls) -> str:
        return "advisor"

    def url_prefix(self) -> str:
        return "/advisor"

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        console = Blueprint("advisor_console", __name__)
        desk = handoff_desk()
        # Counted by every replica alike (Redis) in the production profile.
        login_attempts = RateLimiter(
            LOGIN_ATTEMPTS, LOGIN_WINDOW_SECONDS, shared_keys(settings(), self.name()), name="login"
        )

        async def run(function, *args):
            """The store is synchronous SQL: keep it off the event loop."""
            return await asyncio.to_thread(function, *args)

        def authenticated(handler):
            async def wrapper(request: Request, *args, **kwargs) -> HTTPResponse:
                advisor = await advisor_of(request)
                if advisor is None:
                    return _error(401, "inicie sesión (token ausente, inválido o vencido)")
                try:
                    return await handler(request, advisor, *args, **kwargs)
                except HandoffError as error:
                    status = next(code for kind, code in STATUS_OF.items() if isinstance(error, kind))
                    return _error(status, str(error))

            wrapper.__name__ = handler.__name__
            return wrapper

        serve_page(console, STATIC_DIR)

        @console.route("/api/login", methods=["POST"])
        async def login(request: Request) -> HTTPResponse:
            body = json_object(request)
            if body is None or not all(isinstance(body.get(k), str) for k in ("username", "password")):
                return _error(400, "faltan 'username' y 'password'")
            if len(body["username"]) > MAX_USERNAME or len(body["password"]) > MAX_PASSWORD:
                return _error(400, "usuario o contraseña demasiado largos")
            # Per person and username: one address guessing cannot lock the advisor out for everyone.
            key = f"{request_client(request, settings().trusted_proxies)}:{body['username']}"
            if not login_attempts.allow(key):
                await run(desk.sign_in_refused, body["username"])
                return _error(429, "demasiados intentos: espere unos minutos")
            # The password hash is slow on purpose: on its own threads, so messages never wait for it.
            signed_in = await asyncio.get_running_loop().run_in_executor(
                password_checks, desk.sign_in, body["username"], body["password"]
            )
            if signed_in is None:
                return _error(401, "usuario o contraseña incorrectos")
            token, advisor = signed_in
            supervisor = await run(desk.is_supervisor, advisor)
            return response.json({"token": token, "advisor": advisor.name, "supervisor": supervisor})

        @console.route("/api/logout", methods=["POST"])
        @authenticated
        async def logout(request: Request, advisor) -> HTTPResponse:
            await run(desk.sign_out, bearer_token(request), advisor)
            return response.json({"ok": True})

        @console.route("/api/handoffs", methods=["GET"])
        @authenticated
        async def queue(request: Request, advisor) -> HTTPResponse:
            state = request.args.get("status", "waiting")
            if state not in STATES:
                return _error(400, f"status debe ser uno de: {', '.join(STATES)}")
            views = await run(desk.queue, state, advisor)
            return response.json({"handoffs": [v.as_json() for v in views]})

        @console.route("/api/handoffs/<handoff_id:int>", methods=["GET"])
        @authenticated
        async def detail(request: Request, advisor, handoff_id: int) -> HTTPResponse:
            view, transcript = await run(desk.case, handoff_id, advisor, request.args.get("opened") == "1")
            deliveries = await run(desk.store.deliveries, handoff_id)  # per line; a line added since: none
            media: list[MediaRef] = []
            try:
                earlier = await earlier_history(request.app, view, transcript, media)
            except Exception:  # the record alone still lets the advisor work
                logger.exception("could not read the conversation before hand-off %s", handoff_id)
                earlier, media = [], []
            media = await _with_record_files(media, desk.store, handoff_id)

            def files(part: str, index: int) -> dict[str, Any]:
                shown = [ref.as_json() for ref in media if (ref.part, ref.line) == (part, index)]
                return {"media": shown} if shown else {}

            return response.json(
                {
                    "handoff": view.as_json(),
                    "earlier": [{**line.as_json(), **files("earlier", i)} for i, line in enumerate(earlier)],
                    "transcript": [
                        {**line.as_json(), "delivery": delivery, **files("transcript", i)}
                        for i, (line, delivery) in enumerate(
                            itertools.zip_longest(transcript, deliveries[: len(transcript)])
                        )
                    ],
                    "media": [ref.as_json() for ref in media],
                }
            )

        @console.route("/api/handoffs/<handoff_id:int>/media/<n:int>", methods=["GET"])
        @authenticated
        async def media_file(request: Request, advisor, handoff_id: int, n: int) -> HTTPResponse | None:
            """A file the person sent, fetched from Twilio now and streamed through, never kept. For
            the advisor who has the case, or any advisor while it waits; every access is audited."""
            view = await run(desk.store.get, handoff_id)
            if view.state != "waiting" and view.advisor_id != advisor.id:
                await run(desk.store.audit, advisor.id, "media_refused", handoff_id, str(n))
                raise NotYours("solo quien atiende la derivación puede abrir sus archivos")
            refs = await handoff_media(request.app, view, desk.store)
            ref = next((r for r in refs if r.n == n), None)
            if ref is None:
                return _error(404, "no existe ese archivo")
            if not is_our_media_url(ref.url, settings()):
                await run(desk.store.audit, advisor.id, "media_refused", handoff_id, f"{n}: not a Twilio media URL")
                return _error(403, "ese archivo no es de la cuenta de Twilio del servicio: no se descarga")
            await run(desk.store.audit, advisor.id, "media", handoff_id, str(n))
            try:
                async with open_media(settings(), ref.url) as download:
                    headers = _media_headers(download.content_type, n)
                    if download.length is None:
                        # Size not told: read it (in memory, up to the limit) to answer 413 cleanly.
                        body = b"".join([chunk async for chunk in download.chunks])
                        return response.raw(body, headers=headers, content_type=download.content_type)
                    headers["Content-Length"] = str(download.length)
                    stream = await request.respond(headers=headers, content_type=download.content_type)
                    try:
                        async for chunk in download.chunks:
                            await stream.send(chunk)
                    except MediaError as error:  # headers are out: the browser sees the file is incomplete
                        logger.warning("hand-off %s: file %s cut off: %s", handoff_id, n, error)
                    await stream.eof()
                    return None
            except MediaTooLarge:
                return _error(413, "el archivo es demasiado grande para mostrarlo en la consola")
            except MediaError as error:
                logger.warning("hand-off %s: file %s not available: %s", handoff_id, n, error)
                return _error(502, "Twilio no entregó el archivo: puede haber vencido o no estar disponible")

        @console.route("/api/handoffs/<handoff_id:int>/claim", methods=["POST"])
        @authenticated
        async def claim(request: Request, advisor, handoff_id: int) -> HTTPResponse:
            view, delivery = await desk.claim(handoff_id, advisor, ChannelOutbox(request.app.ctx.agent))
            return response.json({"handoff": view.as_json(), **delivery.as_json()})

        @console.route("/api/handoffs/<handoff_id:int>/messages", methods=["POST"])
        @authenticated
        async def reply(request: Request, advisor, handoff_id: int) -> HTTPResponse:
            text = _body_text(request)
            if isinstance(text, HTTPResponse):
                return text
            delivery = await desk.reply(handoff_id, advisor, text, ChannelOutbox(request.app.ctx.agent))
            if delivery.reachable and not delivery.delivered:
                return _error(502, "el servicio de mensajería no aceptó el mensaje: intente de nuevo en un momento")
            return response.json({"ok": True, **delivery.as_json()}, status=201)

        @console.route("/api/handoffs/<handoff_id:int>/typing", methods=["POST"])
        @authenticated
        async def typing(request: Request, advisor, handoff_id: int) -> HTTPResponse:
            """The advisor is writing a reply: "typing…" for the person (WhatsApp), if possible."""
            view = await run(desk.store.require_owner, handoff_id, advisor.id)
            return response.json({"shown": await ChannelOutbox(request.app.ctx.agent).typing(view)})

        @console.route("/api/handoffs/<handoff_id:int>/notes", methods=["POST"])
        @authenticated
        async def note(request: Request, advisor, handoff_id: int) -> HTTPResponse:
            text = _body_text(request)
            if isinstance(text, HTTPResponse):
                return text
            await run(desk.note, handoff_id, advisor, text)
            return response.json({"ok": True}, status=201)

        @console.route("/api/handoffs/<handoff_id:int>/close", methods=["POST"])
        @authenticated
        async def close(request: Request, advisor, handoff_id: int) -> HTTPResponse:
            view, delivery = await desk.close(handoff_id, advisor, ChannelOutbox(request.app.ctx.agent))
            return response.json({"handoff": view.as_json(), **delivery.as_json()})

        @console.route("/api/handoffs/<handoff_id:int>/release", methods=["POST"])
        @authenticated
        async def release(request: Request, advisor, handoff_id: int) -> HTTPResponse:
            view, delivery = await desk.release(handoff_id, advisor, ChannelOutbox(request.app.ctx.agent))
            return response.json({"handoff": view.as_json(), **delivery.as_json()})

        @console.route("/api/canned", methods=["GET"])
        @authenticated
        async def canned(request: Request, advisor) -> HTTPResponse:
            path = settings().content_dir / "canned_replies.yml"
            replies = yaml.safe_load(path.read_text(encoding="utf-8")).get("canned") or []
            return response.json({"canned": replies})

        @console.listener("after_server_start")
        async def start_sweep(app, loop) -> None:
            app.ctx.handoff_sweep = asyncio.create_task(_sweep_forever(app))

        @console.listener("before_server_stop")
        async def stop_sweep(app, loop) -> None:
            app.ctx.handoff_sweep.cancel()

        return console


async def _sweep_forever(app: Any) -> None:
    """Tell people whose hand-off nobody claimed in time, and let them leave a message instead."""
    desk = handoff_desk()
    interval = float(settings().env.get("HANDOFF_SWEEP_SECONDS", SWEEP_SECONDS))
    while True:
        await asyncio.sleep(interval)
        try:
            await desk.expire_unclaimed(ChannelOutbox(app.ctx.agent))
        except Exception:
            logger.exception("hand-off sweep failed; retrying at the next interval")


async def advisor_of(request: Request) -> Advisor | None:
    """The advisor whose session token the request carries (the console's API and the dashboard's)."""
    token = bearer_token(request)
    return await asyncio.to_thread(handoff_desk().advisor_for, token) if token else None


def serve_page(blueprint: Blueprint, directory: Path) -> None:
    """A one-page app: its index.html at the blueprint's root and its files under /static/."""

    @blueprint.route("/", methods=["GET"])
    async def page(request: Request) -> HTTPResponse:
        return await response.file(directory / "index.html", headers=_page_headers())

    @blueprint.route("/static/<name:str>", methods=["GET"])
    async def static(request: Request, name: str) -> HTTPResponse:
        path = (directory / name).resolve()
        if path.parent != directory.resolve() or not path.is_file():
            return _error(404, "no encontrado")
        return await response.file(path, headers=_page_headers())


def _page_headers() -> dict[str, str]:
    return {
        "Content-Security-Policy": (
            # blob: the person's files, fetched with the advisor's token and shown in the page
            "default-src 'self'; img-src 'self' data: blob:; media-src blob:; object-src 'none'; "
            "frame-ancestors 'none'"
        ),
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
    }
