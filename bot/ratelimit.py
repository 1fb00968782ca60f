"""A sliding-window counter: at most `limit` events per key within `window` seconds."""

from __future__ import annotations

import time
from collections import defaultdict, deque


class RateLimiter:
    MAX_KEYS = 10_000  # past this many keys, forget the ones with no event in the window

    def __init__(self, limit: int, window_seconds: float) -> None:
        self.limit = limit
        self.window = window_seconds
        self._events: dict[str, deque[float]] = defaultdict(deque)

    def allow(self, key: str, now: float | None = None) -> bool:
        """Count one event for `key`; False once the key is over its limit."""
        now = time.monotonic() if now is None else now
        if len(self._events) > self.MAX_KEYS:
            self._forget_idle(now)
        events = self._events[key]
        while events and now - events[0] > self.window:
            events.popleft()
        if len(events) >= self.limit:
            return False
        events.append(now)
        return True

    def _forget_idle(self, now: float) -> None:
        for key in [k for k, events in self._events.items() if not events or now - events[-1] > self.window]:
            del self._events[key]
