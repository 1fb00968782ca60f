"""The one way this project opens a SQL database: the hand-off store, the tracker store and the purge."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa


def engine_for(database_url: str | sa.engine.URL) -> sa.engine.Engine:
    """An engine for SQLite (a kept pool with WAL pragmas) or a server database (checked connections)."""
    if sa.engine.make_url(database_url).get_backend_name() == "sqlite":
        # A pool keeps connections (and their pragmas) instead of reopening the file every query.
        engine = sa.create_engine(
            database_url, poolclass=sa.pool.QueuePool, connect_args={"check_same_thread": False, "timeout": 30}
        )
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return sa.create_engine(database_url, pool_pre_ping=True)


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    """WAL lets readers work during a write; NORMAL sync skips an fsync per write (still crash-safe for the
    database, at worst losing the last turn on power loss); the busy timeout waits for another writer."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
