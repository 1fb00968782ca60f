"""The advisor console in a real headless Chromium, without a model: WhatsApp's delivery status
next to each advisor reply, a failed one flagged (issue 16). The console is served in-process on a
local port, in a thread of its own (Playwright's sync API holds this thread's event loop); a
screenshot goes to tests/artifacts/."""

from __future__ import annotations

import asyncio
import threading

import pytest
import test_channel_blueprints
from blueprint_harness import served
from conftest import ARTIFACTS
from test_channel_blueprints import ADVISOR_PASSWORD

from bot import services
from channels.advisor import AdvisorConsole

environment = test_channel_blueprints.environment  # the same fixture: a fresh environment per test

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.filterwarnings("ignore:You have set a listener:UserWarning"),
]
TIMEOUT = 15_000


class ConsoleThread:
    """The advisor console on Sanic's own server, in a thread with its own event loop."""

    def __init__(self) -> None:
        self.url = ""
        self.ready, self.stopping = threading.Event(), threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="console-server", daemon=True)

    def __enter__(self) -> ConsoleThread:
        self.thread.start()
        if not self.ready.wait(30) or self.error:
            raise RuntimeError("the console did not start") from self.error
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(30)
        if self.error:
            raise self.error

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:  # reported to the test by __enter__ or __exit__
            self.error = error
            self.ready.set()

    async def _serve(self) -> None:
        async with served([AdvisorConsole()], real_port=True) as app:
            self.url = app.url
            self.ready.set()
            while not self.stopping.is_set():
                await asyncio.sleep(0.05)


def whatsapp_case_with_two_replies() -> int:
    """An active WhatsApp hand-off whose advisor wrote twice: one reply read, one not delivered."""
    store = services.handoff_desk().store
    store.add_advisor("rosa.canales", ADVISOR_PASSWORD, "Rosa")
    _, rosa = store.login("rosa.canales", ADVISOR_PASSWORD)
    view = store.open("whatsapp:+51987654321", "whatsapp", "requested", 0, {}, [("person", "quiero un asesor")])
    store.claim(view.id, rosa.id)
    store.add_sent_message(view.id, "advisor", "Hola, soy Rosa del SOM.", rosa.id, ("SM" + "1" * 32,))
    store.add_sent_message(view.id, "advisor", "¿Me envía su DNI?", rosa.id, ("SM" + "2" * 32,))
    for status in ("sent", "delivered", "read"):
        store.note_delivery("SM" + "1" * 32, status)
    store.note_delivery("SM" + "2" * 32, "undelivered", "63016")
    return view.id


def test_the_console_shows_each_replys_delivery_status_and_flags_a_failed_one(environment, browser):
    handoff_id = whatsapp_case_with_two_replies()
    with ConsoleThread() as server:
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        page.goto(f"{server.url}/advisor/")
        page.get_by_label("Usuario").fill("rosa.canales")
        page.get_by_label("Contraseña").fill(ADVISOR_PASSWORD)
        page.get_by_role("button", name="Ingresar").click()
        page.get_by_role("tab", name="En atención").click()
        page.locator("#queue li", has_text=f"#{handoff_id}").click()
        lines = page.locator(".transcript li")
        lines.nth(2).wait_for(timeout=TIMEOUT)
        read, failed = lines.nth(1), lines.nth(2)
        assert "leído" in read.locator(".meta").inner_text()
        assert "delivery-failed" not in (read.get_attribute("class") or "")
        assert "delivery-failed" in (failed.get_attribute("class") or "")
        flag = failed.locator("strong.delivery-failed")
        assert "no se entregó (error 63016)" in flag.inner_text()
        assert flag.evaluate("node => getComputedStyle(node).color") == "rgb(176, 0, 32)"
        assert lines.nth(0).locator(".delivery").count() == 0, "the person's message has no status"
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "console-delivery-status.png"), full_page=True)
