"""Keep personal data no longer than the retention period, and erase one person's data on request
(Ley 29733 de Protección de Datos Personales).

The stores: Rasa's tracker (the SQL `events` table, read here without Rasa), the hand-offs with their
messages and the advisors' notes, the advisors' audit log and sessions (bot/handoff.py), and the keys
Redis keeps about conversations (integrations/redis_keys.py, handed in as a `KeyStore`: the domain
knows no Redis). Events already published to RabbitMQ (AMQP_URL) are out of reach: the queue's
message TTL ages them out (README, "Registro y privacidad").
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Protocol

import sqlalchemy as sa

from bot.database import engine_for
from bot.handoff import Erased, HandoffStore, overwriting_deletes
from bot.settings import Settings

CHUNK = 500  # conversations per DELETE ... IN (...)
EVENTS = sa.table("events", sa.column("sender_id"), sa.column("timestamp"))


class StoreUnavailable(Exception):
    """A store could not be reached; the message names it and why, for the operator."""


class KeyStore(Protocol):
    """Short-lived keys about conversations kept outside SQL (Redis)."""

    def count(self, conversation_id: str) -> int:
        """How many keys name this conversation."""

    def forget(self, conversation_id: str) -> int:
        """Delete the keys naming this conversation; how many."""

    def purge_stale(self, now: dt.datetime) -> int:
        """Delete keys that outlived their use (what expiry does not cover); how many."""


@dataclass(frozen=True)
class PurgeReport:
    conversations: int = 0
    handoffs: int = 0  # closed or cancelled
    abandoned_handoffs: int = 0  # still open, nobody touched them and the conversation is over
    audit_entries: int = 0
    sessions: int = 0  # expired advisor sessions
    reviews: int = 0  # supervisors' reviews of answers, which quote what people wrote
    receipts: int = 0  # WhatsApp delivery statuses (message ids, no text)
    keys: int | None = None  # None: no Redis in this deployment, or it failed (see `problems`)
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class ForgetReport:
    """What a store holds (or held) about one conversation; no personal data itself."""

    tracker_events: int = 0
    handoffs: Erased = field(default_factory=Erased)
    keys: int | None = None  # None: no Redis in this deployment, or it failed (see `problems`)
    problems: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        h = self.handoffs
        return not (
            self.tracker_events or h.handoffs or h.messages or h.notes or h.audit_entries or h.reviews or self.keys
        )

    def summary(self) -> str:
        """One line for the audit log: counts only."""
        h = self.handoffs
        return (
            f"tracker_events={self.tracker_events} handoffs={h.handoffs} messages={h.messages} notes={h.notes} "
            f"audit_entries={h.audit_entries} reviews={h.reviews} "
            f"redis_keys={self.keys if self.keys is not None else '-'}"
        )


def purge(
    settings: Settings, older_than_days: float, now: dt.datetime | None = None, keys: KeyStore | None = None
) -> PurgeReport:
    """Delete what is past the period: conversations whose last event is older, hand-offs nobody touched
    since (closed, or open but abandoned with the conversation), older audit entries, expired advisor
    sessions and stale Redis keys."""
    now = now or dt.datetime.now(dt.timezone.utc)
    cutoff = now - dt.timedelta(days=older_than_days)
    trackers = engine_for(settings.tracker_database_url)
    store = HandoffStore(settings.handoff_database_url, clock=lambda: now)
    try:
        conversations = _purge_trackers(trackers, cutoff.timestamp())
        closed, abandoned = store.purge_older_than(
            cutoff, conversation_active=lambda conversation: _has_events_since(trackers, conversation, cutoff)
        )
        report = PurgeReport(
            conversations=conversations,
            handoffs=closed,
            abandoned_handoffs=abandoned,
            audit_entries=store.purge_audit_before(cutoff),
            sessions=store.purge_expired_sessions(),
            reviews=store.purge_reviews_before(cutoff),
            receipts=store.purge_receipts_before(cutoff),
        )
        _checkpoint(trackers)
        _checkpoint(store.engine)
    finally:
        trackers.dispose()
        store.engine.dispose()
    if keys is None:
        return report
    try:
        return dataclasses.replace(report, keys=keys.purge_stale(now))
    except StoreUnavailable as error:
        return dataclasses.replace(report, problems=(str(error),))


def personal_data(settings: Settings, conversation_id: str, keys: KeyStore | None = None) -> ForgetReport:
    """What every store holds about one conversation: what `forget` erases."""
    trackers = engine_for(settings.tracker_database_url)
    store = HandoffStore(settings.handoff_database_url)
    try:
        events = _count_events(trackers, conversation_id)
        handoffs = store.personal_data(conversation_id)
    finally:
        trackers.dispose()
        store.engine.dispose()
    try:
        return ForgetReport(events, handoffs, keys.count(conversation_id) if keys else None)
    except StoreUnavailable as error:
        return ForgetReport(events, handoffs, None, (str(error),))


def forget(
    settings: Settings, conversation_id: str, keys: KeyStore | None = None, now: dt.datetime | None = None
) -> ForgetReport:
    """Erase one person's conversation from every store, then audit that an erasure happened (the
    counts, not the conversation). A store that fails is named in `problems`; the rest is erased,
    and running it again finishes the job."""
    clock_now = now or dt.datetime.now(dt.timezone.utc)
    trackers = engine_for(settings.tracker_database_url)
    store = HandoffStore(settings.handoff_database_url, clock=lambda: clock_now)
    try:
        events = _forget_tracker(trackers, conversation_id)
        handoffs = store.forget(conversation_id)
        report = ForgetReport(events, handoffs)
        if keys is not None:
            try:
                report = dataclasses.replace(report, keys=keys.forget(conversation_id))
            except StoreUnavailable as error:
                report = dataclasses.replace(report, problems=(str(error),))
        store.audit(None, "forget", None, report.summary())
        _checkpoint(trackers)
        _checkpoint(store.engine)
    finally:
        trackers.dispose()
        store.engine.dispose()
    return report


# --- Rasa's tracker: one `events` row per event, keyed by `sender_id` ----------------------------


def _purge_trackers(engine: sa.engine.Engine, cutoff_timestamp: float) -> int:
    if not sa.inspect(engine).has_table("events"):
        return 0
    stale = (
        sa.select(EVENTS.c.sender_id)
        .group_by(EVENTS.c.sender_id)
        .having(sa.func.max(EVENTS.c.timestamp) < cutoff_timestamp)
    )
    with engine.begin() as connection, overwriting_deletes(connection):
        senders = [row[0] for row in connection.execute(stale)]
        for start in range(0, len(senders), CHUNK):
            connection.execute(EVENTS.delete().where(EVENTS.c.sender_id.in_(senders[start : start + CHUNK])))
    return len(senders)


def _has_events_since(engine: sa.engine.Engine, conversation_id: str, cutoff: dt.datetime) -> bool:
    """Whether the person wrote (or was written to) since `cutoff`: the conversation is not over."""
    if not sa.inspect(engine).has_table("events"):
        return False
    recent = (
        sa.select(EVENTS.c.sender_id)
        .where(EVENTS.c.sender_id == conversation_id, EVENTS.c.timestamp >= cutoff.timestamp())
        .limit(1)
    )
    with engine.connect() as connection:
        return connection.execute(recent).first() is not None


def _count_events(engine: sa.engine.Engine, conversation_id: str) -> int:
    if not sa.inspect(engine).has_table("events"):
        return 0
    count = sa.select(sa.func.count()).select_from(EVENTS).where(EVENTS.c.sender_id == conversation_id)
    with engine.connect() as connection:
        return int(connection.execute(count).scalar() or 0)


def _forget_tracker(engine: sa.engine.Engine, conversation_id: str) -> int:
    if not sa.inspect(engine).has_table("events"):
        return 0
    with engine.begin() as connection, overwriting_deletes(connection):
        return connection.execute(EVENTS.delete().where(EVENTS.c.sender_id == conversation_id)).rowcount


# --- SQLite files: deleted means gone from the file ---------------------------------------------


def _checkpoint(engine: sa.engine.Engine) -> None:
    """Copy SQLite's write-ahead log into the database and empty it: the log still holds the pages as
    they were before the deletion. Best effort: a busy database is checkpointed later by SQLite."""
    if engine.dialect.name != "sqlite":
        return
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
