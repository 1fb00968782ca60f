"""The supervisors' dashboard in a real headless Chromium, without a model: the console and the
dashboard served in-process on a local port (a thread of its own: Playwright's sync API holds this
thread's event loop), December 2026's seeded figures, and a screenshot in tests/artifacts/."""

from __future__ import annotations

from urllib.parse import urlparse

import browser_harness
from blueprint_harness import channel_test_marks
from browser_harness import TIMEOUT, ServerThread
from conftest import ARTIFACTS
from test_dashboard import ENTRY, PASSWORD, var_dir  # noqa: F401 (a fixture)
from test_report import ANDEAN

from bot import services
from channels.advisor import AdvisorConsole
from channels.dashboard import AdvisorDashboard

pytestmark = channel_test_marks(180)


def dashboard_thread() -> ServerThread:
    """The console and the dashboard, served for the browser."""
    return ServerThread([AdvisorConsole(), AdvisorDashboard()], name="dashboard-server")


def sign_in(context, url: str, username: str):
    """Sign in on the console, as an advisor does; the dashboard reuses its token."""
    page = browser_harness.sign_in(context.new_page(), url, username, PASSWORD)
    page.locator("#queue li").first.wait_for(timeout=TIMEOUT)
    return page


def test_a_supervisor_sees_the_charts_and_downloads_the_csv(var_dir, browser):  # noqa: F811
    with dashboard_thread() as server:
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
        # The supervisor picks it by the title the assistant shows; the editors get its identifier.
        title = services.knowledge_base().current().entry(ENTRY).title
        assert page.locator(f'#entry-titles option[value="{title}"]').count() == 1
        turn = page.locator("#turns li").filter(has_text=ANDEAN)
        turn.get_by_label("Respuesta que debió dar").fill(title)
        turn.get_by_label("Comentario para los editores").fill("era la constancia andina")
        turn.get_by_role("button", name="Marcar como incorrecta").click()
        turn.get_by_text(f"Revisión guardada: debió responder «{title}».").wait_for(timeout=TIMEOUT)
        page.screenshot(path=str(ARTIFACTS / "advisor-dashboard-review.png"), full_page=True)
        # A quick period: last month, in Lima's calendar.
        page.get_by_role("button", name="Mes anterior").click()
        first, last = page.get_by_label("Desde").input_value(), page.get_by_label("Hasta").input_value()
        assert first.endswith("-01") and first[:7] == last[:7] and last < page.evaluate("limaToday()")
        page.get_by_text(f"Del {first[8:]}/{first[5:7]}/{first[:4]} al ").wait_for(timeout=TIMEOUT)
        origin = urlparse(server.url).netloc
        assert {urlparse(url).netloc for url in requests if url.startswith("http")} == {origin}, "no CDN"
        context.close()
    (review,) = services.handoff_desk().store.reviews()
    assert (review["person_text"], review["expected_entry"], review["supervisor"]) == (ANDEAN, ENTRY, "Sara")


def test_other_advisors_and_strangers_are_told_what_to_do(var_dir, browser):  # noqa: F811
    with dashboard_thread() as server:
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
