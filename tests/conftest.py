"""Shared fixtures: the knowledge base, a fresh process environment for the in-process channel
tests, and a real trained assistant on free ports."""

from __future__ import annotations

import json
import os
import random
import shutil
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from production_stores import REDIS_URL
from standins import PUBLIC_URL, Advisor, TelegramStandIn, TwilioStandIn

from bot import services
from bot.handoff import HandoffStore
from bot.knowledge import KnowledgeBase
from bot.settings import CONTENT_DIR, Settings
from channels import outbound
from ops import runner
from ops.runner import free_port

ARTIFACTS = Path(__file__).parent / "artifacts"
HANDOFF_WAIT_SECONDS = 30
ALWAYS_OPEN_HOURS = """
timezone: America/Lima
days: [lunes, martes, miércoles, jueves, viernes, sábado, domingo]
opens: "00:00"
closes: "23:59:59"
"""


# --- environment of the in-process channel tests ---------------------------------------------


# Variables of other profiles that must not leak in from the shell running the tests.
UNSET = (
    "DATABASE_URL", "REDIS_URL", "REDIS_KEY_PREFIX", "AMQP_URL", "SOM_CONTENT_DIR",
    "WEBCHAT_ALLOWED_ORIGINS", "WEBCHAT_JWT_KEY", "REST_TOKEN", "TRUSTED_PROXIES", "WEB_CONVERSATION_RATE",
    "WEB_CLIENT_RATE", "HANDOFFS_PER_CLIENT_HOUR",
)  # fmt: skip


class Environment:
    """The process environment one test runs in: a temporary var dir, the stand-ins' URLs and
    secrets, always-open office hours; and nothing a previous test left in the process."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]) -> None:
        self.monkeypatch = monkeypatch
        self.variables = dict(variables)
        for name in UNSET:
            monkeypatch.delenv(name, raising=False)
        self.set(**variables)
        # A per-process registry: the senders channels register for advisors.
        monkeypatch.setattr(outbound, "_senders", {})

    def set(self, **variables: str) -> None:
        """Change variables; what `bot.services` built from the old ones is rebuilt on next use."""
        for name, value in variables.items():
            self.monkeypatch.setenv(name, value)
        self.variables.update(variables)
        forget_services()

    def settings(self) -> Settings:
        return Settings.from_env(self.variables)


def forget_services() -> None:
    """Drop what `bot.services` cached from an earlier environment. The knowledge base is kept while
    it reads the same content directory (loading it takes half a second)."""
    content_dir = Settings.from_env().content_dir
    services.settings.cache_clear()
    services.handoff_desk.cache_clear()
    if services.knowledge_base.cache_info().currsize and services.knowledge_base().directory != content_dir:
        services.knowledge_base.cache_clear()


@pytest.fixture
def environment(tmp_path, monkeypatch, twilio_standin, telegram_standin) -> Iterator[Environment]:
    hours = tmp_path / "office_hours.yml"
    hours.write_text(ALWAYS_OPEN_HOURS, encoding="utf-8")
    variables = {
        **twilio_standin.env(),
        **telegram_standin.env(),
        "PUBLIC_URL": PUBLIC_URL,
        "SOM_VAR_DIR": str(tmp_path / "var"),
        "SOM_OFFICE_HOURS_FILE": str(hours),
        "HANDOFF_WAIT_MINUTES": "10",
        "HANDOFF_SWEEP_SECONDS": "3600",
    }
    yield Environment(monkeypatch, variables)
    forget_services()


@pytest.fixture(scope="session")
def kb() -> KnowledgeBase:
    return KnowledgeBase.load(CONTENT_DIR)


@pytest.fixture(scope="session")
def twilio_standin() -> TwilioStandIn:
    standin = TwilioStandIn().start()
    yield standin
    standin.stop()


@pytest.fixture(scope="session")
def telegram_standin() -> TelegramStandIn:
    standin = TelegramStandIn().start()
    yield standin
    standin.stop()


@pytest.fixture(scope="session")
def advisor(assistant) -> Advisor:
    """An advisor account, logged in to the running assistant's advisor API."""
    HandoffStore(assistant.settings.handoff_database_url).add_advisor("rosa.canales", "clave-de-prueba-456", "Rosa")
    return Advisor(assistant.url).log_in("rosa.canales", "clave-de-prueba-456")


@pytest.fixture(scope="session")
def assistant_env(twilio_standin, telegram_standin) -> dict[str, str]:
    """Extra environment for the servers under test: WhatsApp and Telegram, on local stand-ins."""
    return {**twilio_standin.env(), **telegram_standin.env(), "PUBLIC_URL": PUBLIC_URL}


@pytest.fixture(scope="session")
def trained_model() -> Path:
    """Train once: Rasa reuses the model when nothing changed."""
    return runner.train(Settings.from_env(os.environ))


@pytest.fixture(scope="session")
def assistant(tmp_path_factory, assistant_env, trained_model):
    """The trained assistant, served on free ports."""
    var_dir = tmp_path_factory.mktemp("var")
    always_open = var_dir / "office_hours.yml"
    always_open.write_text(ALWAYS_OPEN_HOURS)
    settings = Settings.from_env(
        {
            **os.environ,
            "SOM_OFFICE_HOURS_FILE": str(always_open),
            "HANDOFF_WAIT_MINUTES": str(HANDOFF_WAIT_SECONDS / 60),
            "HANDOFF_SWEEP_SECONDS": "1",
            # The browser tests are one client (127.0.0.1) speaking as many people in a few minutes.
            "WEB_CLIENT_RATE": "120",
            "HANDOFFS_PER_CLIENT_HOUR": "10",
            **assistant_env,
            "SOM_VAR_DIR": str(var_dir),
            "RASA_PORT": str(free_port()),
            "ACTION_PORT": str(free_port()),
        }
    )
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / "servers.log"
    with open(log_path, "w") as log:
        stack = runner.Stack(settings, trained_model, log=log).start()
        yield Conversations(stack.rasa_url, settings, log_path)
        stack.stop()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium driven by Playwright. Required under CI; skipped elsewhere if absent.

    Module-scoped: Playwright's sync API runs an event loop in this thread while it is open, which
    would break `asyncio.run` in the tests of other modules."""
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is required under CI: `make browser` installs Debian's package")
        pytest.skip("Chromium is not installed (apt-get install chromium, or `make browser` as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


class Conversations:
    """Talks to the running assistant through the REST channel."""

    def __init__(self, url: str, settings: Settings, log_path: Path) -> None:
        self.url = url
        self.settings = settings
        self.log_path = log_path

    def new(self) -> Conversation:
        return Conversation(self.url, f"rest:test-{uuid.uuid4()}")


class Conversation:
    """One person. Each comes from an address of their own behind the (trusted, loopback) proxy, as
    people do in production: the flood limit per client address is not shared by the whole suite."""

    def __init__(self, url: str, sender: str) -> None:
        self.url = url
        self.sender = sender
        self.address = ".".join(str(random.randint(1, 254)) for _ in range(4))

    def say(self, text: str) -> list[dict]:
        body = json.dumps({"sender": self.sender, "message": text}).encode()
        headers = {"Content-Type": "application/json", "X-Forwarded-For": self.address}
        request = urllib.request.Request(f"{self.url}/webhooks/rest/webhook", body, headers)
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.load(response)

    def say_text(self, text: str) -> str:
        """Everything the assistant answered, as one string (buttons' titles included)."""
        parts = []
        for message in self.say(text):
            parts.append(message.get("text", ""))
            parts += [b["title"] for b in message.get("buttons") or []]
        return "\n".join(parts)


@pytest.fixture
def redis_prefix():
    """(prefix, client): a Redis key prefix of one test's own on the machine's Redis, its keys
    deleted afterwards."""
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError:
        if os.environ.get("CI"):
            pytest.fail("Redis on 127.0.0.1:6379 is required under CI")
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    prefix = f"somtest{uuid.uuid4().hex[:8]}"
    yield prefix, client
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)
