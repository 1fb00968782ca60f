"""The SQL tracker store, logging one line per processed message when it saves the turn."""

from __future__ import annotations

import logging

from rasa.core.tracker_store import SQLTrackerStore
from rasa.shared.core.events import ActionExecuted, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from bot.turnlog import summarise_last_turn

turn_logger = logging.getLogger("som.turn")


class TurnLoggingSQLTrackerStore(SQLTrackerStore):
    async def save(self, tracker: DialogueStateTracker) -> None:
        await super().save(tracker)
        summary = summarise_last_turn(tracker.sender_id, (e.as_dict() for e in _last_turn(tracker)))
        if summary:
            turn_logger.info(summary.log_line())


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
