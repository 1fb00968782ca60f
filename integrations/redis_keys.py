"""Short-lived keys that every Rasa replica must agree on, kept in Redis (the production profile).

With several replicas, a webhook that Twilio or Telegram delivers again may land on another
replica than the first delivery, and a Telegram button pressed days later may reach a replica
that did not send it. Each process still keeps its own memory (`bot/messaging.py`); this module
is the thin shared layer over it. Redis failing must never drop a message: every call then
answers "unknown" (None), the process's own memory decides, and Redis is left alone for a while
so that a dead Redis does not slow every message down.
"""

from __future__ import annotations

import logging
import math
import time

import redis

from bot.settings import Settings

logger = logging.getLogger(__name__)
REDIS_TIMEOUT_SECONDS = 0.5
RETRY_AFTER_SECONDS = 10.0  # after a failure, calls skip Redis this long


class SharedKeys:
    """Keys under one namespace (e.g. "som:whatsapp:"), each with its own time to live."""

    def __init__(self, redis_url: str, namespace: str) -> None:
        self._redis = redis.Redis.from_url(
            redis_url, socket_timeout=REDIS_TIMEOUT_SECONDS, socket_connect_timeout=REDIS_TIMEOUT_SECONDS
        )
        self._namespace = namespace
        self._skip_until = 0.0

    def add(self, key: str, value: str, ttl: float) -> bool | None:
        """Store `value` unless `key` exists: True if stored, False if it existed, None if unknown."""
        return self._call(lambda: bool(self._redis.set(self._namespace + key, value, nx=True, ex=_seconds(ttl))))

    def set(self, key: str, value: str, ttl: float) -> None:
        self._call(lambda: self._redis.set(self._namespace + key, value, ex=_seconds(ttl)))

    def get(self, key: str) -> str | None:
        value = self._call(lambda: self._redis.get(self._namespace + key))
        return value.decode("utf-8") if value is not None else None

    def _call(self, command):
        if time.monotonic() < self._skip_until:
            return None
        try:
            return command()
        except redis.RedisError as error:
            self._skip_until = time.monotonic() + RETRY_AFTER_SECONDS
            logger.warning("Redis unreachable (%s): each replica relies on its own memory for %.0f s",
                           type(error).__name__, RETRY_AFTER_SECONDS)  # fmt: skip
            return None


def shared_keys(settings: Settings, channel: str) -> SharedKeys | None:
    """The channel's shared keys when Redis is configured (REDIS_URL), else None."""
    if not settings.redis_url:
        return None
    return SharedKeys(settings.redis_url, f"{settings.redis_key_prefix}:{channel}:")


def _seconds(ttl: float) -> int:
    return max(1, math.ceil(ttl))
