"""Rasa's SQL tracker store, made cheap per turn and logging one line per processed message.

Rasa rebuilds the whole conversation session on every message, runs its policies over it and
sends it to the action server, so each turn costs more than the one before (RasaHQ/rasa #6334).
This assistant keeps its state in slots and decides from the latest message, so the store hands
Rasa only the recent part of the session, preceded by the current value of every slot. Nothing is
lost: every event is still stored, and `retrieve_full_tracker` returns the whole history.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm
from rasa.core.tracker_store import SQLTrackerStore
from rasa.shared.core.events import ActionExecuted, SessionStarted, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from bot.turnlog import summarise_last_turn

turn_logger = logging.getLogger("som.turn")
RECENT_EVENTS = 60  # about a dozen turns: what rules, memoization and the actions look at
LOADED = "_som_events_loaded"  # how many of a tracker's events are already stored


class TurnLoggingSQLTrackerStore(SQLTrackerStore):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.engine.dialect.name == "sqlite":
            # Rasa opens the file anew for every query; a pool keeps connections and their pragmas.
            self.engine = sa.create_engine(
                self.engine.url, poolclass=sa.pool.QueuePool, connect_args={"check_same_thread": False}
            )
            sa.event.listen(self.engine, "connect", _fast_sqlite)
            self.sessionmaker = sa.orm.sessionmaker(bind=self.engine)

    async def retrieve(self, sender_id: str) -> DialogueStateTracker | None:
        with self.session_scope() as session:
            events = self._recent_session_events(session, sender_id)
        if not events:
            return None
        tracker = DialogueStateTracker.from_dict(sender_id, events, self.domain.slots)
        setattr(tracker, LOADED, len(tracker.events))
        return tracker

    def _recent_session_events(self, session: Any, sender_id: str) -> list[dict]:
        table = self.SQLEvent
        of_sender = table.sender_id == sender_id
        session_start = (
            session.query(sa.func.max(table.id)).filter(of_sender, table.type_name == SessionStarted.type_name).scalar()
        ) or 0
        in_session = sa.and_(of_sender, table.id >= session_start)
        rows = session.query(table.id, table.data).filter(in_session).order_by(table.id.desc()).limit(RECENT_EVENTS)
        recent = list(reversed(rows.all()))
        if not recent:
            return []
        if recent[0][0] == session_start or len(recent) < RECENT_EVENTS:
            return [json.loads(data) for _, data in recent]
        # Start at a turn boundary, after the session start and the slots as they were then.
        events = [json.loads(data) for _, data in recent]
        first_turn = next((i for i, e in enumerate(events) if _is_listen(e)), 0)
        latest_slot_events = (
            session.query(sa.func.max(table.id))
            .filter(in_session, table.type_name == "slot", table.id < recent[first_turn][0])
            .group_by(table.action_name)
        )
        head_ids = [session_start, *(row[0] for row in latest_slot_events)]
        head = session.query(table.data).filter(table.id.in_(head_ids)).order_by(table.id)
        return [json.loads(data) for (data,) in head] + events[first_turn:]

    async def save(self, tracker: DialogueStateTracker) -> None:
        loaded = getattr(tracker, LOADED, None)
        if loaded is None:  # a tracker this store did not hand out: let Rasa count what is new
            await super().save(tracker)
        else:
            new_events = list(tracker.events)[loaded:]
            if self.event_broker:
                await self._stream_new_events(self.event_broker, new_events, tracker.sender_id)
            with self.session_scope() as session:
                for event in new_events:
                    session.add(self._row(tracker.sender_id, event.as_dict(), event.type_name))
                session.commit()
        setattr(tracker, LOADED, len(tracker.events))
        summary = summarise_last_turn(tracker.sender_id, (e.as_dict() for e in _last_turn(tracker)))
        if summary:
            turn_logger.info(summary.log_line())

    def _row(self, sender_id: str, data: dict, type_name: str) -> Any:
        """One `events` row, filled in exactly as Rasa's own `save` does."""
        return self.SQLEvent(
            sender_id=sender_id,
            type_name=type_name,
            timestamp=data.get("timestamp"),
            intent_name=(data.get("parse_data") or {}).get("intent", {}).get("name"),
            action_name=data.get("name"),
            data=json.dumps(data),
        )


def _is_listen(event: dict) -> bool:
    return event.get("event") == ActionExecuted.type_name and event.get("name") == "action_listen"


def _fast_sqlite(connection: Any, _record: Any) -> None:
    """WAL lets readers work during a write; NORMAL sync skips an fsync per turn (still crash-safe
    for the database, at worst losing the last turn on power loss)."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


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
