"""Channel blueprints served in-process: a fresh Sanic app per test, driven through its ASGI
interface with httpx, a scripted assistant instead of a trained model, and a real Rasa `Agent`
(in-memory tracker and lock stores) where a channel reads or writes the conversation's tracker.

Why a naive version of this hung on its second test, and what here prevents it:

- Sanic 21.12 "touches up" `Sanic.handle_request`, `Http.read` and a few other methods when an app
  starts: it recompiles their source without the signal dispatches the app does not use and
  replaces them *on the class*. The second app to start in the same process tries to read the
  source of the already recompiled method, which has none, and `TouchUp.run` raises
  (`KeyError: 'read'`). That exception ends the ASGI lifespan task before it sends
  `lifespan.startup.complete`, and nothing had awaited that task: the test waited forever for a
  message that could not come. Sanic's own answer is test mode, in which each start recompiles
  from the original methods (kept aside on first start); it must be on before the first app
  starts, so this module turns it on when imported and refuses to run if it is too late.
- Every wait here has a deadline and watches the lifespan task, so a failing start or stop is
  raised as the error it is instead of hanging.
- What a process keeps (the `bot.services` caches, the outbound senders' registry, the advisor
  login limiter) is reset per test by the test module's fixture, from an explicit environment.
- Background work (WhatsApp and Telegram answer the webhook first and work afterwards) is awaited
  with `Served.idle()` before the app stops, and tests wait for the stand-ins with `eventually()`.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urljoin

import httpx
import pytest
from rasa.core.agent import Agent
from rasa.core.channels.channel import InputChannel, UserMessage
from rasa.core.lock_store import InMemoryLockStore
from rasa.core.tracker_store import InMemoryTrackerStore
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import BotUttered, UserUttered
from sanic import Sanic
from sanic.touchup.service import TouchUp

T = TypeVar("T")

TEST_DEADLINE = 45.0  # seconds for one test's whole scenario
LIFESPAN_DEADLINE = 10.0
# How long to wait for background work or a stand-in's request: only reached on failure, so it is
# generous (shared machines stall; Telegram's own pacing takes a second a message).
IDLE_DEADLINE = 20.0
BASE_URL = "http://testserver"
WEBHOOKS = "/webhooks/"  # where Rasa mounts input channels (`rasa.core.channels.channel.register`)


def channel_test_marks(timeout: int) -> list[pytest.MarkDecorator]:
    """A channel test module's `pytestmark`: its deadline, and quiet about Sanic's warning, for every
    request in ASGI mode, that stop listeners run as late as it can."""
    return [
        pytest.mark.timeout(timeout),
        pytest.mark.filterwarnings("ignore:You have set a listener:UserWarning"),
    ]


def _enable_sanic_test_mode() -> None:
    """See the module's docstring: later app starts must recompile from the original methods."""
    already_touched = [
        f"{target.__name__}.{name}"
        for target, name in TouchUp._registry
        if getattr(target, "__touched__", False) and not hasattr(target, f"_{name}")
    ]
    if already_touched and not Sanic.test_mode:
        raise RuntimeError(
            "a Sanic app started in this process before test mode was on; import "
            f"blueprint_harness before starting any Sanic app (touched: {', '.join(sorted(already_touched))})"
        )
    Sanic.test_mode = True


_enable_sanic_test_mode()


def in_event_loop(test: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an async test on a fresh event loop, failing (not hanging) after TEST_DEADLINE seconds."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(test(*args, **kwargs), TEST_DEADLINE))

    return run


async def eventually(check: Callable[[], T], what: str, timeout: float = IDLE_DEADLINE) -> T:
    """Poll `check` without blocking the event loop (background work must go on) until it returns
    something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.02)


def new_agent() -> Agent:
    """A real Rasa agent without a model: what channels use of it are its tracker and lock stores."""
    return Agent(
        domain=Domain.empty(), tracker_store=InMemoryTrackerStore(Domain.empty()), lock_store=InMemoryLockStore()
    )


Answer = dict[str, Any]  # as Rasa's actions produce them: {"text": ..., "buttons": [{"title", "payload"}]}


@dataclass
class ScriptedAssistant:
    """Stands in for `Agent.handle_message`: answers each text with scripted messages through the
    message's output channel, and keeps the turn in the tracker store as Rasa would (the WhatsApp
    channel reads the last message's buttons from there, the web chat's history reads it all)."""

    agent: Agent
    script: dict[str, list[Answer]] = field(default_factory=dict)
    failing: bool = False  # raise instead of answering, as when the action server is down
    received: list[UserMessage] = field(default_factory=list)

    def answer(self, text: str, *answers: Answer) -> None:
        self.script[text] = list(answers)

    @staticmethod
    def default_answer(text: str) -> Answer:
        return {"text": f"Respuesta a: {text}"}

    def texts(self) -> list[str]:
        return [m.text for m in self.received]

    async def __call__(self, message: UserMessage) -> None:
        self.received.append(message)
        if self.failing:
            raise RuntimeError("scripted failure")
        answers = self.script.get(message.text) or [self.default_answer(message.text)]
        tracker = await self.agent.tracker_store.get_or_create_tracker(message.sender_id)
        tracker.update(UserUttered(message.text, metadata=message.metadata or {}, input_channel=message.input_channel))
        for answer in answers:
            await message.output_channel.send_response(message.sender_id, dict(answer))
            data = {"buttons": answer["buttons"]} if answer.get("buttons") else {}
            tracker.update(BotUttered(answer.get("text"), data))
        await self.agent.tracker_store.save(tracker)


class SlowAssistant(ScriptedAssistant):
    """A `ScriptedAssistant` that takes `seconds` before answering texts that start with "lento"."""

    seconds: float = 1.6

    async def __call__(self, message: UserMessage) -> None:
        if message.text.startswith("lento"):
            await asyncio.sleep(self.seconds)
        await super().__call__(message)


class Lifespan:
    """The ASGI lifespan protocol, driven by hand (httpx's ASGITransport does not drive it)."""

    def __init__(self, app: Sanic) -> None:
        self.app = app
        self._to_app: asyncio.Queue[dict] = asyncio.Queue()
        self._from_app: asyncio.Queue[dict] = asyncio.Queue()
        self.task: asyncio.Task | None = None

    async def start(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}
        self.task = asyncio.create_task(self.app(scope, self._to_app.get, self._from_app.put))
        await self._exchange("lifespan.startup")

    async def stop(self) -> None:
        await self._exchange("lifespan.shutdown")
        # After the shutdown, Sanic 21.12's ASGI entry point goes on to handle the lifespan scope as
        # if it were a request and fails on the missing request; the shutdown itself is complete.
        done, _ = await asyncio.wait({self.task}, timeout=LIFESPAN_DEADLINE)
        if self.task in done and not self.task.cancelled():
            error = self.task.exception()
            if error is not None and not (isinstance(error, AttributeError) and "request" in str(error)):
                raise error

    async def _exchange(self, event: str) -> None:
        await self._to_app.put({"type": event})
        reply = asyncio.ensure_future(self._from_app.get())
        done, _ = await asyncio.wait({reply, self.task}, timeout=LIFESPAN_DEADLINE, return_when=asyncio.FIRST_COMPLETED)
        if reply in done:
            message = reply.result()
            if message["type"] != f"{event}.complete":
                raise RuntimeError(f"Sanic answered {event} with {message}")
            return
        reply.cancel()
        if self.task in done:
            raise RuntimeError(f"Sanic's lifespan ended before completing {event}") from self.task.exception()
        raise TimeoutError(f"Sanic did not complete {event} within {LIFESPAN_DEADLINE:.0f} s")


class RealServer:
    """Sanic's own HTTP server on a free port of 127.0.0.1, in this event loop: for clients that need
    a real socket (python-socketio's). Same listeners as the ASGI lifespan, in the same order."""

    def __init__(self, app: Sanic) -> None:
        self.app = app
        self.server: Any = None
        self.url = ""

    async def start(self) -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        # Sanic 21.12 awaits the asyncio server inside create_server: it is listening on return
        # (awaiting it again fails), and nobody connects before the listeners below have run.
        self.server = await self.app.create_server(sock=sock, return_asyncio_server=True, access_log=False)
        await asyncio.wait_for(self.server.startup(), LIFESPAN_DEADLINE)
        await asyncio.wait_for(self.server.before_start(), LIFESPAN_DEADLINE)
        await asyncio.wait_for(self.server.after_start(), LIFESPAN_DEADLINE)

    async def stop(self) -> None:
        await asyncio.wait_for(self.server.before_stop(), LIFESPAN_DEADLINE)
        self.server.close()
        for connection in list(self.server.connections):
            connection.close(timeout=0.5)  # a long-poll in progress too: aborted after half a second
        await asyncio.wait_for(self.server.wait_closed(), LIFESPAN_DEADLINE)
        await asyncio.wait_for(self.server.after_stop(), LIFESPAN_DEADLINE)


@dataclass
class Served:
    """One started app: its HTTP client, the Rasa agent behind it and the scripted assistant."""

    app: Sanic
    client: httpx.AsyncClient
    agent: Agent
    assistant: ScriptedAssistant
    url: str
    _baseline: set[asyncio.Task]
    _long_lived: set[asyncio.Task]

    def background(self) -> set[asyncio.Task]:
        """Work the app started that has not finished (webhooks answered, messages being handled).
        Only meaningful through the ASGI interface: a real server also runs its connections as tasks."""
        sweep = getattr(self.app.ctx, "handoff_sweep", None)
        ignored = self._baseline | self._long_lived | {asyncio.current_task(), sweep}
        return {t for t in asyncio.all_tasks() if t not in ignored and not t.done()}

    async def idle(self, timeout: float = IDLE_DEADLINE) -> None:
        """Wait until every background task the app started has finished: after this, nothing more
        will reach the assistant or a stand-in for what was sent so far."""
        deadline = time.monotonic() + timeout
        while pending := self.background():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"background work still running after {timeout:.0f} s: {pending}")
            await asyncio.wait(pending, timeout=remaining)

    async def tracker_events(self, conversation_id: str) -> list[Any]:
        tracker = await self.agent.tracker_store.retrieve(conversation_id)
        return list(tracker.events) if tracker else []


def unique_app_name() -> str:
    return f"blueprints_{uuid.uuid4().hex[:12]}"


@asynccontextmanager
async def served(
    channels: Iterable[InputChannel], assistant: ScriptedAssistant | None = None, real_port: bool = False
) -> AsyncIterator[Served]:
    """Mount `channels` as Rasa would (under /webhooks/, or the channel's own prefix) on a new app,
    start it, and stop it afterwards once its background work is done.

    By default requests go through the app's ASGI interface; with `real_port` the app runs Sanic's
    own server on a free local port (`Served.url`), for clients that open their own connections."""
    baseline = set(asyncio.all_tasks())
    agent = assistant.agent if assistant else new_agent()
    assistant = assistant or ScriptedAssistant(agent)
    app = Sanic(unique_app_name())
    app.ctx.agent = agent
    for channel in channels:
        app.blueprint(channel.blueprint(assistant), url_prefix=urljoin(WEBHOOKS, channel.url_prefix()))
    lifecycle: Lifespan | RealServer = RealServer(app) if real_port else Lifespan(app)
    try:
        await lifecycle.start()
        try:
            if isinstance(lifecycle, RealServer):
                client = httpx.AsyncClient(base_url=lifecycle.url)
            else:
                client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL)
            async with client:
                long_lived = {lifecycle.task} if isinstance(lifecycle, Lifespan) else set()
                serving = Served(app, client, agent, assistant, str(client.base_url).rstrip("/"), baseline, long_lived)
                try:
                    yield serving
                    if not real_port:  # a real server has connection tasks that never finish on their own
                        await serving.idle()
                finally:
                    if not real_port:
                        await _cancel(serving.background())  # the test failed: stop its work before the app
        finally:
            await lifecycle.stop()  # runs the channels' stop listeners: HTTP clients closed, sweep cancelled
            if real_port:
                await _cancel(set(asyncio.all_tasks()) - baseline - {asyncio.current_task()})
    finally:
        if isinstance(lifecycle, Lifespan) and lifecycle.task is not None and not lifecycle.task.done():
            lifecycle.task.cancel()
        Sanic._app_registry.pop(app.name, None)


async def _cancel(tasks: set[asyncio.Task]) -> None:
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=IDLE_DEADLINE)
