"""Short-lived keys that every Rasa replica must agree on, kept in Redis (the production profile).

With several replicas, a webhook that Twilio or Telegram delivers again may land on another
replica than the first delivery, and a Telegram button pressed days later may reach a replica
that did not send it. Each process still keeps its own memory (`bot/messaging.py`); this module
is the thin shared layer over it. Redis failing must never drop a message: every call then
answers "unknown" (None), the process's own memory decides, and Redis is left alone for a while
so that a dead Redis does not slow every message down.

`ConversationKeys` is the other side: what Redis holds that names a conversation, which the daily
purge and `python -m bot privacy forget` delete (bot/retention.py).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import time
import uuid

import redis

from bot.retention import StoreUnavailable
from bot.settings import Settings

logger = logging.getLogger(__name__)
REDIS_TIMEOUT_SECONDS = 0.5
RETRY_AFTER_SECONDS = 10.0  # after a failure, calls skip Redis this long

# KEYS[1] holds the first free moment (Redis's clock, seconds). ARGV[1]: the spacing to take a
# moment with (the answer: seconds from now until it); ARGV[2]: a pause to impose from now on.
RESERVE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local free = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0'))
local taken = free
if tonumber(ARGV[2]) > 0 then
  free = math.max(free, now + tonumber(ARGV[2]))
else
  free = free + tonumber(ARGV[1])
end
redis.call('SET', KEYS[1], string.format('%.6f', free), 'PX', math.ceil((free - now) * 1000) + 1000)
return string.format('%.6f', taken - now)
"""

# KEYS[1]: a sorted set of event times (Redis's clock). ARGV: limit, window (seconds), a unique member.
TAKE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2]) * 1000))
return 1
"""


class SharedKeys:
    """Keys under one namespace (e.g. "som:whatsapp:"), each with its own time to live."""

    def __init__(self, redis_url: str, namespace: str) -> None:
        self._redis = redis.Redis.from_url(
            redis_url, socket_timeout=REDIS_TIMEOUT_SECONDS, socket_connect_timeout=REDIS_TIMEOUT_SECONDS
        )
        self._namespace = namespace
        self._skip_until = 0.0
        self._reserve = self._redis.register_script(RESERVE)
        self._take = self._redis.register_script(TAKE)

    def add(self, key: str, value: str, ttl: float) -> bool | None:
        """Store `value` unless `key` exists: True if stored, False if it existed, None if unknown."""
        return self._call(lambda: bool(self._redis.set(self._namespace + key, value, nx=True, ex=_seconds(ttl))))

    def set(self, key: str, value: str, ttl: float) -> None:
        self._call(lambda: self._redis.set(self._namespace + key, value, ex=_seconds(ttl)))

    def get(self, key: str) -> str | None:
        value = self._call(lambda: self._redis.get(self._namespace + key))
        return value.decode("utf-8") if value is not None else None

    def take(self, key: str, limit: int, window: float) -> bool | None:
        """Count one event under `key` if it had fewer than `limit` in the last `window` seconds (on
        Redis's clock, from any replica): True if counted, False if over, None if unknown."""
        member = uuid.uuid4().hex
        taken = self._call(lambda: self._take(keys=[self._namespace + key], args=[limit, window, member]))
        return bool(taken) if taken is not None else None

    def reserve(self, key: str, spacing: float) -> float | None:
        """Take the next free moment under `key`, `spacing` seconds after the one taken before it
        (by any replica): how many seconds from now it is, or None if unknown. Redis's own clock
        decides, so replicas whose clocks disagree still keep the spacing."""
        wait = self._call(lambda: self._reserve(keys=[self._namespace + key], args=[spacing, 0]))
        return float(wait) if wait is not None else None

    def hold(self, key: str, seconds: float) -> None:
        """Nothing more under `key` for `seconds` from now (whatever was reserved before)."""
        self._call(lambda: self._reserve(keys=[self._namespace + key], args=[0, seconds]))

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


class ConversationKeys:
    """What Redis keeps that names a conversation, for the purge and for `privacy forget`.

    Rasa's lock of each conversation (`<prefix>:lock:<conversation id>`, see extensions/lock_store.py)
    has no expiry: a replica that dies mid-turn leaves it behind, named after the person (a phone
    number on WhatsApp). Most channel keys (`<prefix>:<channel>:seen:<delivery id>`, `...:button:<hash>`)
    name deliveries and buttons, not people, and expire by themselves (one hour, seven days); those
    that do name a conversation (`whatsapp:inbound:<conversation id>`, the person's last message for
    "typing…", 24 hours; `telegram:pace:<conversation id>`, seconds) contain its id. Errors
    raise StoreUnavailable: unlike a message, an erasure must not silently skip Redis."""

    def __init__(self, redis_url: str, prefix: str) -> None:
        self._redis = redis.Redis.from_url(
            redis_url, socket_timeout=REDIS_TIMEOUT_SECONDS * 4, socket_connect_timeout=REDIS_TIMEOUT_SECONDS * 4
        )
        self._prefix = prefix
        # Rasa's RedisLockStore takes an alphanumeric prefix only, and falls back to "lock:" otherwise.
        self._locks = f"{prefix}:lock:" if prefix.isalnum() else "lock:"

    def count(self, conversation_id: str) -> int:
        return len(self._naming(conversation_id))

    def forget(self, conversation_id: str) -> int:
        keys = self._naming(conversation_id)
        return int(self._call(lambda: self._redis.delete(*keys))) if keys else 0

    def purge_stale(self, now: dt.datetime) -> int:
        """Delete conversation locks whose tickets have all expired (a replica died holding them),
        unless a replica takes a ticket meanwhile (the same WATCH transaction as the lock store)."""
        deadline = now.timestamp()
        locks = self._call(lambda: list(self._redis.scan_iter(match=_glob_escape(self._locks) + "*", count=500)))
        return sum(self._delete_if_expired(key, deadline) for key in locks)

    def _delete_if_expired(self, key: bytes, deadline: float) -> int:
        def transaction(pipe) -> int:
            raw = pipe.get(key)
            try:
                tickets = json.loads(raw).get("tickets", []) if raw else []  # each a JSON text of its own
                live = any(float(json.loads(ticket)["expires"]) >= deadline for ticket in tickets)
            except (ValueError, KeyError, AttributeError, TypeError):  # not a lock Rasa wrote: leave it alone
                return 0
            if raw is None or live:
                return 0
            pipe.multi()
            pipe.delete(key)
            return 1

        return self._call(lambda: self._redis.transaction(transaction, key, value_from_callable=True))

    def _naming(self, conversation_id: str) -> list[bytes]:
        """The conversation's lock, and any key of this deployment that contains its id."""
        pattern = f"{_glob_escape(self._prefix)}:*{_glob_escape(conversation_id)}*"
        found = set(self._call(lambda: list(self._redis.scan_iter(match=pattern, count=500))))
        lock = (self._locks + conversation_id).encode("utf-8")
        if self._call(lambda: self._redis.exists(lock)):
            found.add(lock)
        return sorted(found)

    def _call(self, command):
        try:
            return command()
        except redis.RedisError as error:
            raise StoreUnavailable(f"Redis ({type(error).__name__}: {error})") from error


def _glob_escape(text: str) -> str:
    """Match `text` literally in a Redis SCAN pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def conversation_keys(settings: Settings) -> ConversationKeys | None:
    """The conversation keys in Redis when Redis is configured (REDIS_URL), else None."""
    if not settings.redis_url:
        return None
    return ConversationKeys(settings.redis_url, settings.redis_key_prefix)
