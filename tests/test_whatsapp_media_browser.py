"""A person's WhatsApp files in the advisor console, in a real headless Chromium (issue 16, point
5): nothing is fetched until the advisor presses «Ver imagen», then the console gets it with its
token through Sanic's own server and shows it in the page (the page's CSP allows blob: images and
audio only). A screenshot goes to tests/artifacts/."""

from __future__ import annotations

import struct
import zlib

from blueprint_harness import channel_test_marks
from browser_harness import TIMEOUT, sign_in
from conftest import ARTIFACTS
from test_channel_blueprints import ADVISOR_PASSWORD
from test_whatsapp_console_browser import console_thread

from bot import services

pytestmark = channel_test_marks(120)


def png(width: int, height: int) -> bytes:
    """A small red PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\xa6\x19\x2e" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def wav(samples: int = 800) -> bytes:
    """A tenth of a second of silence."""
    data = b"\x00\x00" * samples
    return (
        b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, 8000, 16000, 2, 16)
        + b"data" + struct.pack("<I", len(data)) + data
    )  # fmt: skip


def test_the_console_shows_a_persons_photo_and_audio_only_when_the_advisor_opens_them(
    environment, browser, twilio_standin
):
    store = services.handoff_desk().store
    store.add_advisor("rosa.canales", ADVISOR_PASSWORD, "Rosa")
    _, rosa = store.login("rosa.canales", ADVISOR_PASSWORD)
    view = store.open("whatsapp:+51987650000", "whatsapp", "requested", 0, {}, [("person", "quiero un asesor")])
    store.claim(view.id, rosa.id)
    photo = twilio_standin.add_media(png(40, 30), "image/png")
    audio = twilio_standin.add_media(wav(), "audio/wav")
    files = [{"type": "image/png", "url": photo}, {"type": "audio/wav", "url": audio}]
    store.add_message(view.id, "person", "[envió: image/png, audio/wav]", media=files)
    before = len(twilio_standin.media_requests())

    with console_thread() as server:
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        sign_in(page, server.url, "rosa.canales", ADVISOR_PASSWORD)
        page.get_by_role("tab", name="En atención").click()
        page.locator("#queue li", has_text=f"#{view.id}").click()
        line = page.locator(".transcript li", has_text="[envió: image/png, audio/wav]")
        line.get_by_role("button", name="Ver imagen (image/png)").wait_for(timeout=TIMEOUT)
        assert len(twilio_standin.media_requests()) == before, "reading the case fetches no file"

        line.get_by_role("button", name="Ver imagen (image/png)").click()
        image = line.locator("img.media-view")
        image.wait_for(timeout=TIMEOUT)
        page.wait_for_function("() => document.querySelector('img.media-view').naturalWidth === 40", timeout=TIMEOUT)
        assert image.get_attribute("src").startswith("blob:")

        line.get_by_role("button", name="Ver audio (audio/wav)").click()
        sound = line.locator("audio.media-view")
        sound.wait_for(timeout=TIMEOUT)
        assert sound.get_attribute("src").startswith("blob:")
        page.wait_for_function("() => document.querySelector('audio.media-view').readyState >= 1", timeout=TIMEOUT)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "console-whatsapp-media.png"), full_page=True)
    assert len(twilio_standin.media_requests()) == before + 4, "each file: Twilio's address, then its storage"
    assert [a for a in store.audit_log() if a[1] == "media"] == [(rosa.id, "media", view.id)] * 2
