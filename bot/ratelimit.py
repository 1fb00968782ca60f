"""A sliding-window counter: at most `limit` events per key within `window` seconds."""

from __future__ import annotations

import time
from collections import defaultdict, deque
from typing import Protocol


class SharedCounter(Protocol):
    """Counts events for every process (Redis, in `integrations.redis_keys`)."""

    def take(self, key: str, limit: int, window: float) -> bool | None:
        """Count one event for `key` if it had fewer than `limit` in the last `window` seconds, in
        any process: True if counted, False if over the limit, None when not reachable now."""


class RateLimiter:
    """Counted by this process; with `shared`, by every process (several replicas), this process's
    own count deciding only while the shared one cannot be reached. `name` keeps the shared keys
    of different limits apart."""

    MAX_KEYS = 10_000  # past this many keys, forget the ones with no event in the window

    def __init__(
        self, limit: int, window_seconds: float, shared: SharedCounter | None = None, name: str = "rate"
    ) -> None:
        self.limit = limit
        self.window = window_seconds
        self.shared = shared
        self.name = name
        self._events: dict[str, deque[float]] = defaultdict(deque)

    def allow(self, key: str, now: float | None = None) -> bool:
        """Count one event for `key`; False once the key is over its limit."""
        here = self._allow_here(key, time.monotonic() if now is None else now)
        if self.shared is None:
            return here
        everywhere = self.shared.take(f"{self.name}:{key}", self.limit, self.window)
        return here if everywhere is None else everywhere

    def _allow_here(self, key: str, now: float) -> bool:
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
