"""`python -m bot privacy forget <conversation>` erases one person from every store, and only them.

Two people leave data everywhere (Rasa's tracker, hand-offs with messages and advisors' notes, the
audit log, Redis); one is forgotten; the other's data is byte for byte what it was. On SQLite the
forgotten person's words are not even left in the database files."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from production_stores import production, tracker_store  # noqa: F401 (a fixture)
from rasa.core.tracker_store import SQLTrackerStore
from rasa.shared.core.events import BotUttered, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from bot import retention
from bot.handoff import HandoffStore
from bot.privacy import hash_id
from bot.settings import PROJECT_ROOT, Settings
from ops import runner

NOW = dt.datetime(2031, 3, 10, 12, 0, tzinfo=dt.timezone.utc)
TABLES = ("events", "handoffs", "handoff_messages", "advisor_audit", "answer_reviews")


@dataclass(frozen=True)
class Person:
    conversation: str
    phone: str  # what they wrote, and what must disappear with them
    name: str


ANA = Person("whatsapp:+51987654321", "987654321", "Anacleta")
BETO = Person("whatsapp:+51912345678", "912345678", "Bartolomeo")


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def _seed(settings: Settings, trackers: SQLTrackerStore, person: Person, redis_locks=None) -> None:
    """What one person leaves behind: a conversation, two hand-offs (one attended, with an advisor's
    reply and a note), the audit of the advisor's work, and the conversation's lock in Redis."""
    at = (NOW - dt.timedelta(days=3)).timestamp()
    tracker = DialogueStateTracker(person.conversation, slots=[])
    tracker.update(UserUttered(f"soy {person.name}, mi celular es {person.phone}", timestamp=at))
    tracker.update(BotUttered("Gracias, un asesor le escribirá.", timestamp=at + 1))
    asyncio.run(trackers.save(tracker))

    store = HandoffStore(settings.handoff_database_url, clock=Clock(NOW - dt.timedelta(days=3)))
    advisor = store.login("rosa", "clave-de-prueba-456")[1]
    profile = {"country": "Chile", "name": person.name}
    view = store.open(
        person.conversation, "whatsapp", "requested", 0, profile, [("person", f"llámenme al {person.phone}")]
    )
    store.claim(view.id, advisor.id)
    store.audit(advisor.id, "claim", view.id)
    store.audit_unless_recent(advisor.id, "read", view.id, dt.timedelta(minutes=10))
    store.add_message(view.id, "person", f"mi nombre es {person.name}")
    store.add_message(view.id, "advisor", f"Hola {person.name}, la llamo.", advisor.id)
    store.audit(advisor.id, "reply", view.id)
    store.add_message(view.id, "note", f"{person.name} tiene contrato en Chile", advisor.id)
    store.audit(advisor.id, "note", view.id)
    store.close(view.id, advisor.id)
    store.audit(advisor.id, "close", view.id)
    later = store.open(person.conversation, "whatsapp", "requested", 0, profile, [("person", person.phone)])
    store.cancel(later.id)
    store.audit(None, "login_failed", None, person.conversation)  # someone typed the id as a user name
    store.add_review(advisor.id, person.conversation, f"soy {person.name}", "¿Quiso decir…?", "som.phone")
    store.engine.dispose()
    if redis_locks is not None:
        redis_locks.issue_ticket(person.conversation)


def _rows(settings: Settings, person: Person) -> dict[str, list[tuple]]:
    """Every row, in every table, that holds the person's conversation id or words."""
    found: dict[str, list[tuple]] = {}
    for url in {settings.tracker_database_url, settings.handoff_database_url}:
        engine = sa.create_engine(url)
        with engine.connect() as connection:
            for table in TABLES:
                if sa.inspect(engine).has_table(table):
                    rows = connection.execute(sa.text(f"SELECT * FROM {table} ORDER BY 1")).all()
                    text = [row for row in rows if any(_names(value, person) for value in row)]
                    found.setdefault(table, []).extend(text)
        engine.dispose()
    return found


def _names(value, person: Person) -> bool:
    return isinstance(value, str) and any(mark in value for mark in (person.conversation, person.phone, person.name))


def _audit_of_cases(settings: Settings) -> list[tuple]:
    engine = sa.create_engine(settings.handoff_database_url)
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text("SELECT advisor_id, action, handoff_id, detail FROM advisor_audit ORDER BY id")
        )
        result = [tuple(row) for row in rows]
    engine.dispose()
    return result


def _forget(settings: Settings, person: Person, *arguments: str, answer: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bot", "privacy", "forget", person.conversation, "--now", NOW.isoformat(), *arguments],
        cwd=PROJECT_ROOT, input=answer, capture_output=True, text=True,
        env={**os.environ, **runner.child_env(settings)},
    )  # fmt: skip


def _prepare(settings: Settings) -> None:
    HandoffStore(settings.handoff_database_url).add_advisor("rosa", "clave-de-prueba-456", "Rosa")


def test_forgetting_one_person_on_sqlite_leaves_the_other_untouched(tmp_path):
    settings = Settings.from_env({"SOM_VAR_DIR": str(tmp_path), "REDIS_URL": ""})
    _prepare(settings)
    trackers = tracker_store(settings)
    for person in (ANA, BETO):
        _seed(settings, trackers, person)
    trackers.engine.dispose()
    beto_before, ana_before = _rows(settings, BETO), _rows(settings, ANA)
    assert all(ana_before[table] for table in TABLES) and all(beto_before[table] for table in TABLES)
    files = lambda: b"".join(p.read_bytes() for p in sorted(Path(tmp_path).glob("*.db*")))  # noqa: E731
    assert ANA.phone.encode() in files()

    refused = _forget(settings, ANA, answer="no\n")
    assert refused.returncode == 1 and "No se borró nada." in refused.stdout
    assert _rows(settings, ANA) == ana_before

    result = _forget(settings, ANA, answer="sí\n")

    assert result.returncode == 0, result.stderr
    assert f"Datos de la conversación «{ANA.conversation}»" in result.stdout
    assert "¿Borrarlos de forma definitiva?" in result.stdout
    assert "historial de la conversación (Rasa): 2 evento(s)" in result.stdout
    assert "derivaciones a asesores: 2, con 4 mensaje(s) y 1 nota(s) internas" in result.stdout
    assert "auditoría: 6 registro(s)" in result.stdout
    assert "Se borró:" in result.stdout and f"conversation={hash_id(ANA.conversation)}" in result.stdout
    assert _rows(settings, BETO) == beto_before
    assert _rows(settings, ANA) == {table: [] for table in TABLES}
    # The audit keeps who did what and when, without the case; and it records the erasure, by counts.
    audit = _audit_of_cases(settings)
    assert [(action, case) for _, action, case, detail in audit if detail == "erased"] == [
        ("claim", None), ("read", None), ("reply", None), ("note", None), ("close", None), ("login_failed", None),
    ]  # fmt: skip
    assert audit[-1] == (
        None, "forget", None,
        "tracker_events=2 handoffs=2 messages=4 notes=1 audit_entries=6 reviews=1 redis_keys=-",
    )  # fmt: skip
    # Deleted means gone from the files too (secure_delete, and the write-ahead log emptied).
    assert ANA.phone.encode() not in files() and ANA.name.encode() not in files()
    assert BETO.phone.encode() in files()
    assert len([row for row in audit if row[2] is not None]) == 5  # the other person's cases stay linked

    again = _forget(settings, ANA, "--yes")
    assert again.returncode == 0 and "No hay datos de la conversación" in again.stdout


def test_forgetting_one_person_on_postgresql_and_redis_leaves_the_other_untouched(production):  # noqa: F811
    from rasa.utils.endpoints import EndpointConfig

    from extensions.lock_store import AtomicRedisLockStore

    settings, _, client = production
    _prepare(settings)
    trackers = tracker_store(settings)
    locks = AtomicRedisLockStore(EndpointConfig(url="127.0.0.1", port=6379, db=0, key_prefix=settings.redis_key_prefix))
    for person in (ANA, BETO):
        _seed(settings, trackers, person, redis_locks=locks)
    trackers.engine.dispose()
    prefix = settings.redis_key_prefix
    client.set(f"{prefix}:whatsapp:seen:SM0001", "1", ex=3600)  # a delivery, not a person: stays
    beto_before = _rows(settings, BETO)
    assert all(_rows(settings, ANA)[table] for table in TABLES) and all(beto_before[table] for table in TABLES)
    keys = lambda: sorted(k.decode() for k in client.scan_iter(f"{prefix}:*"))  # noqa: E731
    assert keys() == sorted(
        [f"{prefix}:lock:{ANA.conversation}", f"{prefix}:lock:{BETO.conversation}", f"{prefix}:whatsapp:seen:SM0001"]
    )

    result = _forget(settings, ANA, "--yes")

    assert result.returncode == 0, result.stderr
    assert "¿Borrarlos" not in result.stdout and "Redis: 1 clave(s)" in result.stdout
    assert _rows(settings, BETO) == beto_before
    assert _rows(settings, ANA) == {table: [] for table in TABLES}
    assert keys() == [f"{prefix}:lock:{BETO.conversation}", f"{prefix}:whatsapp:seen:SM0001"]
    assert _audit_of_cases(settings)[-1] == (
        None, "forget", None,
        "tracker_events=2 handoffs=2 messages=4 notes=1 audit_entries=6 reviews=1 redis_keys=1",
    )  # fmt: skip


def test_an_unreachable_redis_is_reported_and_the_rest_is_still_erased(tmp_path):
    settings = Settings.from_env({"SOM_VAR_DIR": str(tmp_path), "REDIS_URL": "redis://127.0.0.1:1/0"})
    _prepare(settings)
    trackers = tracker_store(settings)
    _seed(settings, trackers, ANA)
    trackers.engine.dispose()
    from integrations.redis_keys import conversation_keys

    report = retention.forget(settings, ANA.conversation, conversation_keys(settings), now=NOW)

    assert report.tracker_events == 2 and report.handoffs.handoffs == 2
    assert report.keys is None and report.problems and report.problems[0].startswith("Redis")
    assert _rows(settings, ANA) == {table: [] for table in TABLES}
