"""One log line per processed message, built from the conversation's events.

The line names the hashed conversation, channel, intent, confidence, actions run and latency, and
never the message text, so it is safe at INFO level.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bot.privacy import hash_id

IGNORED_ACTIONS = {"action_listen", "action_extract_slots"}


@dataclass(frozen=True)
class TurnSummary:
    conversation: str
    channel: str
    intent: str
    confidence: float
    actions: tuple[str, ...]
    latency_ms: float

    def log_line(self) -> str:
        return (
            f"turn conversation={self.conversation} channel={self.channel} intent={self.intent} "
            f"confidence={self.confidence:.2f} actions={','.join(self.actions) or '-'} "
            f"latency_ms={self.latency_ms:.0f}"
        )


def summarise_last_turn(
    sender_id: str, events: Iterable[Mapping[str, Any]], now: float | None = None
) -> TurnSummary | None:
    """Summarise the events since the last user message, or None if there is none.

    Latency runs from `received_at` (set by our channels when the request arrived) or, failing
    that, from the user event's own timestamp, to `now`.
    """
    events = list(events)
    last_user = next((i for i in range(len(events) - 1, -1, -1) if events[i].get("event") == "user"), None)
    if last_user is None:
        return None
    user = events[last_user]
    intent = (user.get("parse_data") or {}).get("intent") or {}
    actions = tuple(
        e["name"]
        for e in events[last_user + 1 :]
        if e.get("event") == "action" and e.get("name") not in IGNORED_ACTIONS
    )
    started = (user.get("metadata") or {}).get("received_at") or user.get("timestamp") or time.time()
    return TurnSummary(
        conversation=hash_id(sender_id),
        channel=user.get("input_channel") or "-",
        intent=intent.get("name") or "-",
        confidence=float(intent.get("confidence") or 0.0),
        actions=actions,
        latency_ms=((now or time.time()) - float(started)) * 1000,
    )
