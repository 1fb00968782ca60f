"""The production profile with real processes: two Rasa replicas on PostgreSQL and Redis.

Each run gets its own database and Redis key prefix, and removes them afterwards.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa
from conftest import ALWAYS_OPEN_HOURS, ARTIFACTS, free_port
from standins import PUBLIC_URL, WhatsAppPerson

from bot.handoff import HandoffStore
from bot.settings import PROJECT_ROOT, Settings
from ops import runner

pytestmark = pytest.mark.model
POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


def _require_services() -> None:
    problems = []
    try:
        sa.create_engine(POSTGRES_ADMIN).connect().close()
    except Exception as error:
        problems.append(f"PostgreSQL on 127.0.0.1:5432 ({type(error).__name__})")
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=2).close()
    except OSError:
        problems.append("Redis on 127.0.0.1:6379")
    if problems:
        if os.environ.get("CI"):
            pytest.fail(f"required under CI: {', '.join(problems)} (.ci/run starts them)")
        pytest.skip(f"not running: {', '.join(problems)}")


def _rabbitmq_available() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=2).close()
        return True
    except OSError:
        return False


def _consecutive_free_ports(count: int) -> int:
    while True:
        first = free_port()
        if all(not runner.port_in_use(first + i) for i in range(count)):
            return first


REST_TOKEN = "rest-token-of-the-cluster-tests"  # the production profile loads REST only with one


class Replica:
    def __init__(self, url: str) -> None:
        self.url = url

    def say(self, sender: str, text: str) -> list[dict]:
        """As one person behind the proxy: each sender has an address of its own."""
        body = json.dumps({"sender": sender, "message": text}).encode()
        address = ".".join(str(b) for b in hashlib.sha256(sender.encode()).digest()[:4])
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {REST_TOKEN}",
                   "X-Forwarded-For": address}  # fmt: skip
        request = urllib.request.Request(f"{self.url}/webhooks/rest/webhook", body, headers)
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.load(response)

    def say_text(self, sender: str, text: str) -> str:
        return "\n".join(m.get("text", "") for m in self.say(sender, text))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, twilio_standin):
    _require_services()
    database = f"som_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{database}"'))
    var_dir = tmp_path_factory.mktemp("cluster")
    (var_dir / "office_hours.yml").write_text(ALWAYS_OPEN_HOURS)
    prefix = f"somtest{uuid.uuid4().hex[:8]}"
    rabbitmq = _rabbitmq_available()
    settings = Settings.from_env(
        {
            **os.environ,
            "SOM_VAR_DIR": str(var_dir),
            "SOM_OFFICE_HOURS_FILE": str(var_dir / "office_hours.yml"),
            "DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{database}",
            "REDIS_URL": REDIS_URL,
            "REDIS_KEY_PREFIX": prefix,
            **({"AMQP_URL": AMQP_URL, "AMQP_QUEUE": prefix} if rabbitmq else {}),
            **twilio_standin.env(),
            "PUBLIC_URL": PUBLIC_URL,
            "REST_TOKEN": REST_TOKEN,
            "RASA_PORT": str(_consecutive_free_ports(2)),
            "ACTION_PORT": str(free_port()),
        }
    )
    ARTIFACTS.mkdir(exist_ok=True)
    with open(ARTIFACTS / "cluster.log", "w") as log:
        stack = runner.Stack(settings, runner.train(settings), log=log, replicas=2).start()
        stack.database = database
        yield stack
        stack.stop()
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)
    admin.dispose()  # PostgreSQL may have restarted meanwhile: drop with fresh connections
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


def _events(stack, sender: str) -> list[dict]:
    engine = sa.create_engine(stack.settings.database_url)
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT data FROM events WHERE sender_id = :s ORDER BY id"), {"s": sender})
        events = [json.loads(row[0]) for row in rows]
    engine.dispose()
    return events


def test_two_replicas_serve_each_conversation_in_order_without_losing_anything(cluster):
    replicas = [Replica(url) for url in cluster.rasa_urls]
    turns = ["hola", "quiero trabajar en españa", "y en chile?", "muchas gracias"]
    senders = [f"rest:cluster-{i}-{uuid.uuid4().hex[:6]}" for i in range(50)]

    def converse(sender: str) -> list[int]:
        answered = []
        with ThreadPoolExecutor(2) as pair:  # two consecutive messages at once, one to each replica
            for first in (0, 2):
                replies = pair.map(lambda i: replicas[i % 2].say(sender, turns[i]), (first, first + 1))
                answered += [len(r) for r in replies]
        return answered

    with ThreadPoolExecutor(50) as pool:
        answered = list(pool.map(converse, senders))
    assert all(all(count > 0 for count in counts) for counts in answered), answered

    for sender in senders:
        events = _events(cluster, sender)
        user_turns = [i for i, e in enumerate(events) if e["event"] == "user"]
        assert sorted(events[i]["text"] for i in user_turns) == sorted(turns), sender
        for start, end in zip(user_turns, [*user_turns[1:], len(events)]):
            turn = [e.get("name") for e in events[start:end] if e["event"] == "action"]
            # one whole turn per message: never two messages processed at once
            assert turn.count("action_answer") == 1 and turn[-1] == "action_listen", (sender, turn)
        timestamps = [e["timestamp"] for e in events]
        assert timestamps == sorted(timestamps)


def test_a_whatsapp_message_twilio_delivers_to_both_replicas_is_answered_once(cluster, twilio_standin, kb):
    first, second = (WhatsAppPerson(url, twilio_standin) for url in cluster.rasa_urls)
    second.address = first.address
    greeting = first.fields("hola")
    assert first.post(greeting)[0] == 200
    assert second.post(greeting)[0] == 200  # Twilio's retry, routed to the other replica
    first.send("gracias")
    replies = first.wait_reply(kb.main_entry("thank").messages[0])
    assert sum("asistente virtual" in reply for reply in replies) == 1, replies


def test_a_killed_replica_comes_back_with_the_conversation_and_the_queue(cluster):
    first, second = (Replica(url) for url in cluster.rasa_urls)
    person, waiting = f"rest:kill-{uuid.uuid4().hex[:6]}", f"rest:queue-{uuid.uuid4().hex[:6]}"
    assert "¿De qué país" in first.say_text(person, "mis aportes de afuera me sirven para la pension?")
    assert "puesto" in first.say_text(waiting, "quiero hablar con un asesor")

    cluster.kill("rasa-0", signal.SIGKILL)
    assert "Perú y Chile" in second.say_text(person, "y con chile?")  # the other replica goes on
    cluster.start_process("rasa-0")
    cluster.wait_ready()
    assert "Perú y España" in first.say_text(person, "y con españa?")
    queue = HandoffStore(cluster.settings.handoff_database_url).queue("waiting")
    assert waiting in [h.conversation_id for h in queue]


def test_rest_needs_the_token_in_production(cluster):
    body = json.dumps({"sender": "whatsapp:+51987654321", "message": "cancelar"}).encode()
    for headers in ({}, {"Authorization": "Bearer a-guessed-token-of-some-length"}):
        request = urllib.request.Request(
            f"{cluster.rasa_urls[0]}/webhooks/rest/webhook", body, {"Content-Type": "application/json", **headers}
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 401


def test_the_action_server_answers_the_replicas_only(cluster):
    """The replicas carry the token of this start (the other tests converse through them); a call
    without it opens no hand-off, even for a priority case."""
    person = f"whatsapp:+5199{uuid.uuid4().int % 10**7:07d}"
    call = {
        "next_action": "action_answer", "sender_id": person, "version": "3.6.21", "domain": {},
        "tracker": {"sender_id": person, "slots": {}, "events": [], "latest_input_channel": "whatsapp",
                    "latest_message": {"text": "me quitaron el pasaporte", "entities": [], "intent_ranking": [],
                                       "intent": {"name": "human_handoff", "confidence": 1.0}}},
    }  # fmt: skip
    request = urllib.request.Request(
        f"http://127.0.0.1:{cluster.settings.action_port}/webhook", json.dumps(call).encode(),
        {"Content-Type": "application/json"},
    )  # fmt: skip
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 401
    assert HandoffStore(cluster.settings.handoff_database_url).open_for(person) is None


def test_action_server_down_gives_a_clear_message_and_recovers(cluster):
    replica = Replica(cluster.rasa_urls[1])
    person = f"rest:actions-down-{uuid.uuid4().hex[:6]}"
    cluster.kill("actions", signal.SIGKILL)
    try:
        text = replica.say_text(person, "hola")
        assert "problema técnico" in text and "0800-16872" in text
    finally:
        cluster.start_process("actions")
        cluster.wait_ready()
    assert "asistente virtual" in replica.say_text(person, "hola")


def test_events_are_published_to_rabbitmq(cluster):
    if "AMQP_URL" not in cluster.settings.env:
        if os.environ.get("CI"):
            pytest.fail("RabbitMQ is required under CI on this machine (127.0.0.1:5672)")
        pytest.skip("RabbitMQ is not running on 127.0.0.1:5672")
    import aio_pika

    person = f"rest:broker-{uuid.uuid4().hex[:6]}"
    Replica(cluster.rasa_urls[0]).say(person, "hola")
    queue_name = cluster.settings.env["AMQP_QUEUE"]

    async def published_events() -> list[dict]:
        connection = await aio_pika.connect_robust(AMQP_URL)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(queue_name, durable=True)
            events, deadline = [], time.monotonic() + 20
            while time.monotonic() < deadline and not any(e.get("event") == "bot" for e in events):
                message = await queue.get(fail=False)
                if message is None:
                    await asyncio.sleep(0.2)
                    continue
                await message.ack()
                body = json.loads(message.body)
                if body.get("sender_id") == person:
                    events.append(body)
            await queue.delete(if_unused=False, if_empty=False)
            return events

    events = asyncio.run(published_events())
    kinds = [e["event"] for e in events]
    assert "user" in kinds and "bot" in kinds, kinds


def test_purge_works_on_the_production_profile(cluster):
    person = f"rest:purge-{uuid.uuid4().hex[:6]}"
    Replica(cluster.rasa_urls[0]).say(person, "hola")
    result = subprocess.run(
        [sys.executable, "-m", "bot", "purge", "--older-than", "0"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, env=runner.child_env(cluster.settings),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert _events(cluster, person) == []


def test_postgres_restart_under_load_is_survived(cluster):
    """Last in this module: it restarts the machine's PostgreSQL."""
    version = subprocess.run(["ls", "/etc/postgresql"], capture_output=True, text=True).stdout.split()
    if not version:
        pytest.skip("PostgreSQL is not managed by pg_ctlcluster here")
    replicas = [Replica(url) for url in cluster.rasa_urls]
    outcomes: list[str] = []

    def load() -> None:
        for i in range(20):
            try:
                replicas[i % 2].say(f"rest:pg-{i}", "hola")
                outcomes.append("answered")
            except urllib.error.URLError as error:
                outcomes.append(f"error {error}")
            time.sleep(0.2)

    with ThreadPoolExecutor(2) as pool:
        running = pool.submit(load)
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version[0], "main", "restart"], check=True)
        running.result()
    assert "answered" in outcomes
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # both replicas reconnect by themselves
        try:
            if all("asistente virtual" in r.say_text(f"after-{uuid.uuid4().hex[:6]}", "hola") for r in replicas):
                break
        except urllib.error.URLError:
            pass
        time.sleep(1)
    else:
        pytest.fail("the replicas did not recover after PostgreSQL restarted")
    assert all(p.poll() is None for p in cluster.processes.values())  # nothing crashed
