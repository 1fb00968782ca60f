"""Channel blueprints for a real headless Chromium: served on Sanic's own server on a local port, in
a thread of its own (Playwright's sync API holds the test thread's event loop), and the advisor
console's sign-in as an advisor does it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable

from blueprint_harness import served
from rasa.core.channels.channel import InputChannel

TIMEOUT = 15_000  # milliseconds, for Playwright's waits


class ServerThread:
    """`channels` on Sanic's own server, in a thread with its own event loop; `url` once entered."""

    def __init__(self, channels: Iterable[InputChannel], name: str = "blueprint-server") -> None:
        self.channels = list(channels)
        self.url = ""
        self.ready, self.stopping = threading.Event(), threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        if not self.ready.wait(30) or self.error:
            raise RuntimeError(f"the server ({self.thread.name}) did not start") from self.error
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
        async with served(self.channels, real_port=True) as app:
            self.url = app.url
            self.ready.set()
            while not self.stopping.is_set():
                await asyncio.sleep(0.05)


def sign_in(page, url: str, username: str, password: str):
    """Sign in on the advisor console at `url`, as an advisor does; returns `page`."""
    page.goto(f"{url}/advisor/")
    page.get_by_label("Usuario").fill(username)
    page.get_by_label("Contraseña").fill(password)
    page.get_by_role("button", name="Ingresar").click()
    return page
