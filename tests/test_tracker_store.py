"""The windowed SQL tracker store: Rasa sees the recent session with current slots; nothing is lost."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3

from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, BotUttered, SessionStarted, SlotSet, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from bot import report
from bot.office_hours import OfficeHours
from bot.settings import CONTENT_DIR
from extensions.tracker_store import RECENT_EVENTS, SESSION_INDEX, TIME_INDEX, TurnLoggingSQLTrackerStore

DOMAIN = Domain.from_dict(
    {
        "intents": ["greet"],
        "slots": {
            "country": {"type": "text", "mappings": [{"type": "custom"}]},
            "topic": {"type": "text", "mappings": [{"type": "custom"}]},
        },
    }
)


def _turn(i: int) -> list:
    events = [UserUttered(f"mensaje {i}", {"name": "greet", "confidence": 1.0}), ActionExecuted("action_answer")]
    events += [BotUttered(f"respuesta {i}"), SlotSet("topic", f"tema {i}"), ActionExecuted("action_listen")]
    return events


def test_long_sessions_are_windowed_but_keep_slots_and_every_event(tmp_path):
    store = TurnLoggingSQLTrackerStore(DOMAIN, dialect="sqlite", db=str(tmp_path / "t.db"))

    async def scenario():
        tracker = await store.create_tracker("persona")
        tracker.update_with_events(
            [SessionStarted(), ActionExecuted("action_listen"), SlotSet("country", "Chile")], DOMAIN
        )
        await store.save(tracker)
        for i in range(60):  # one turn per message, each saved like Rasa does
            tracker = await store.retrieve("persona")
            tracker.update_with_events(_turn(i), DOMAIN)
            await store.save(tracker)
        return await store.retrieve("persona"), await store.retrieve_full_tracker("persona")

    recent, full = asyncio.run(scenario())
    assert len(recent.events) <= RECENT_EVENTS + 3 < len(full.events)
    assert recent.get_slot("country") == "Chile"  # set long before the window
    assert recent.get_slot("topic") == "tema 59"
    assert recent.latest_message.text == "mensaje 59"
    assert [e.text for e in full.events if isinstance(e, UserUttered)] == [f"mensaje {i}" for i in range(60)]


def test_trackers_from_elsewhere_are_stored_without_duplicates(tmp_path):
    """Rasa creates a new conversation's tracker itself, and the advisor side saves full trackers."""
    store = TurnLoggingSQLTrackerStore(DOMAIN, dialect="sqlite", db=str(tmp_path / "t.db"))

    async def scenario():
        created = DialogueStateTracker("nueva", DOMAIN.slots)  # as Rasa's create_tracker builds it
        created.update_with_events([ActionExecuted("action_listen")], DOMAIN)
        await store.save(created)
        tracker = await store.retrieve("nueva")
        tracker.update_with_events(_turn(0), DOMAIN)
        await store.save(tracker)
        full = await store.retrieve_full_tracker("nueva")
        full.update_with_events([BotUttered("mensaje del asesor")], DOMAIN)
        await store.save(full)
        return await store.retrieve_full_tracker("nueva")

    stored = asyncio.run(scenario())
    kinds = [type(event).__name__ for event in stored.events]
    assert kinds == [
        "ActionExecuted",
        "UserUttered",
        "ActionExecuted",
        "BotUttered",
        "SlotSet",
        "ActionExecuted",
        "BotUttered",
    ]
    assert stored.events[-1].text == "mensaje del asesor"


def query_plan(path, engine, query) -> list[str]:
    """SQLite's plan for `query`, one line per step ("SEARCH … USING INDEX …" or "SCAN …")."""
    compiled = query.compile(dialect=engine.dialect, compile_kwargs={"render_postcompile": True})
    rows = sqlite3.connect(path).execute(f"EXPLAIN QUERY PLAN {compiled}", [None] * len(compiled.positiontup))
    return [row[3] for row in rows]


def test_session_lookups_seek_an_index_instead_of_reading_the_whole_conversation(tmp_path):
    path = tmp_path / "t.db"
    store = TurnLoggingSQLTrackerStore(DOMAIN, dialect="sqlite", db=str(path))
    TurnLoggingSQLTrackerStore(DOMAIN, dialect="sqlite", db=str(path))  # a second replica on the same database

    def plan(query) -> list[str]:
        return query_plan(path, store.engine, query)

    session_start = f"INDEX {SESSION_INDEX} (sender_id=? AND type_name=?)"
    slots_before_window = f"INDEX {SESSION_INDEX} (sender_id=? AND type_name=? AND id>? AND id<?)"
    window, head = plan(store._reads.window), plan(store._reads.head)
    assert any(session_start in step for step in window), window
    assert any(session_start in step for step in head) and any(slots_before_window in step for step in head), head
    assert not any(step.startswith("SCAN") for step in window + head)


def test_the_operators_figures_read_only_the_period_through_the_time_index(tmp_path):
    path = tmp_path / "t.db"
    store = TurnLoggingSQLTrackerStore(DOMAIN, dialect="sqlite", db=str(path))
    span = report.period(
        dt.date(2026, 11, 1),
        dt.date(2026, 11, 30),
        dt.datetime.now(dt.timezone.utc),
        OfficeHours.load(CONTENT_DIR / "office_hours.yml"),
    )
    for kinds in (("user", "slot"), ("user", "bot", "slot")):
        steps = query_plan(path, store.engine, report.events_between(span, kinds))
        assert any(f"INDEX {TIME_INDEX} (timestamp>? AND timestamp<?)" in step for step in steps), steps
        assert not any(step.startswith("SCAN") for step in steps), steps
