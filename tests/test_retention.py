"""`python -m bot purge` deletes what is past the retention period and keeps the rest."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys

from rasa.core.tracker_store import SQLTrackerStore
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from bot.handoff import HandoffStore
from bot.settings import PROJECT_ROOT, Settings
from ops import runner

DAY = 86400


def _save_conversation(store: SQLTrackerStore, sender: str, at: float) -> None:
    tracker = DialogueStateTracker(sender, slots=[])
    tracker.update(UserUttered("hola", timestamp=at))
    asyncio.run(store.save(tracker))


def _seed(settings: Settings) -> HandoffStore:
    trackers = SQLTrackerStore(Domain.empty(), dialect="sqlite", db=str(settings.sqlite_path))
    now = dt.datetime.now(dt.timezone.utc).timestamp()
    _save_conversation(trackers, "old-conversation", now - 40 * DAY)
    _save_conversation(trackers, "recent-conversation", now - 2 * DAY)
    handoffs = HandoffStore(settings.handoff_database_url)
    handoffs.add_advisor("ana", "una-clave-larga")
    for conversation in ("old-conversation", "recent-conversation"):
        view = handoffs.open(conversation, "rest", "requested", 0, {}, [("person", "hola")])
        handoffs.claim(view.id, 1)
        handoffs.close(view.id, 1)
    with handoffs.engine.begin() as connection:
        connection.execute(
            "update handoffs set created_at = :old where conversation_id = 'old-conversation'",
            {"old": dt.datetime.utcnow() - dt.timedelta(days=40)},
        )
    return handoffs


def test_purge_deletes_only_conversations_past_the_period(tmp_path):
    settings = Settings.from_env({"SOM_VAR_DIR": str(tmp_path)})
    handoffs = _seed(settings)
    result = subprocess.run(
        [sys.executable, "-m", "bot", "purge", "--older-than", "30"],
        # The parent's environment too: the command must share this process's clock (and faketime's).
        cwd=PROJECT_ROOT, capture_output=True, text=True, env={**os.environ, **runner.child_env(settings)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Eliminadas 1 conversaciones y 1 derivaciones" in result.stdout
    trackers = SQLTrackerStore(Domain.empty(), dialect="sqlite", db=str(settings.sqlite_path))
    assert asyncio.run(trackers.keys()) == ["recent-conversation"]
    assert [h.conversation_id for h in handoffs.queue("closed")] == ["recent-conversation"]
