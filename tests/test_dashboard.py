"""The supervisors' dashboard (channels/dashboard.py) in-process, without a model: who may read it,
the figures as JSON, charts and CSV, and the review of answers; `python -m bot review export` and
the supervisor role from the command line.

The figures are seeded as in tests/test_report.py, in December 2026, and every request names its
period: nothing depends on today's date."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterator

import pytest
import yaml
from blueprint_harness import channel_test_marks, in_event_loop, served
from test_report import ANDEAN, HUH, Clock, seed_conversations, seed_handoffs, seed_more_advisors

from bot import services
from bot.handoff import HandoffStore
from bot.report import Figures
from bot.settings import Settings
from channels.advisor import AdvisorConsole
from channels.dashboard import AdvisorDashboard, bars, render
from ops import cli

pytestmark = channel_test_marks(90)
PASSWORD = "clave-de-prueba-456"
UNSET = ("DATABASE_URL", "REDIS_URL", "SOM_CONTENT_DIR", "SOM_OFFICE_HOURS_FILE", "TRUSTED_PROXIES")
DECEMBER = "since=2026-12-01&until=2026-12-02"
DASHBOARD = "/advisor/dashboard"
ENTRY = "andean.general"


def forget_services() -> None:
    services.settings.cache_clear()
    services.handoff_desk.cache_clear()


@pytest.fixture
def var_dir(tmp_path, monkeypatch) -> Iterator[Settings]:
    """A fresh var dir with a supervisor (Sara), an advisor (Rosa) and December's data."""
    for name in UNSET:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SOM_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("HANDOFF_SWEEP_SECONDS", "3600")
    forget_services()
    settings = Settings.from_env()
    settings.var_dir.mkdir(parents=True)
    clock = Clock()
    store = HandoffStore(settings.handoff_database_url, clock=clock)
    store.add_advisor("sara.supervisora", PASSWORD, "Sara")
    store.add_advisor("rosa.canales", PASSWORD, "Rosa")
    store.set_supervisor("sara.supervisora")
    seed_conversations(settings)
    seed_handoffs(store, clock, store.login("rosa.canales", PASSWORD)[1].id)
    store.engine.dispose()
    yield settings
    forget_services()


async def token_of(app, username: str) -> str:
    answer = await app.client.post("/advisor/api/login", json={"username": username, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return answer.json()["token"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@in_event_loop
async def test_only_supervisors_read_the_figures(var_dir):
    async with served([AdvisorConsole(), AdvisorDashboard()]) as app:
        rosa, sara = await token_of(app, "rosa.canales"), await token_of(app, "sara.supervisora")
        for path in ("/api/figures", "/api/charts", "/api/export.csv", "/api/reviews"):
            assert (await app.client.get(DASHBOARD + path)).status_code == 401
            assert (await app.client.get(DASHBOARD + path, headers=bearer("made-up"))).status_code == 401
            refused = await app.client.get(f"{DASHBOARD}{path}?{DECEMBER}", headers=bearer(rosa))
            assert refused.status_code == 403 and "supervisores" in refused.json()["error"]
        answer = await app.client.get(f"{DASHBOARD}/api/figures?{DECEMBER}", headers=bearer(sara))
        page = await app.client.get(f"{DASHBOARD}/")
        script = await app.client.get(f"{DASHBOARD}/static/dashboard.js")
        outside = await app.client.get(f"{DASHBOARD}/static/..%2F..%2Fdashboard.py")
        console = await app.client.get("/advisor/")
    assert answer.status_code == 200
    figures = answer.json()
    assert (figures["since"], figures["until"], figures["conversations"]) == ("2026-12-01", "2026-12-02", 3)
    assert figures["fallback_rate"] == 0.5
    assert figures["handoffs_by_reason"] == {"requested": 3, "sensitive": 1, "not_understood": 1}
    assert figures["waiting"] == {"count": 3, "median_minutes": 12.0, "p90_minutes": 20.0}
    assert figures["abandoned"] == {"total": 2, "cancelled": 1, "expired": 1}
    assert figures["satisfaction"]["mean"] == 4.0
    assert page.status_code == 200 and "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert script.status_code == 200 and outside.status_code == 404
    assert console.status_code == 200, "the console keeps its own page"
    audit = [action for _, action, _ in services.handoff_desk().store.audit_log()]
    assert "dashboard" in audit and "dashboard_refused" in audit


@in_event_loop
async def test_charts_are_inline_svg_and_the_csv_downloads(var_dir):
    async with served([AdvisorConsole(), AdvisorDashboard()]) as app:
        sara = bearer(await token_of(app, "sara.supervisora"))
        charts = await app.client.get(f"{DASHBOARD}/api/charts?{DECEMBER}", headers=sara)
        exported = await app.client.get(f"{DASHBOARD}/api/export.csv?{DECEMBER}", headers=sara)
        wrong = await app.client.get(f"{DASHBOARD}/api/figures?since=ayer", headers=sara)
        backwards = await app.client.get(f"{DASHBOARD}/api/figures?since=2026-12-02&until=2026-12-01", headers=sara)
        default = await app.client.get(f"{DASHBOARD}/api/figures", headers=sara)
        turns = (await app.client.get(f"{DASHBOARD}/api/turns?{DECEMBER}", headers=sara)).json()["turns"]
        every = (await app.client.get(f"{DASHBOARD}/api/turns?{DECEMBER}&all=1", headers=sara)).json()["turns"]
        entries = (await app.client.get(f"{DASHBOARD}/api/entries", headers=sara)).json()["entries"]
    assert charts.status_code == 200 and charts.headers["content-type"].startswith("text/html")
    assert charts.text.count("<svg") == 5 and "<script" not in charts.text
    assert "Conversaciones por día y canal" in charts.text and "Situación sensible" in charts.text
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    assert 'filename="indicadores-som-2026-12-01-2026-12-02.csv"' in exported.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(exported.text)))
    assert ["conversaciones_por_dia", "2026-12-02", "socketio", "1"] in rows
    assert wrong.status_code == 400 and backwards.status_code == 400
    assert [t["not_understood"] for t in turns] == [True] * 3 and len(every) == 6
    assert turns[-1]["person"] == ANDEAN and turns[-1]["assistant"] == HUH
    assert {"id": ENTRY, "title": "Trabajador de la Comunidad Andina"} in entries
    assert default.status_code == 200
    period = default.json()
    assert period["since"] < period["until"]


@in_event_loop
async def test_the_charts_hold_a_table_per_advisor_with_names_escaped(var_dir):
    store = HandoffStore(var_dir.handoff_database_url, clock=Clock())
    seed_more_advisors(store, store.clock, luis="<b>Luis</b>")
    store.engine.dispose()
    async with served([AdvisorConsole(), AdvisorDashboard()]) as app:
        sara = bearer(await token_of(app, "sara.supervisora"))
        charts = (await app.client.get(f"{DASHBOARD}/api/charts?{DECEMBER}", headers=sara)).text
        figures = (await app.client.get(f"{DASHBOARD}/api/figures?{DECEMBER}", headers=sara)).json()
    assert '<h2 id="advisors-title">Atención por asesor(a)</h2>' in charts
    table = charts[charts.index('<table class="advisors" aria-labelledby="advisors-title">') :]
    assert "<b>" not in table and "&lt;b&gt;Luis&lt;/b&gt;" in table
    rows = table[table.index("<tbody>") + len("<tbody>") : table.index("</tbody>")].split("</tr>")[:-1]
    assert rows == [
        '<tr><th scope="row">&lt;b&gt;Luis&lt;/b&gt;</th><td>2</td><td>1</td><td>7,0 min</td><td>—</td><td>0</td>',
        '<tr><th scope="row">Rosa</th><td>2</td><td>2</td><td>16,0 min</td><td>4,00 / 5</td><td>2</td>',
        '<tr><th scope="row">Ana</th><td>1</td><td>1</td><td>30,0 min</td><td>4,00 / 5</td><td>1</td>',
    ]
    assert [(a["name"], a["attended"], a["satisfaction"]["rated"]) for a in figures["advisors"]] == [
        ("<b>Luis</b>", 2, 0),
        ("Rosa", 2, 2),
        ("Ana", 1, 1),
    ]


def test_a_period_without_attended_hand_offs_says_so():
    page = render(Figures(since=dt.date(2026, 12, 1), until=dt.date(2026, 12, 1)), {})
    assert "Atención por asesor(a)" in page and "<table" not in page
    assert '<p class="empty">Sin derivaciones atendidas en el periodo.</p>' in page


def test_text_from_conversations_is_escaped_in_the_charts():
    hostile = "<script>alert(1)</script>"
    drawn = bars("Países", [(hostile, 2)])
    assert "<script>" not in drawn and "&lt;script&gt;" in drawn
    figures = Figures(since=dt.date(2026, 12, 1), until=dt.date(2026, 12, 1), countries=[(hostile, 1)])
    assert "<script>" not in render(figures, {})


@in_event_loop
async def test_a_supervisor_reviews_an_answer_and_the_editors_get_examples(var_dir, tmp_path, capsys):
    review = {
        "conversation_id": "whatsapp:+51900000001",
        "person_text": ANDEAN,
        "assistant_text": "¿Quiso decir…?",
        "expected_entry": ENTRY,
        "comment": "debió reconocer al trabajador andino",
    }
    async with served([AdvisorConsole(), AdvisorDashboard()]) as app:
        sara, rosa = bearer(await token_of(app, "sara.supervisora")), bearer(await token_of(app, "rosa.canales"))
        assert (await app.client.post(f"{DASHBOARD}/api/reviews", json=review, headers=rosa)).status_code == 403
        bad = await app.client.post(
            f"{DASHBOARD}/api/reviews", json={**review, "expected_entry": "no.existe"}, headers=sara
        )
        empty = await app.client.post(f"{DASHBOARD}/api/reviews", json={**review, "person_text": " "}, headers=sara)
        made = await app.client.post(f"{DASHBOARD}/api/reviews", json=review, headers=sara)
        listed = (await app.client.get(f"{DASHBOARD}/api/reviews", headers=sara)).json()["reviews"]
    assert (bad.status_code, empty.status_code, made.status_code) == (400, 400, 201)
    assert [(r["expected_entry"], r["supervisor"]) for r in listed] == [(ENTRY, "Sara")]

    out = tmp_path / "revision"
    assert cli.main(["review", "export", "--out", str(out)]) == 0
    assert "1 revisión" in capsys.readouterr().out
    nlu = yaml.safe_load((out / "nlu_reviews.yml").read_text(encoding="utf-8"))
    (examples,) = nlu["nlu"]
    assert examples["intent"] == "andean_worker"
    assert review["person_text"] in examples["examples"]
    entries = yaml.safe_load((out / "entry_questions.yml").read_text(encoding="utf-8"))
    assert entries["entries"][0]["id"] == ENTRY
    assert entries["entries"][0]["questions"] == [review["person_text"]]


def test_the_supervisor_role_from_the_command_line(var_dir, capsys):
    assert cli.main(["advisors", "promote", "rosa.canales"]) == 0
    store = services.handoff_desk().store
    rosa = store.login("rosa.canales", PASSWORD)[1]
    assert store.is_supervisor(rosa.id)
    assert cli.main(["advisors", "promote", "rosa.canales", "--revoke"]) == 0
    assert not store.is_supervisor(rosa.id)
    assert cli.main(["advisors", "promote", "nadie"]) == 1
    assert "no existe" in capsys.readouterr().err


def test_reviews_go_with_the_retention_period_and_with_the_person(tmp_path):
    clock = Clock()
    store = HandoffStore(f"sqlite:///{tmp_path / 'handoff.db'}", clock=clock)
    store.add_advisor("sara.supervisora", PASSWORD, "Sara")
    store.set_supervisor("sara.supervisora")
    sara = store.login("sara.supervisora", PASSWORD)[1].id
    store.add_review(sara, "whatsapp:+51900000001", ANDEAN, HUH, ENTRY)
    clock.now += dt.timedelta(days=10)
    store.add_review(sara, "whatsapp:+51900000002", "otra cosa", HUH, ENTRY)
    store.add_review(sara, "whatsapp:+51900000003", "y otra", HUH, ENTRY)
    assert store.purge_reviews_before(clock.now - dt.timedelta(days=1)) == 1
    assert store.forget_reviews("whatsapp:+51900000002") == 1
    assert [r["conversation_id"] for r in store.reviews()] == ["whatsapp:+51900000003"]
