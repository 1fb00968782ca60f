"""Delete conversations past the retention period (Ley 29733 de Protección de Datos Personales)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from bot.database import engine_for
from bot.handoff import HandoffStore
from bot.settings import Settings


def purge(settings: Settings, older_than_days: float, now: dt.datetime | None = None) -> tuple[int, int]:
    """Delete trackers whose last event, and closed hand-offs, are older than the period.

    Returns (conversations deleted, hand-offs deleted)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    cutoff = now - dt.timedelta(days=older_than_days)
    conversations = _purge_trackers(settings.tracker_database_url, cutoff.timestamp())
    handoffs = HandoffStore(settings.handoff_database_url).purge_older_than(cutoff)
    return conversations, handoffs


def _purge_trackers(database_url: str, cutoff_timestamp: float) -> int:
    """Rasa's SQL tracker store keeps one `events` row per event, keyed by `sender_id`."""
    engine = engine_for(database_url)
    try:
        if not sa.inspect(engine).has_table("events"):
            return 0
        events = sa.table("events", sa.column("sender_id"), sa.column("timestamp"))
        stale = (
            sa.select(events.c.sender_id)
            .group_by(events.c.sender_id)
            .having(sa.func.max(events.c.timestamp) < cutoff_timestamp)
        )
        with engine.begin() as connection:
            senders = [row[0] for row in connection.execute(stale)]
            for start in range(0, len(senders), 500):
                connection.execute(events.delete().where(events.c.sender_id.in_(senders[start : start + 500])))
        return len(senders)
    finally:
        engine.dispose()
