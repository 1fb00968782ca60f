"""The web chat widget in a real headless Chromium, against the real assistant.

Covers what a person does (greeting, typing, buttons, reload, losing the connection, a phone,
the keyboard alone, an advisor taking over) and what must never happen (HTML from a message
interpreted, a CDN contacted, serious accessibility violations).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import redis
from conftest import ALWAYS_OPEN_HOURS, ARTIFACTS, free_port
from test_handoff_flow import AdvisorClient

from bot.handoff import HandoffStore
from bot.settings import Settings
from ops import runner

pytestmark = pytest.mark.model
VENDOR = Path(__file__).parent.parent / "channels" / "static" / "webchat" / "vendor"
UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
HOSTILE = "<img src=x onerror=alert(1)>"
TIMEOUT = 30_000


class Widget:
    """The demo page and the widget on it, as a person uses them."""

    def __init__(self, url: str, context) -> None:
        self.context = context
        self.page = context.new_page()
        self.dialogs: list[str] = []
        self.requests: list[str] = []
        self.page.on("dialog", lambda dialog: (self.dialogs.append(dialog.message), dialog.dismiss()))
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.goto(f"{url}/webchat/")
        self.log = self.page.get_by_role("log", name="Conversación")
        self.status = self.page.get_by_role("status")
        self.input = self.page.get_by_label("Escriba su mensaje")

    def open(self) -> Widget:
        """Open the panel and wait for the whole greeting (it ends with the menu's buttons)."""
        self.page.get_by_role("button", name="Consultas al SOM").click()
        self.page.get_by_role("group", name="Respuestas sugeridas").wait_for(timeout=TIMEOUT)
        self.wait_until_answered()
        return self

    def bot_messages(self):
        return self.page.locator(".msg-bot")

    def user_messages(self):
        return self.page.locator(".msg-user .bubble")

    def say(self, text: str) -> None:
        """Type a message, send it with Enter, and wait until the assistant has answered it."""
        before = self.bot_messages().count()
        self.input.fill(text)
        self.input.press("Enter")
        self.wait_until_answered(before)

    def wait_until_answered(self, bot_messages_before: int | None = None) -> None:
        if bot_messages_before is not None:
            self.page.wait_for_function(
                "n => document.querySelector('#som-webchat').shadowRoot.querySelectorAll('.msg-bot').length > n",
                arg=bot_messages_before,
                timeout=TIMEOUT,
            )
        self.page.locator(".typing").wait_for(state="hidden", timeout=TIMEOUT)

    def transcript(self) -> list[tuple[str, str]]:
        """(who, text) of every message on screen, as a screen reader would read them."""
        return [
            (item.locator(".who").inner_text(), item.locator(".bubble").inner_text())
            for item in self.page.locator(".msg").all()
        ]

    def advisor_label_of(self, text: str) -> str:
        """Wait for an advisor's message and return the label above it."""
        message = self.page.locator(".msg-advisor").filter(has_text=text)
        message.wait_for(timeout=TIMEOUT)
        return message.locator(".who").inner_text()

    def session_id(self) -> str:
        return self.page.evaluate(
            "JSON.parse(Object.entries(localStorage).find(([key]) => key.endsWith(':session'))[1])"
        )

    def screenshot(self, name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / name))

    def axe(self) -> list[dict]:
        """axe-core's violations of WCAG 2.1 A/AA and best practices, on the page as it is now."""
        self.page.add_script_tag(path=str(VENDOR / "axe.min.js"))
        return self.page.evaluate(
            """async () => (await axe.run(document, {
                 runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]},
               })).violations.map(v => ({
                 id: v.id, impact: v.impact, help: v.help, targets: v.nodes.map(n => n.target),
               }))"""
        )


@pytest.fixture
def new_widget(assistant, browser):
    contexts = []

    def make(url: str = assistant.url, **context_options) -> Widget:
        contexts.append(browser.new_context(**{"viewport": {"width": 1280, "height": 800}, **context_options}))
        return Widget(url, contexts[-1])

    yield make
    for context in contexts:
        context.close()


def test_greeting_typing_and_a_button(assistant, new_widget):
    widget = new_widget().open()
    assert "asistente virtual del Servicio de Orientación para el Migrante" in widget.log.inner_text()
    assert widget.log.locator("strong").first.inner_text() == "Servicio de Orientación para el Migrante (SOM)"
    assert widget.user_messages().count() == 0  # the greeting payload is not shown as the person's

    widget.say("hola")
    assert widget.user_messages().last.inner_text() == "hola"

    before = widget.bot_messages().count()
    widget.page.get_by_role("button", name="Quiero trabajar afuera").click()
    widget.wait_until_answered(before)
    assert widget.user_messages().last.inner_text() == "Quiero trabajar afuera"  # the title, not the payload
    assert "Dígame a qué país quiere ir" in widget.bot_messages().nth(before).inner_text()
    assert not any(text.startswith("/") for _, text in widget.transcript())
    assert all(url.startswith(assistant.url) for url in widget.requests)  # no CDN, nothing external


def test_formatting_builds_lists_and_safe_links(new_widget):
    widget = new_widget().open()
    widget.say("qué es el SOM")
    answer = widget.bot_messages().filter(has_text="Atiende a:").last
    assert answer.locator("li").count() == 6  # the audiences
    portal = widget.log.get_by_role("link", name="www.trabajo.gob.pe/migrante/").first
    assert portal.get_attribute("href") == "https://www.trabajo.gob.pe/migrante/"
    assert portal.get_attribute("target") == "_blank"
    assert portal.get_attribute("rel") == "noopener noreferrer"
    email = widget.log.get_by_role("link", name="migrante@trabajo.gob.pe").first
    assert email.get_attribute("href") == "mailto:migrante@trabajo.gob.pe"


def test_hostile_message_is_shown_as_text(new_widget):
    widget = new_widget().open()
    widget.say(HOSTILE)
    assert widget.user_messages().last.inner_text() == HOSTILE
    assert widget.log.locator("img, script").count() == 0
    widget.page.wait_for_timeout(500)  # an onerror would have fired by now
    assert widget.dialogs == []


def test_history_survives_a_reload_and_new_conversation_starts_afresh(new_widget):
    widget = new_widget().open()
    widget.say("tengo aportes en chile")
    widget.say("quiero hablar con un asesor")
    widget.say("cancelar")  # the hand-off desk answers (not kept by Rasa), then the menu
    before = widget.transcript()
    assert ("Usted", "cancelar") in before and "salió de la fila" in before[-2][1]
    session_id = widget.session_id()
    assert UUID4.fullmatch(session_id)

    widget.page.reload()
    widget.page.get_by_role("button", name="Consultas al SOM").click()
    widget.log.get_by_text("tengo aportes en chile").wait_for(timeout=TIMEOUT)
    assert widget.transcript() == before
    assert widget.session_id() == session_id

    widget.page.get_by_role("button", name="Nueva conversación").click()
    widget.page.wait_for_function("() => !document.querySelector('#som-webchat').shadowRoot.querySelector('.msg-user')")
    widget.wait_until_answered(0)
    assert widget.user_messages().count() == 0
    assert "asistente virtual del" in widget.log.inner_text()
    assert UUID4.fullmatch(widget.session_id()) and widget.session_id() != session_id


def test_offline_shows_it_and_sends_what_was_typed_once_back(new_widget):
    widget = new_widget().open()
    widget.context.set_offline(True)
    widget.status.filter(has_text="Sin conexión").wait_for(timeout=TIMEOUT)
    widget.input.fill("quiero trabajar en españa")
    widget.input.press("Enter")
    pending = widget.page.locator(".msg-user.pending")
    pending.get_by_text("Pendiente: se enviará al recuperar la conexión").wait_for()
    widget.screenshot("webchat-offline.png")

    before = widget.bot_messages().count()
    widget.context.set_offline(False)
    widget.status.filter(has_text="En línea").wait_for(timeout=TIMEOUT)
    widget.wait_until_answered(before)
    assert pending.count() == 0
    assert "España" in widget.log.inner_text()
    assert [text for who, text in widget.transcript() if who == "Usted"] == ["quiero trabajar en españa"]


def test_keyboard_only(new_widget):
    widget = new_widget()
    page = widget.page
    focused = "() => document.querySelector('#som-webchat').shadowRoot.activeElement?.textContent || ''"
    focused_id = "() => document.querySelector('#som-webchat').shadowRoot.activeElement?.id || ''"
    page.keyboard.press("Tab")
    assert "Consultas al SOM" in page.evaluate(focused)
    page.keyboard.press("Enter")
    assert page.evaluate(focused_id) == "som-input"  # opening moves focus to where one types
    widget.wait_until_answered(0)

    page.keyboard.press("Shift+Tab")  # the last quick reply comes right before the input
    assert page.evaluate(focused) == "Soy extranjero en Perú"
    before = widget.bot_messages().count()
    page.keyboard.press("Enter")
    widget.wait_until_answered(before)
    assert widget.user_messages().last.inner_text() == "Soy extranjero en Perú"
    assert page.evaluate(focused_id) == "som-input"  # not lost with the buttons that went away

    page.keyboard.type("hola")
    before = widget.bot_messages().count()
    page.keyboard.press("Enter")
    widget.wait_until_answered(before)
    page.keyboard.press("Escape")
    assert page.get_by_role("dialog").count() == 0
    assert "Consultas al SOM" in page.evaluate(focused)  # closing gives focus back to the launcher


def test_phone_full_screen_with_the_input_above_the_keyboard(new_widget):
    widget = new_widget(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True, device_scale_factor=2)
    widget.open()
    widget.say("tengo familia en italia")
    panel = widget.page.get_by_role("dialog").bounding_box()
    assert panel == {"x": 0, "y": 0, "width": 390, "height": 844}
    widget.screenshot("webchat-mobile.png")

    widget.page.set_viewport_size({"width": 390, "height": 500})  # the on-screen keyboard takes the rest
    widget.page.wait_for_timeout(300)
    composer = widget.input.bounding_box()
    assert composer["y"] + composer["height"] <= 500
    assert widget.input.is_visible()


def test_axe_finds_no_serious_or_critical_violations(new_widget):
    results = {}
    for name, options in {
        "desktop": {},
        "phone": {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True},
    }.items():
        widget = new_widget(bypass_csp=True, **options).open()  # bypass_csp: to inject axe-core
        widget.say("soy extranjero y trabajo en lima")
        results[name] = widget.axe()
        if name == "desktop":
            widget.screenshot("webchat-desktop.png")
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "webchat-axe.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    serious = [
        (name, violation["id"])
        for name, violations in results.items()
        for violation in violations
        if violation["impact"] in ("serious", "critical")
    ]
    assert serious == []


def advisor_on(url: str, settings: Settings, username: str) -> AdvisorClient:
    HandoffStore(settings.handoff_database_url).add_advisor(username, "clave-de-prueba-789", "Rosa")
    status, body = AdvisorClient(url).call("POST", "/login", {"username": username, "password": "clave-de-prueba-789"})
    assert status == 200
    return AdvisorClient(url, body["token"])


def test_advisor_reply_reaches_the_widget_labelled(assistant, new_widget):
    advisor = advisor_on(assistant.url, assistant.settings, "rosa.widget")
    widget = new_widget().open()
    widget.say("quiero hablar con un asesor")
    assert "puesto" in widget.bot_messages().last.inner_text()
    widget.input.fill("es sobre mi contrato en chile")  # while waiting: kept by the hand-off only
    widget.input.press("Enter")
    widget.wait_until_answered()

    handoff = advisor.handoff_of(widget.session_id())
    assert handoff["channel"] == "socketio"
    assert advisor.call("POST", f"/handoffs/{handoff['id']}/claim")[0] == 200
    assert advisor.call("POST", f"/handoffs/{handoff['id']}/typing", {})[1] == {"shown": True}
    indicator = widget.page.locator(".typing")
    indicator.wait_for(state="visible", timeout=TIMEOUT)
    assert indicator.inner_text() == "Su asesor(a) está escribiendo…"
    question = {"text": "¿Desde cuándo trabaja allá?"}
    assert advisor.call("POST", f"/handoffs/{handoff['id']}/messages", question)[0] == 201
    assert widget.advisor_label_of("¿Desde cuándo trabaja allá?") == "Rosa · asesor(a) del SOM"
    indicator.wait_for(state="hidden", timeout=TIMEOUT)  # the message took its place
    widget.screenshot("webchat-advisor.png")
    seen = widget.transcript()

    widget.page.reload()
    widget.page.get_by_role("button", name="Consultas al SOM").click()
    widget.log.get_by_text("¿Desde cuándo trabaja allá?").wait_for(timeout=TIMEOUT)
    assert widget.transcript() == seen  # advisor's lines labelled, the person's own still there
    advisor.call("POST", f"/handoffs/{handoff['id']}/close")


@pytest.fixture(scope="module")
def redis_url():
    """A throwaway Redis on a free port, else the machine's. Required under CI; skipped elsewhere."""
    server = shutil.which("redis-server")
    if server is None:
        url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
        try:
            redis.Redis.from_url(url, socket_timeout=2).ping()
        except redis.exceptions.ConnectionError:
            if os.environ.get("CI"):
                pytest.fail("Redis is required under CI (Debian package 'redis-server')")
            pytest.skip("no Redis: install the 'redis-server' package")
        yield url
        return
    port = free_port()
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.exceptions.ConnectionError:
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.1)
    yield f"redis://127.0.0.1:{port}/0"
    process.terminate()
    process.wait()


@pytest.fixture(scope="module")
def two_processes(assistant, redis_url, tmp_path_factory):
    """Two Rasa servers sharing their databases and Redis, as behind a load balancer."""
    var_dir = tmp_path_factory.mktemp("var-two-processes")
    hours = var_dir / "office_hours.yml"
    hours.write_text(ALWAYS_OPEN_HOURS)
    stacks = []
    with open(ARTIFACTS / "servers-two-processes.log", "w") as log:
        for _ in range(2):
            settings = Settings.from_env(
                {
                    **os.environ,
                    "SOM_VAR_DIR": str(var_dir),
                    "SOM_OFFICE_HOURS_FILE": str(hours),
                    "REDIS_URL": redis_url,
                    "REDIS_KEY_PREFIX": f"test{os.getpid()}",  # apart from anything else on that Redis
                    "RASA_PORT": str(free_port()),
                    "ACTION_PORT": str(free_port()),
                }
            )
            stacks.append(runner.Stack(settings, runner.latest_model(), log=log).start())
        yield stacks
        for stack in stacks:
            stack.stop()


def test_advisor_on_another_process_reaches_the_widget_through_redis(two_processes, new_widget):
    near, far = two_processes
    widget = new_widget(near.rasa_url).open()
    widget.say("quiero hablar con un asesor")

    advisor = advisor_on(far.rasa_url, far.settings, "rosa.redis")
    handoff = advisor.handoff_of(widget.session_id())
    assert advisor.call("POST", f"/handoffs/{handoff['id']}/claim")[0] == 200
    message = {"text": "Le escribo desde otro servidor"}
    assert advisor.call("POST", f"/handoffs/{handoff['id']}/messages", message)[0] == 201
    assert widget.advisor_label_of("Le escribo desde otro servidor") == "Rosa · asesor(a) del SOM"
    advisor.call("POST", f"/handoffs/{handoff['id']}/close")
