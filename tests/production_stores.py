"""A PostgreSQL schema and a Redis key prefix of one test's own, on the machine's services: the
production profile's stores for tests of the purge and of `privacy forget`."""

from __future__ import annotations

import os
import uuid

import pytest
import sqlalchemy as sa

from bot.settings import Settings

POSTGRES_TEST = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def production(tmp_path):
    """(settings, schema, redis client): DATABASE_URL points into a fresh schema of the `test` database,
    REDIS_KEY_PREFIX is fresh; both are dropped afterwards."""
    redis = pytest.importorskip("redis")
    admin = sa.create_engine(POSTGRES_TEST)
    client = redis.Redis.from_url(REDIS_URL)
    try:
        with admin.connect():
            pass
        client.ping()
    except (sa.exc.OperationalError, redis.RedisError):
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL (database test) and Redis are required under CI")
        pytest.skip("PostgreSQL on 127.0.0.1:5432 (database test) or Redis on 127.0.0.1:6379 is not running")
    schema = f"som_{uuid.uuid4().hex[:10]}"
    prefix = f"somtest{uuid.uuid4().hex[:8]}"
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    settings = Settings.from_env(
        {
            "SOM_VAR_DIR": str(tmp_path),
            "DATABASE_URL": f"{POSTGRES_TEST}?options=-csearch_path%3D{schema}",
            "REDIS_URL": REDIS_URL,
            "REDIS_KEY_PREFIX": prefix,
        }
    )
    yield settings, schema, client
    with admin.begin() as connection:
        connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)


def tracker_store(settings: Settings):
    """Rasa's own SQL tracker store on these settings' database: var/tracker.db, or the schema the
    `production` fixture made (named in DATABASE_URL's `options=-csearch_path=<schema>`)."""
    from rasa.core.tracker_store import SQLTrackerStore
    from rasa.shared.core.domain import Domain

    if not settings.database_url:
        return SQLTrackerStore(Domain.empty(), dialect="sqlite", db=str(settings.sqlite_path))
    schema = sa.engine.make_url(settings.database_url).query["options"].removeprefix("-csearch_path=")
    return SQLTrackerStore(
        Domain.empty(), dialect="postgresql", host="127.0.0.1", port=5432, db="test", username="postgres",
        query={"options": f"-csearch_path={schema}"},
    )  # fmt: skip
