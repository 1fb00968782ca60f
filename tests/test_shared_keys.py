"""Replicas agree on webhook redeliveries and Telegram buttons through the real Redis, and a Redis
that stops answering costs one time-out, not one per message, and loses nothing."""

from __future__ import annotations

import os
import socket
import threading
import uuid

import pytest
import redis

from bot.messaging import CallbackData, RecentIds
from bot.settings import Settings
from integrations.redis_keys import SharedKeys, shared_keys

REDIS_URL = "redis://127.0.0.1:6379/0"
LONG_PAYLOAD = '/inform{"entry": "' + "social_security.a_very_long_entry_identifier" * 2 + '"}'


@pytest.fixture
def namespace():
    """A namespace of its own in the machine's Redis, emptied afterwards."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError:
        if os.environ.get("CI"):
            pytest.fail("Redis on 127.0.0.1:6379 is required under CI")
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    prefix = f"somtest{uuid.uuid4().hex[:8]}:"
    yield prefix
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)


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
