"""The retention purge (Ley 29733) on real stores: what is past the period goes, the rest stays.

Every test passes its own `now`: nothing here depends on today's date."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys

import pytest
import sqlalchemy as sa
from production_stores import REDIS_URL, production, tracker_store  # noqa: F401 (a fixture)
from rasa.core.lock import Ticket, TicketLock
from rasa.shared.core.events import UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from bot import retention
from bot.handoff import AuditEntry, HandoffStore, Session
from bot.settings import PROJECT_ROOT, Settings
from integrations.redis_keys import conversation_keys
from ops import runner

NOW = dt.datetime(2031, 3, 10, 12, 0, tzinfo=dt.timezone.utc)
DAY = dt.timedelta(days=1)


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def _settings(tmp_path, **env: str) -> Settings:
    return Settings.from_env({"SOM_VAR_DIR": str(tmp_path), **env})


def _say(settings: Settings, sender: str, at: dt.datetime) -> None:
    """One message from `sender` at `at`, stored by Rasa's own SQL tracker store."""
    trackers = tracker_store(settings)
    tracker = asyncio.run(trackers.retrieve(sender)) or DialogueStateTracker(sender, slots=[])
    tracker.update(UserUttered("hola", timestamp=at.timestamp()))
    asyncio.run(trackers.save(tracker))
    trackers.engine.dispose()


def _senders(settings: Settings) -> set[str]:
    engine = sa.create_engine(settings.tracker_database_url)
    with engine.connect() as connection:
        senders = {row[0] for row in connection.execute(sa.text("SELECT DISTINCT sender_id FROM events"))}
    engine.dispose()
    return senders


def _conversations_with_handoffs(store: HandoffStore) -> set[str]:
    return {
        view.conversation_id for state in ("waiting", "active", "closed", "cancelled") for view in store.queue(state)
    }


def _closed_handoff(store: HandoffStore, clock: Clock, conversation: str, opened: dt.datetime, closed: dt.datetime):
    clock.now = opened
    view = store.open(conversation, "rest", "requested", 0, {}, [("person", "hola")])
    store.claim(view.id, 1)
    clock.now = closed
    store.close(view.id, 1)
    return view


@pytest.fixture(params=["sqlite", "postgresql+redis"])
def stores(request, tmp_path):
    """The embedded profile (SQLite in a temporary var/), or the production one (PostgreSQL and Redis)."""
    if request.param == "sqlite":
        return _settings(tmp_path), None
    settings, _, client = request.getfixturevalue("production")
    return settings, client


def test_purge_deletes_what_is_past_the_period_in_every_store(stores):
    settings, redis_client = stores
    clock = Clock(NOW - 400 * DAY)
    store = HandoffStore(settings.handoff_database_url, clock=clock)
    store.add_advisor("ana", "una-clave-larga")

    # Conversations: the last message decides.
    _say(settings, "old", NOW - 200 * DAY)
    _say(settings, "recent", NOW - 200 * DAY)
    _say(settings, "recent", NOW - 2 * DAY)
    _say(settings, "abandoned", NOW - 300 * DAY)
    _say(settings, "waiting-but-talking", NOW - 1 * DAY)

    # Hand-offs: the last activity decides, and an open one only goes with its conversation.
    old = _closed_handoff(store, clock, "old", NOW - 250 * DAY, NOW - 249 * DAY)
    _closed_handoff(store, clock, "recent", NOW - 250 * DAY, NOW - 10 * DAY)  # opened long ago, closed lately
    clock.now = NOW - 300 * DAY
    store.open("abandoned", "whatsapp", "requested", 0, {}, [("person", "hola")])
    store.open("waiting-but-talking", "rest", "requested", 0, {}, [("person", "hola")])

    # Audit: old rows go; a recent row about a purged hand-off stays, unlinked from it.
    clock.now = NOW - 200 * DAY
    store.audit(1, "login")
    clock.now = NOW - 1 * DAY
    store.audit(1, "read", old.id)
    # Sessions (eight hours long): the expired one goes. (Signing in deletes the expired ones too.)
    clock.now = NOW - dt.timedelta(hours=1)
    assert store.login("ana", "una-clave-larga")
    clock.now = NOW - 30 * DAY
    assert store.login("ana", "una-clave-larga")

    # Reviews of answers quote what people wrote: the old one goes.
    clock.now = NOW - 200 * DAY
    store.add_review(1, "old", "hola", "¿Quiso decir…?", "som.phone")
    clock.now = NOW - 2 * DAY
    store.add_review(1, "recent", "hola", "¿Quiso decir…?", "som.phone")

    # Redis: the lock a replica left behind when it died mid-turn, and one being served now.
    if redis_client is not None:
        prefix = settings.redis_key_prefix
        redis_client.set(f"{prefix}:lock:old", TicketLock("old", [Ticket(0, (NOW - 200 * DAY).timestamp())]).dumps())
        redis_client.set(f"{prefix}:lock:recent", TicketLock("recent", [Ticket(0, (NOW + DAY).timestamp())]).dumps())

    report = retention.purge(settings, 180, now=NOW, keys=conversation_keys(settings))

    assert report == retention.PurgeReport(
        conversations=2,
        handoffs=1,
        abandoned_handoffs=1,
        audit_entries=1,
        sessions=1,
        reviews=1,
        receipts=0,
        keys=None if redis_client is None else 1,
    )
    if redis_client is not None:
        assert [key.decode() for key in redis_client.scan_iter(f"{prefix}:*")] == [f"{prefix}:lock:recent"]
    assert _senders(settings) == {"recent", "waiting-but-talking"}
    assert _conversations_with_handoffs(store) == {"recent", "waiting-but-talking"}
    assert store.audit_log() == [(1, "read", None)]
    assert [review["conversation_id"] for review in store.reviews()] == ["recent"]
    with store._session() as s:
        assert s.query(AuditEntry.detail).one() == ("purged",)
        assert s.query(Session).count() == 1


def test_handoff_purge_selects_by_the_last_activity_not_the_opening(tmp_path):
    clock = Clock(NOW - 100 * DAY)
    store = HandoffStore(_settings(tmp_path).handoff_database_url, clock=clock)
    store.add_advisor("ana", "una-clave-larga")
    cutoff = NOW - 30 * DAY
    untouched = _closed_handoff(store, clock, "untouched", NOW - 100 * DAY, NOW - 99 * DAY)
    late_close = _closed_handoff(store, clock, "late-close", NOW - 100 * DAY, NOW - 5 * DAY)
    late_note = _closed_handoff(store, clock, "late-note", NOW - 100 * DAY, NOW - 99 * DAY)
    clock.now = NOW - 5 * DAY
    store.add_message(late_note.id, "note", "llamarla el lunes", 1)
    clock.now = NOW - 100 * DAY
    late_message = store.open("late-message", "rest", "requested", 0, {}, [])
    store.claim(late_message.id, 1)
    clock.now = NOW - 3 * DAY
    store.add_message(late_message.id, "person", "¿sigue ahí?")
    clock.now = NOW - 100 * DAY
    late_claim = store.open("late-claim", "rest", "requested", 0, {}, [])
    clock.now = NOW - 3 * DAY
    store.claim(late_claim.id, 1)

    assert store.purge_older_than(cutoff) == (1, 0)
    assert _conversations_with_handoffs(store) == {"late-close", "late-note", "late-message", "late-claim"}
    assert store.transcript(untouched.id) == []
    assert [line.text for line in store.transcript(late_close.id)] == ["hola"]


def test_the_command_uses_retention_days_and_zero_turns_it_off(tmp_path):
    settings = _settings(tmp_path)
    _say(settings, "old", NOW - 40 * DAY)
    _say(settings, "recent", NOW - 2 * DAY)

    def purge(*arguments: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "bot", "purge", "--now", NOW.isoformat(), *arguments],
            cwd=PROJECT_ROOT, capture_output=True, text=True,
            env={**os.environ, **runner.child_env(settings), "REDIS_URL": "", **env},
        )  # fmt: skip

    off = purge(RETENTION_DAYS="0")
    assert off.returncode == 0, off.stderr
    assert "desactivada" in off.stdout and _senders(settings) == {"old", "recent"}

    done = purge(RETENTION_DAYS="30")
    assert done.returncode == 0, done.stderr
    assert "Purga de lo anterior a 30 días: 1 conversación(es)" in done.stdout
    assert _senders(settings) == {"recent"}

    explicit = purge("--older-than", "1", RETENTION_DAYS="0")
    assert explicit.returncode == 0, explicit.stderr
    assert _senders(settings) == set()


def test_retention_defaults_to_the_documented_180_days():
    assert Settings.from_env({}).retention_days == 180
    assert Settings.from_env({"RETENTION_DAYS": "0"}).retention_days == 0
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    assert "`RETENTION_DAYS`" in readme and "180" in readme


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_supervisor_purges_shortly_after_the_start_then_daily(tmp_path):
    ticks = FakeMonotonic()
    runs: list[float] = []

    def purge(settings: Settings) -> retention.PurgeReport:
        runs.append(ticks.now)
        return retention.PurgeReport()

    schedule = runner.PurgeSchedule(_settings(tmp_path), first_after=60, every=86400, clock=ticks, purge=purge)

    def tick_at(moment: float) -> None:
        ticks.now = moment
        schedule.tick()
        if schedule.thread is not None:
            schedule.thread.join(5)

    tick_at(1000 + 59)
    assert runs == []
    tick_at(1000 + 60)
    assert runs == [1060]
    tick_at(1060 + 86399)
    assert runs == [1060]
    tick_at(1060 + 86400)
    assert runs == [1060, 87460]


def test_the_supervisor_does_not_purge_with_retention_days_zero(tmp_path):
    ticks = FakeMonotonic()
    runs: list[Settings] = []
    schedule = runner.PurgeSchedule(
        _settings(tmp_path, RETENTION_DAYS="0"), first_after=0, clock=ticks, purge=lambda s: runs.append(s)
    )
    ticks.now += 10 * 86400
    schedule.tick()
    assert schedule.thread is None and runs == []


def test_a_failed_scheduled_purge_is_logged_without_its_text_and_retried_next_day(tmp_path, caplog):
    ticks = FakeMonotonic()

    def purge(settings: Settings) -> retention.PurgeReport:
        raise sa.exc.OperationalError("DELETE FROM events WHERE sender_id IN (?)", ["whatsapp:+51987654321"], None)

    schedule = runner.PurgeSchedule(_settings(tmp_path), first_after=0, every=86400, clock=ticks, purge=purge)
    schedule.tick()
    schedule.thread.join(5)
    assert "retention purge failed (OperationalError)" in caplog.text
    assert "987654321" not in caplog.text
    assert schedule.due == ticks.now + 86400


def test_the_scheduled_purge_really_purges(tmp_path):
    """`purge_now`, what the supervisor runs, with this deployment's settings."""
    settings = _settings(tmp_path, RETENTION_DAYS="1")
    _say(settings, "long-ago", dt.datetime(2001, 1, 1, tzinfo=dt.timezone.utc))
    assert runner.purge_now(settings).conversations == 1
    assert _senders(settings) == set()


# --- Redis: the locks a dead replica left behind ---------------------------------------------------


def test_purge_deletes_locks_whose_tickets_all_expired(redis_prefix):
    from integrations.redis_keys import ConversationKeys

    prefix, client = redis_prefix

    def lock(conversation: str, *expires: dt.datetime) -> None:
        tickets = [Ticket(number, moment.timestamp()) for number, moment in enumerate(expires)]
        client.set(f"{prefix}:lock:{conversation}", TicketLock(conversation, tickets).dumps())

    lock("whatsapp:+51911111111", NOW - 2 * DAY)  # a replica died mid-turn two days ago
    lock("whatsapp:+51922222222", NOW - 2 * DAY, NOW + dt.timedelta(seconds=30))  # being served now
    client.set(f"{prefix}:whatsapp:seen:SM123", "1", ex=3600)  # expires by itself

    assert ConversationKeys(REDIS_URL, prefix).purge_stale(NOW) == 1
    assert sorted(client.scan_iter(f"{prefix}:*")) == [
        f"{prefix}:lock:whatsapp:+51922222222".encode(),
        f"{prefix}:whatsapp:seen:SM123".encode(),
    ]
