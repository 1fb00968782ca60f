"""The supervisors' dashboard in a real headless Chromium, without a model: the console and the
dashboard served in-process on a local port (a thread of its own: Playwright's sync API holds this
thread's event loop), December 2026's seeded figures, and a screenshot in tests/artifacts/."""

from __future__ import annotations

import asyncio
import threading
from urllib.parse import urlparse

import pytest
from blueprint_harness import served
from conftest import ARTIFACTS
from test_dashboard import ENTRY, PASSWORD, var_dir  # noqa: F401 (a fixture)
from test_report import ANDEAN

from bot import services
from channels.advisor import AdvisorConsole
from channels.dashboard import AdvisorDashboard

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.filterwarnings("ignore:You have set a listener:UserWarning"),
]
TIMEOUT = 15_000


class ServerThread:
    """The blueprints on Sanic's own server, in a thread with its own event loop."""

    def __init__(self) -> None:
        self.url = ""
        self.ready, self.stopping = threading.Event(), threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="dashboard-server", daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        if not self.ready.wait(30) or self.error:
            raise RuntimeError("the dashboard server did not start") from self.error
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
        async with served([AdvisorConsole(), AdvisorDashboard()], real_port=True) as app:
            self.url = app.url
            self.ready.set()
            while not self.stopping.is_set():
                await asyncio.sleep(0.05)


def sign_in(context, url: str, username: str):
    """Sign in on the console, as an advisor does; the dashboard reuses its token."""
    page = context.new_page()
    page.goto(f"{url}/advisor/")
    page.get_by_label("Usuario").fill(username)
    page.get_by_label("Contraseña").fill(PASSWORD)
    page.get_by_role("button", name="Ingresar").click()
    page.locator("#queue li").first.wait_for(timeout=TIMEOUT)
    return page


def test_a_supervisor_sees_the_charts_and_downloads_the_csv(var_dir, browser):  # noqa: F811
    with ServerThread() as server:
        context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        page = sign_in(context, server.url, "sara.supervisora")
        requests: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        page.get_by_role("link", name="Panel de indicadores").click()  # the console leads supervisors there
        page.wait_for_url(f"{server.url}/advisor/dashboard/")
        page.get_by_label("Desde").fill("2026-12-01")
        page.get_by_label("Hasta").fill("2026-12-02")
        page.get_by_role("button", name="Ver").click()
        page.get_by_text("Del 01/12/2026 al 02/12/2026").wait_for(timeout=TIMEOUT)
        charts = page.locator("#charts svg[role=img]")
        assert charts.count() == 5
        assert page.get_by_role("img", name="Conversaciones por día y canal").is_visible()
        assert page.locator(".kpi", has_text="Satisfacción").inner_text().count("4,00") == 1
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "advisor-dashboard.png"), full_page=True)

        with page.expect_download(timeout=TIMEOUT) as download:
            page.get_by_role("button", name="Descargar CSV").click()
        exported = download.value
        assert exported.suggested_filename == "indicadores-som-2026-12-01-2026-12-02.csv"
        assert "conversaciones_por_dia,2026-12-01,telegram,1" in open(exported.path(), encoding="utf-8").read()

        # Review: the not-understood message is listed; say which entry should have answered it.
        turn = page.locator("#turns li").filter(has_text=ANDEAN)
        turn.get_by_label("Respuesta que debió dar (identificador)").fill(ENTRY)
        turn.get_by_label("Comentario para los editores").fill("era la constancia andina")
        turn.get_by_role("button", name="Marcar como incorrecta").click()
        turn.get_by_text(f"Revisión guardada: debió responder {ENTRY}.").wait_for(timeout=TIMEOUT)
        page.screenshot(path=str(ARTIFACTS / "advisor-dashboard-review.png"), full_page=True)
        origin = urlparse(server.url).netloc
        assert {urlparse(url).netloc for url in requests if url.startswith("http")} == {origin}, "no CDN"
        context.close()
    (review,) = services.handoff_desk().store.reviews()
    assert (review["person_text"], review["expected_entry"], review["supervisor"]) == (ANDEAN, ENTRY, "Sara")


def test_other_advisors_and_strangers_are_told_what_to_do(var_dir, browser):  # noqa: F811
    with ServerThread() as server:
        context = browser.new_context()
        page = sign_in(context, server.url, "rosa.canales")
        assert not page.get_by_role("link", name="Panel de indicadores").is_visible()
        page.goto(f"{server.url}/advisor/dashboard/")
        page.get_by_role("status").filter(has_text="no tiene el rol de supervisor").wait_for(timeout=TIMEOUT)
        assert page.locator("#charts svg").count() == 0
        context.close()

        stranger = browser.new_context().new_page()
        stranger.goto(f"{server.url}/advisor/dashboard/")
        stranger.get_by_text("ingrese primero en la consola de asesores").wait_for(timeout=TIMEOUT)
        stranger.context.close()
