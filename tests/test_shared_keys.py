"""Replicas agree on webhook redeliveries and Telegram buttons through the real Redis, and a Redis
that stops answering costs one time-out, not one per message, and loses nothing."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest
import redis
from blueprint_harness import in_event_loop, served
from production_stores import REDIS_URL
from telegram.error import RetryAfter

from bot import services
from bot.messaging import CallbackData, Flood, FloodLimiter, RecentIds
from bot.ratelimit import RateLimiter
from bot.settings import Settings
from channels.advisor import AdvisorConsole
from extensions import action_server
from integrations.redis_keys import SharedKeys, shared_keys
from integrations.telegram import SendPacer

LONG_PAYLOAD = '/inform{"entry": "' + "social_security.a_very_long_entry_identifier" * 2 + '"}'


@pytest.fixture
def namespace(redis_prefix):
    """A namespace of its own in the machine's Redis, emptied afterwards."""
    return f"{redis_prefix[0]}:"


class SilentServer:
    """Accepts connections and never answers: a Redis that hangs. Counts the connections."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self.listener.getsockname()[1]}/0"
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.connections.append(self.listener.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        self.listener.close()
        for connection in self.connections:
            connection.close()


def test_a_redelivery_that_lands_on_another_replica_is_processed_once(namespace):
    first, second = (RecentIds(shared=SharedKeys(REDIS_URL, namespace)) for _ in range(2))
    assert first.first_time("SM1") is True
    assert second.first_time("SM1") is False
    assert second.first_time("SM2") is True
    assert first.first_time("SM2") is False
    assert redis.Redis.from_url(REDIS_URL).ttl(f"{namespace}seen:SM1") > 3500  # kept an hour, then forgotten


def test_a_long_button_works_on_another_replica_and_after_a_restart(namespace):
    key = CallbackData(shared=SharedKeys(REDIS_URL, namespace)).for_payload(LONG_PAYLOAD)
    assert key != LONG_PAYLOAD
    assert CallbackData(shared=SharedKeys(REDIS_URL, namespace)).payload(key) == LONG_PAYLOAD
    assert CallbackData(shared=SharedKeys(REDIS_URL, namespace)).payload("~unknown") is None


def test_a_hanging_redis_costs_one_time_out_and_each_replica_still_decides_alone():
    server = SilentServer()
    try:
        recent = RecentIds(shared=SharedKeys(server.url, "som:whatsapp:"))
        assert recent.first_time("SM1") is True  # waits for the time-out once, then answers
        assert recent.first_time("SM1") is False
        assert all(recent.first_time(f"SM{n}") for n in range(2, 50))
        buttons = CallbackData(shared=SharedKeys(server.url, "som:telegram:"))
        assert buttons.payload(buttons.for_payload(LONG_PAYLOAD)) == LONG_PAYLOAD
        assert len(server.connections) == 2, "after a failure, Redis is left alone for a while"
    finally:
        server.close()


def test_only_the_production_profile_shares_keys():
    assert shared_keys(Settings.from_env({}), "whatsapp") is None
    shared = shared_keys(Settings.from_env({"REDIS_URL": REDIS_URL, "REDIS_KEY_PREFIX": "som"}), "whatsapp")
    assert isinstance(shared, SharedKeys)


# --- Telegram's flood limits across replicas ------------------------------------------------
# Real time and the real Redis, with short intervals. Only lower bounds are asserted: a slow
# machine makes the gaps longer, never shorter.


def two_replicas(namespace: str, waits: list[float] | None = None, **limits: float) -> tuple[SendPacer, SendPacer]:
    """Two pacers on one Redis namespace; each sleep they ask for is noted in `waits`."""

    async def sleep(seconds: float) -> None:
        if waits is not None:
            waits.append(seconds)
        await asyncio.sleep(seconds)

    return tuple(SendPacer(shared=SharedKeys(REDIS_URL, namespace), sleep=sleep, **limits) for _ in range(2))  # type: ignore[return-value]


@in_event_loop
async def test_two_replicas_writing_to_one_chat_keep_its_pace_between_them(namespace):
    waits: list[float] = []
    replicas = two_replicas(namespace, waits, chat_interval=0.4)
    started: list[float] = []

    async def send(replica: SendPacer) -> None:
        async with replica.message(77):
            started.append(time.monotonic())

    for n in range(4):  # an advisor's replies, each sent by whichever replica took the request
        await send(replicas[n % 2])
    gaps = [later - earlier for earlier, later in zip(started, started[1:])]
    assert all(gap >= 0.2 for gap in gaps), gaps  # 0.4 s apart, less a loaded machine's jitter
    waits.clear()
    async with replicas[1].message(78):
        pass
    assert all(wait < 0.1 for wait in waits), f"another chat does not wait for this one: {waits}"


@in_event_loop
async def test_two_replicas_together_stay_under_the_overall_limit(namespace):
    replicas = two_replicas(namespace, overall_per_second=5)
    started: list[float] = []

    async def send(replica: SendPacer, chat_id: int) -> None:
        async with replica.message(chat_id):
            started.append(time.monotonic())

    await asyncio.gather(*(send(replicas[chat_id % 2], chat_id) for chat_id in range(8)))
    started.sort()
    gaps = [later - earlier for earlier, later in zip(started, started[1:])]
    assert all(gap >= 0.1 for gap in gaps), gaps  # 5 a second: 0.2 s apart, less a loaded machine's jitter


@in_event_loop
async def test_telegrams_retry_after_on_one_replica_holds_the_chat_on_the_other(namespace):
    first, second = two_replicas(namespace)
    with pytest.raises(RetryAfter):
        async with first.message(5):
            raise RetryAfter(1)
    asked = time.monotonic()
    async with second.message(5):
        assert time.monotonic() - asked >= 0.9


def test_redis_out_of_reach_leaves_each_replica_its_own_pace():
    server = SilentServer()
    try:
        shared = SharedKeys(server.url, "som:telegram:")
        assert shared.reserve("pace:telegram:1", 1.0) is None
    finally:
        server.close()


# --- limits that hold across replicas -----------------------------------------------------------


def test_a_limit_counts_every_replicas_events_and_frees_up_after_its_window(namespace):
    window = 2.0  # long enough that a loaded machine's stall cannot end it between two calls
    first, second = (RateLimiter(3, window, SharedKeys(REDIS_URL, namespace), name="test") for _ in range(2))
    assert [first.allow("ana"), second.allow("ana"), first.allow("ana")] == [True, True, True]
    assert second.allow("ana") is False and first.allow("ana") is False, "three in the window, whoever counted"
    assert second.allow("beto") is True, "another key has its own count"
    time.sleep(window + 0.1)
    assert second.allow("ana") is True


def test_a_flood_across_replicas_gets_one_notice_and_nothing_more(namespace):
    replicas = [FloodLimiter(limit=4, window=60.0, shared=SharedKeys(REDIS_URL, namespace)) for _ in range(2)]
    verdicts = [replicas[n % 2].check("whatsapp:+51987654321") for n in range(7)]
    assert verdicts == [Flood.ALLOW] * 4 + [Flood.WARN, Flood.DROP, Flood.DROP]


def test_without_redis_each_replica_keeps_its_own_count():
    server = SilentServer()
    try:
        limiter = RateLimiter(2, 60.0, SharedKeys(server.url, "som:rest:"), name="test")
        assert [limiter.allow("ana") for _ in range(3)] == [True, True, False]
    finally:
        server.close()


@in_event_loop
async def test_failed_sign_ins_on_one_replica_count_on_the_other(environment, redis_prefix):
    environment.set(REDIS_URL=REDIS_URL, REDIS_KEY_PREFIX=redis_prefix[0])
    wrong = {"username": "rosa.canales", "password": "no-es-la-clave"}
    async with served([AdvisorConsole()]) as near, served([AdvisorConsole()]) as far:
        statuses = [
            (await replica.client.post("/advisor/api/login", json=wrong)).status_code
            for replica in (near, far, near, far, near, far)
        ]
    assert statuses == [401] * 5 + [429]


def test_one_web_client_is_capped_across_action_servers(environment, redis_prefix):
    environment.set(REDIS_URL=REDIS_URL, REDIS_KEY_PREFIX=redis_prefix[0], HANDOFFS_PER_CLIENT_HOUR="2")
    action_server.share_counters(environment.settings())
    try:
        desks = [services.handoff_desk()]
        services.handoff_desk.cache_clear()  # a second action server: a desk of its own, the same Redis
        desks.append(services.handoff_desk())
        opened = [
            desks[n % 2].request(f"rest:{n}", "rest", "requested", {}, [("person", "ayuda")], client="client-1")[0]
            for n in range(3)
        ]
    finally:
        services.share_counters(lambda namespace: None)
    assert [view is not None for view in opened] == [True, True, False]
