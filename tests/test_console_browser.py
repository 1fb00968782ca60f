"""The advisor console in a real headless Chromium: live queue, transcript, and inert hostile text."""

from __future__ import annotations

import pytest
from conftest import ARTIFACTS

from bot.handoff import HandoffStore

pytestmark = pytest.mark.model
HOSTILE = ["<script>window.__pwned = 1</script>", "<img src=x onerror=window.__pwned=2>"]


@pytest.fixture(scope="module")
def console_page(assistant, browser):
    HandoffStore(assistant.settings.handoff_database_url).add_advisor("rosa.navegador", "clave-de-prueba-456", "Rosa")
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{assistant.url}/advisor/")
    page.get_by_label("Usuario").fill("rosa.navegador")
    page.get_by_label("Contraseña").fill("clave-de-prueba-456")
    page.get_by_role("button", name="Ingresar").click()
    page.locator("#queue li").first.wait_for()  # the first poll has rendered the queue
    yield page
    context.close()


def test_new_hand_off_appears_without_reloading_and_hostile_text_stays_inert(assistant, console_page):
    page = console_page
    person = assistant.new()
    person.say("quiero hablar con un asesor")
    for text in HOSTILE:
        person.say(text)
    page.get_by_role("status").filter(has_text="Nueva conversación en espera").wait_for(timeout=15000)

    item = page.locator("#queue li").filter(has_text="Pidió un asesor").last
    item.click()
    transcript = page.get_by_role("list", name="Conversación")
    for text in HOSTILE:
        transcript.get_by_text(text, exact=True).wait_for(timeout=10000)
    assert page.evaluate("window.__pwned") is None
    assert transcript.locator("img, script").count() == 0

    page.get_by_role("button", name="Atender esta conversación").click()
    page.get_by_label("Respuesta para la persona").fill("Hola, le atiende Rosa")
    page.get_by_role("button", name="Enviar").click()
    transcript.get_by_text("Hola, le atiende Rosa").wait_for(timeout=10000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "advisor-console.png"), full_page=True)
    page.get_by_role("button", name="Cerrar conversación").click()
    page.get_by_text("Estado: cerrada").wait_for(timeout=10000)
    assert "Gracias por su calificación" in person.say_text("5")
