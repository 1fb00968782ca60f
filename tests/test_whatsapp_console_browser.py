"""The advisor console in a real headless Chromium, without a model: WhatsApp's delivery status
next to each advisor reply, a failed one flagged (issue 16). The console is served in-process on a
local port, in a thread of its own (Playwright's sync API holds this thread's event loop); a
screenshot goes to tests/artifacts/."""

from __future__ import annotations

from blueprint_harness import channel_test_marks
from browser_harness import TIMEOUT, ServerThread, sign_in
from conftest import ARTIFACTS
from test_channel_blueprints import ADVISOR_PASSWORD

from bot import services
from channels.advisor import AdvisorConsole
from channels.whatsapp import WhatsAppChannel

pytestmark = channel_test_marks(120)


def console_thread() -> ServerThread:
    """The advisor console alone, served for the browser."""
    return ServerThread([AdvisorConsole()], name="console-server")


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
    with console_thread() as server:
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        sign_in(page, server.url, "rosa.canales", ADVISOR_PASSWORD)
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


def test_an_advisor_gives_a_case_back_and_it_waits_first_in_line_with_the_person_told(
    environment, browser, twilio_standin
):
    handoff_id = whatsapp_case_with_two_replies()
    channels = [AdvisorConsole(), WhatsAppChannel(environment.settings())]  # the notice goes out on WhatsApp
    with ServerThread(channels, name="console-server") as server:
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        sign_in(page, server.url, "rosa.canales", ADVISOR_PASSWORD)
        page.get_by_role("tab", name="En atención").click()
        page.locator("#queue li", has_text=f"#{handoff_id}").click()
        page.get_by_role("button", name="Devolver a la fila").click()
        page.get_by_text("Estado: en espera").wait_for(timeout=TIMEOUT)
        page.get_by_text("Devuelta a la fila por Rosa.").wait_for(timeout=TIMEOUT)
        page.get_by_role("button", name="Atender esta conversación").wait_for(timeout=TIMEOUT)
    (told,) = [r for r in twilio_standin.accepted("whatsapp:+51987654321") if "Otro(a) asesor(a)" in r.params["Body"]]
    assert services.handoff_desk().store.get(handoff_id).state == "waiting"
