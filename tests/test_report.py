"""The SOM's figures (bot/report.py) on a seeded hand-off store and a tracker written by Rasa's own
SQL tracker store, and the `python -m bot report` command.

Every moment is explicit: nothing here depends on today's date (the suite also runs under faketime)."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
from concurrent.futures import ThreadPoolExecutor
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from production_stores import tracker_store
from rasa.shared.core.events import BotUttered, SlotSet, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from bot import report
from bot.database import engine_for
from bot.handoff import HandoffStore
from bot.office_hours import OfficeHours
from bot.settings import CONTENT_DIR, Settings
from ops import cli

LIMA = ZoneInfo("America/Lima")
HOURS = OfficeHours.load(CONTENT_DIR / "office_hours.yml")  # Mon–Fri 08:30–16:30, 8 and 9 Dec holidays
NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=LIMA)
ANDEAN = "soy boliviano y trabajo en puno, que papeles necesito"
HUH = "¿Quiso decir…?"
WEB_CHAT_ID = "2f1e3c5a-8d4b-4e6f-9a7b-1c2d3e4f5a6b"


def lima(day: int, hour: int, minute: int = 0, month: int = 12) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, minute, tzinfo=LIMA)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> dt.datetime:
        return self.now


def _run(coroutine):
    """On a thread of its own: in the browser tests Playwright's sync API holds this thread's loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def say(
    settings: Settings,
    sender: str,
    at: dt.datetime,
    channel: str,
    *slots: tuple[str, object],
    text: str = "…",
    answer: str = "Respuesta",
) -> None:
    """One message, the answer and the slots the assistant set, stored by Rasa's SQL tracker store."""
    trackers = tracker_store(settings)
    tracker = _run(trackers.retrieve(sender)) or DialogueStateTracker(sender, slots=[])
    tracker.update(UserUttered(text, timestamp=at.timestamp(), input_channel=channel))
    tracker.update(BotUttered(answer, timestamp=at.timestamp() + 0.5))
    for offset, (name, value) in enumerate(slots, 1):
        tracker.update(SlotSet(name, value, timestamp=at.timestamp() + offset))
    _run(trackers.save(tracker))
    trackers.engine.dispose()


def seed_conversations(settings: Settings) -> None:
    say(settings, "whatsapp:+51900000001", lima(1, 10), "whatsapp", ("topic", "work_abroad"), ("country", "España"))
    say(
        settings, "whatsapp:+51900000001", lima(1, 10, 1), "whatsapp", ("fallback_streak", 1.0), text=ANDEAN, answer=HUH
    )
    say(settings, "whatsapp:+51900000001", lima(1, 10, 2), "whatsapp", ("fallback_streak", 0.0))
    # 23:30 in Lima is already 2 December in UTC: it counts on the 1st.
    say(settings, "telegram:77", lima(1, 23, 30), "telegram", ("topic", "work_abroad"), ("fallback_streak", 1.0))
    say(settings, "telegram:77", lima(1, 23, 31), "telegram", ("fallback_streak", 2.0))
    say(settings, WEB_CHAT_ID, lima(2, 12), "socketio", ("country", "Chile"), ("topic", "return_to_peru"))
    # Outside the period: the evening before, and the day after.
    say(settings, "rest:antes", lima(30, 23, month=11), "rest", ("topic", "foreigners_in_peru"))
    say(settings, "rest:despues", lima(3, 0, 30), "rest", ("country", "Chile"))


def seed_handoffs(store: HandoffStore, clock: Clock, advisor_id: int) -> None:
    def at(moment: dt.datetime) -> None:
        clock.now = moment

    def opened(conversation: str, reason: str, moment: dt.datetime, mode: str = "live") -> int:
        at(moment)
        return store.open(conversation, "whatsapp", reason, int(reason == "sensitive"), {}, [], mode=mode).id

    first = opened("whatsapp:+51900000001", "requested", lima(1, 10))
    at(lima(1, 10, 12))
    store.claim(first, advisor_id)  # 12 minutes
    store.add_message(first, "advisor", "Hola, le atiende Rosa", advisor_id)
    at(lima(1, 10, 30))
    store.close(first, advisor_id)
    store.rate(first, 5)

    second = opened("whatsapp:+51900000002", "sensitive", lima(1, 16, 20))
    at(lima(2, 8, 40))
    store.claim(second, advisor_id)  # 10 minutes on Tuesday, 10 on Wednesday
    store.close(second, advisor_id)
    store.rate(second, 3)

    third = opened("whatsapp:+51900000003", "not_understood", lima(2, 9))
    at(lima(2, 9, 5))
    store.cancel(third)  # left after 5 minutes, nobody came
    opened("whatsapp:+51900000004", "requested", lima(2, 11), mode="message")  # left no message
    opened("whatsapp:+51900000005", "requested", lima(2, 11, 30))  # still in the queue
    opened("whatsapp:+51900000006", "requested", lima(30, 12, month=11))  # before the period


def seed_more_advisors(store: HandoffStore, clock: Clock, luis: str = "Luis") -> None:
    """Two more advisors on 2 December: Luis attends two hand-offs (one closed and never rated, one
    still in attention), Ana one (rated 4); the one Luis takes on the 3rd is after the period."""

    def advisor(username: str, name: str) -> int:
        store.add_advisor(username, "clave-de-prueba-456", name)
        return store.login(username, "clave-de-prueba-456")[1].id

    def attended(number: int, opened: dt.datetime, claimed: dt.datetime, advisor_id: int) -> int:
        clock.now = opened
        handoff = store.open(f"whatsapp:+5190000010{number}", "whatsapp", "requested", 0, {}, []).id
        clock.now = claimed
        store.claim(handoff, advisor_id)
        return handoff

    luis_id, ana_id = advisor("luis.quispe", luis), advisor("ana.flores", "Ana")
    store.close(attended(1, lima(2, 10), lima(2, 10, 4), luis_id), luis_id)  # 4 minutes
    attended(2, lima(2, 14), lima(2, 14, 10), luis_id)  # 10 minutes, still open
    ana = attended(3, lima(2, 15), lima(2, 15, 30), ana_id)  # 30 minutes
    store.close(ana, ana_id)
    store.rate(ana, 4)
    attended(4, lima(3, 9), lima(3, 9, 1), luis_id)  # the day after the period


@pytest.fixture
def seeded(tmp_path):
    settings = Settings.from_env({"SOM_VAR_DIR": str(tmp_path)})
    clock = Clock()
    store = HandoffStore(settings.handoff_database_url, clock=clock)
    store.add_advisor("rosa.canales", "clave-de-prueba-456", "Rosa")
    advisor_id = store.login("rosa.canales", "clave-de-prueba-456")[1].id
    seed_conversations(settings)
    seed_handoffs(store, clock, advisor_id)
    trackers = engine_for(settings.tracker_database_url)
    yield settings, store, trackers
    trackers.dispose()
    store.engine.dispose()


def december_figures(store: HandoffStore, trackers: sa.engine.Engine) -> report.Figures:
    span = report.period(dt.date(2026, 12, 1), dt.date(2026, 12, 2), NOW, HOURS)
    return report.figures(store, trackers, HOURS, span, NOW)


def test_conversation_figures_come_from_the_trackers_messages_and_slots(seeded):
    _, store, trackers = seeded
    figures = december_figures(store, trackers)
    assert figures.conversations_by_day == {
        dt.date(2026, 12, 1): {"telegram": 1, "whatsapp": 1},
        dt.date(2026, 12, 2): {"socketio": 1},
    }
    assert figures.conversations == 3
    assert (figures.turns, figures.fallback_turns, figures.fallback_rate) == (6, 3, 0.5)
    assert figures.topics == [("work_abroad", 2), ("return_to_peru", 1)]
    assert figures.countries == [("Chile", 1), ("España", 1)]


def test_handoff_figures_count_office_hours_only(seeded):
    _, store, trackers = seeded
    figures = december_figures(store, trackers)
    assert figures.handoffs_by_reason == {"requested": 3, "sensitive": 1, "not_understood": 1}
    assert figures.waiting == report.Durations(count=3, median=12.0, p90=20.0)
    assert figures.first_response == report.Durations(count=2, median=16.0, p90=20.0)
    assert (figures.cancelled_unattended, figures.expired_unattended, figures.still_waiting) == (1, 1, 1)
    assert figures.abandoned == 2
    assert (figures.ratings[5], figures.ratings[3], figures.rated, figures.closed) == (1, 1, 2, 2)
    assert figures.satisfaction == 4.0


def test_figures_per_advisor_who_claimed_hand_offs_of_the_period(seeded):
    _, store, trackers = seeded
    seed_more_advisors(store, store.clock)
    figures = december_figures(store, trackers)
    # Most attended first; Luis and Rosa tie, then by name. Luis's hand-off of the 3rd is not counted.
    assert figures.advisors == (
        report.AdvisorFigures("Luis", 2, 1, report.Durations(count=2, median=7.0, p90=10.0), 0, None),
        report.AdvisorFigures("Rosa", 2, 2, report.Durations(count=2, median=16.0, p90=20.0), 2, 4.0),
        report.AdvisorFigures("Ana", 1, 1, report.Durations(count=1, median=30.0, p90=30.0), 1, 4.0),
    )
    assert figures.as_json()["advisors"][0] == {
        "name": "Luis",
        "attended": 2,
        "closed": 1,
        "first_response": {"count": 2, "median_minutes": 7.0, "p90_minutes": 10.0},
        "satisfaction": {"mean": None, "rated": 0},
    }
    rows = report.csv_rows(figures)
    assert [row for row in rows if row[:2] == ("asesores", "Luis")] == [
        ("asesores", "Luis", "atendidas", 2),
        ("asesores", "Luis", "cerradas", 1),
        ("asesores", "Luis", "primera_respuesta_mediana_minutos", 7.0),
        ("asesores", "Luis", "calificaciones", 0),
        ("asesores", "Luis", "satisfaccion_promedio", ""),
    ]
    assert ("asesores", "Rosa", "satisfaccion_promedio", 4.0) in rows
    printed = report.text_report(figures)
    assert (
        "  Luis: atendidas 2, cerradas 1; primera respuesta (mediana) 7,0 min; satisfacción — de 5 (calificaciones: 0)"
        in printed
    )
    assert "  Ana: atendidas 1, cerradas 1; primera respuesta (mediana) 30,0 min; satisfacción 4,00 de 5" in printed


def test_turns_to_review_are_the_not_understood_ones_newest_first(seeded):
    _, _, trackers = seeded
    span = report.period(dt.date(2026, 12, 1), dt.date(2026, 12, 2), NOW, HOURS)
    found = report.recent_turns(trackers, span)
    assert [(t.conversation_id, t.person, t.assistant) for t in found[-1:]] == [
        ("whatsapp:+51900000001", ANDEAN, [HUH])
    ]
    assert [t.conversation_id for t in found] == ["telegram:77", "telegram:77", "whatsapp:+51900000001"]
    every = report.recent_turns(trackers, span, only_not_understood=False)
    assert len(every) == 6 and every[0].conversation_id == WEB_CHAT_ID


def test_office_seconds_skip_nights_weekends_and_holidays():
    friday_evening, monday_morning = lima(4, 16, 20), lima(7, 8, 40)
    assert report.office_seconds(HOURS, friday_evening, monday_morning) == 20 * 60
    # Monday 7 December 16:00 to Thursday 10 at 09:00: the 8th and 9th are holidays.
    assert report.office_seconds(HOURS, lima(7, 16), lima(10, 9)) == 60 * 60
    assert report.office_seconds(HOURS, lima(5, 10), lima(6, 10)) == 0  # a weekend
    assert report.office_seconds(HOURS, lima(7, 10), lima(7, 9)) == 0


def test_an_empty_period_and_a_missing_tracker_table_give_zeros_not_errors(tmp_path):
    settings = Settings.from_env({"SOM_VAR_DIR": str(tmp_path)})
    store = HandoffStore(settings.handoff_database_url)
    trackers = engine_for(settings.tracker_database_url)
    figures = report.figures(store, trackers, HOURS, report.period(dt.date(2026, 12, 1), None, NOW, HOURS), NOW)
    assert figures.until == dt.date(2026, 12, 3)  # today in Lima, as of NOW
    assert (figures.conversations, figures.fallback_rate, figures.satisfaction) == (0, None, None)
    assert figures.advisors == () and figures.as_json()["advisors"] == []
    assert "Conversaciones: 0" in report.text_report(figures)
    assert "Atención por asesor(a):\n  Sin derivaciones atendidas en el periodo." in report.text_report(figures)
    assert not [row for row in report.csv_rows(figures) if row[0] == "asesores"]
    with pytest.raises(report.PeriodError):
        report.period(dt.date(2026, 12, 2), dt.date(2026, 12, 1), NOW, HOURS)


def test_report_command_prints_spanish_and_writes_the_csv(seeded, monkeypatch, capsys, tmp_path):
    settings, _, _ = seeded
    for name in ("DATABASE_URL", "SOM_OFFICE_HOURS_FILE", "SOM_CONTENT_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SOM_VAR_DIR", str(settings.var_dir))
    out = tmp_path / "informe.csv"
    code = cli.main(
        ["report", "--since", "2026-12-01", "--until", "2026-12-02", "--csv", str(out), "--now", NOW.isoformat()]
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert "Informe del 2026-12-01 al 2026-12-02" in printed
    assert "No entendidos" in printed and "50,0 %" in printed
    assert "situación sensible: 1" in printed
    assert "mediana 12,0 min" in printed
    rows = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert rows[0] == list(report.CSV_HEADER)
    assert ["conversaciones_por_dia", "2026-12-01", "telegram", "1"] in rows
    assert ["derivaciones", "sensitive", "situación sensible", "1"] in rows
    assert ["satisfaccion", "promedio", "", "4.0"] in rows
    assert "  Rosa: atendidas 2, cerradas 2; primera respuesta (mediana) 16,0 min; satisfacción 4,00 de 5" in printed
    assert ["asesores", "Rosa", "atendidas", "2"] in rows

    assert cli.main(["report", "--since", "2026-12-02", "--until", "2026-12-01"]) == 2
    assert "anterior" in capsys.readouterr().err


def test_the_csv_never_holds_a_formula():
    figures = report.Figures(since=dt.date(2026, 12, 1), until=dt.date(2026, 12, 1), countries=[("=HYPERLINK(1)", 1)])
    assert ["paises", "'=HYPERLINK(1)", "", "1"] in list(csv.reader(io.StringIO(report.csv_text(figures))))
