"""Rasa's SQL tracker store, made cheap per turn and logging one line per processed message.

Rasa rebuilds the whole conversation session on every message, runs its policies over it and
sends it to the action server, so each turn costs more than the one before (RasaHQ/rasa #6334).
This assistant keeps its state in slots and decides from the latest message, so the store hands
Rasa only the recent part of the session, preceded by the current value of every slot. Nothing is
lost: every event is still stored, and `retrieve_full_tracker` returns the whole history.
"""

from __future__ import annotations

import functools
import json
import logging
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm
from rasa.core.tracker_store import SQLTrackerStore
from rasa.shared.core.events import ActionExecuted, SessionStarted, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from bot.database import engine_for
from bot.turnlog import summarise_last_turn

turn_logger = logging.getLogger("som.turn")
RECENT_EVENTS = 30  # about five turns: what the rules and the actions look at
LOADED = "_som_events_loaded"  # how many of a tracker's events are already stored
SESSION_INDEX = "som_events_sender_type_id"
TIME_INDEX = "som_events_timestamp"


class TurnLoggingSQLTrackerStore(SQLTrackerStore):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.engine.dialect.name == "sqlite":
            # Rasa opens the file anew for every query; a pool keeps connections and their pragmas.
            self.engine = engine_for(self.engine.url)
            self.sessionmaker = sa.orm.sessionmaker(bind=self.engine)
        self._create_indexes()

    def _create_indexes(self) -> None:
        """Rasa indexes events by conversation only.

        - Finding the latest session start and the slots before the window read every event of
          the conversation: turn 100 paid for the 99 before it. `SESSION_INDEX` makes both seeks.
        - The operators' figures (bot/report.py) and the daily purge read events by time:
          `TIME_INDEX` spares them a scan of every conversation ever kept.

        On an existing large PostgreSQL table, the first start builds them, holding writes to
        `events` meanwhile."""
        table = self.SQLEvent.__table__
        for index in (
            sa.Index(SESSION_INDEX, table.c.sender_id, table.c.type_name, table.c.id),
            sa.Index(TIME_INDEX, table.c.timestamp),
        ):
            try:
                index.create(self.engine, checkfirst=True)
            except sa.exc.DBAPIError:  # another replica created it at the same moment
                if index.name not in {i["name"] for i in sa.inspect(self.engine).get_indexes(table.name)}:
                    raise

    async def retrieve(self, sender_id: str) -> DialogueStateTracker | None:
        with self.engine.connect() as connection:
            events = self._recent_session_events(connection, sender_id)
        if not events:
            return None
        tracker = DialogueStateTracker.from_dict(sender_id, events, self.domain.slots)
        setattr(tracker, LOADED, len(tracker.events))
        return tracker

    def _recent_session_events(self, connection: Any, sender_id: str) -> list[dict]:
        """The window in one query; one more, for the slots set before it, once the window is full."""
        recent = connection.execute(self._reads.window, {"sender_id": sender_id}).all()[::-1]
        events = [json.loads(data) for _, data, _ in recent]
        if not recent or recent[0][0] == recent[0][2] or len(recent) < RECENT_EVENTS:
            return events
        # Start at a turn boundary, after the session start and the slots as they were then.
        first_turn = next((i for i, e in enumerate(events) if _is_listen(e)), 0)
        head = connection.execute(self._reads.head, {"sender_id": sender_id, "before": recent[first_turn][0]})
        return [json.loads(data) for (data,) in head] + events[first_turn:]

    @functools.cached_property
    def _reads(self) -> _Reads:
        return _Reads(self.SQLEvent.__table__)

    async def save(self, tracker: DialogueStateTracker) -> None:
        loaded = getattr(tracker, LOADED, None)
        if loaded is None and not self._has_events(tracker.sender_id):
            loaded = 0  # a new conversation (Rasa creates its tracker without asking this store)
        if loaded is None:  # another tracker this store did not hand out: let Rasa count what is new
            await super().save(tracker)
        else:
            new_events = list(tracker.events)[loaded:]
            if self.event_broker:
                await self._stream_new_events(self.event_broker, new_events, tracker.sender_id)
            if new_events:
                with self.engine.begin() as connection:
                    connection.execute(
                        self.SQLEvent.__table__.insert(),
                        [self._row(tracker.sender_id, event.as_dict(), event.type_name) for event in new_events],
                    )
        setattr(tracker, LOADED, len(tracker.events))
        summary = summarise_last_turn(tracker.sender_id, (e.as_dict() for e in _last_turn(tracker)))
        if summary:
            turn_logger.info(summary.log_line())

    def _has_events(self, sender_id: str) -> bool:
        with self.engine.connect() as connection:
            return connection.execute(self._reads.any_event, {"sender_id": sender_id}).first() is not None

    @staticmethod
    def _row(sender_id: str, data: dict, type_name: str) -> dict[str, Any]:
        """One `events` row, filled in exactly as Rasa's own `save` does."""
        return {
            "sender_id": sender_id,
            "type_name": type_name,
            "timestamp": data.get("timestamp"),
            "intent_name": (data.get("parse_data") or {}).get("intent", {}).get("name"),
            "action_name": data.get("name"),
            "data": json.dumps(data),
        }


class _Reads:
    """This store's queries, built once: the latest session's newest events (with the id of its
    start), the session start plus the latest value of each slot set before an id, and whether a
    conversation has any event at all."""

    def __init__(self, table: sa.Table) -> None:
        of_sender = table.c.sender_id == sa.bindparam("sender_id")
        session_start = (
            sa.select(sa.func.coalesce(sa.func.max(table.c.id), 0))
            .where(of_sender, table.c.type_name == SessionStarted.type_name)
            .scalar_subquery()
        )
        in_session = sa.and_(of_sender, table.c.id >= session_start)
        self.window = (
            sa.select(table.c.id, table.c.data, session_start)
            .where(in_session)
            .order_by(table.c.id.desc())
            .limit(RECENT_EVENTS)
        )
        latest_slot_ids = (
            sa.select(sa.func.max(table.c.id))
            .where(in_session, table.c.type_name == "slot", table.c.id < sa.bindparam("before"))
            .group_by(table.c.action_name)
        )
        self.head = (
            sa.select(table.c.data)
            .where(sa.or_(table.c.id == session_start, table.c.id.in_(latest_slot_ids)))
            .order_by(table.c.id)
        )
        self.any_event = sa.select(table.c.id).where(of_sender).limit(1)


def _is_listen(event: dict) -> bool:
    return event.get("event") == ActionExecuted.type_name and event.get("name") == "action_listen"


def _last_turn(tracker: DialogueStateTracker) -> list:
    """The events of the turn Rasa just processed, read from the end (trackers grow long).

    Empty when the save is not a processed turn (e.g. an advisor's message was appended)."""
    if not tracker.events or not isinstance(tracker.events[-1], ActionExecuted):
        return []
    turn = []
    for event in reversed(tracker.events):
        turn.append(event)
        if isinstance(event, UserUttered):
            return turn[::-1]
    return []
