"""The long-lived objects one process shares: built once, on first use, from the environment."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

from bot.handoff import HandoffStore
from bot.handoff_desk import HandoffDesk
from bot.knowledge import LiveKnowledgeBase
from bot.office_hours import OfficeHours
from bot.ranker import LiveRanker
from bot.ratelimit import SharedCounter
from bot.settings import NLU_DIR, Settings
from bot.vocabulary import LiveVocabulary

SharedCounters = Callable[[str], SharedCounter | None]  # a namespace -> its counters, or None
_shared_counters: SharedCounters = lambda namespace: None  # noqa: E731 (replaced by the server that starts)


def share_counters(counters: SharedCounters) -> None:
    """Let this process's limits count together with other processes' (Redis, in the production
    profile): the server that starts calls it before anything is built (extensions/action_server.py);
    the domain cannot reach Redis itself."""
    global _shared_counters
    _shared_counters = counters
    handoff_desk.cache_clear()


@lru_cache(maxsize=1)
def settings() -> Settings:
    return Settings.from_env()


@lru_cache(maxsize=1)
def knowledge_base() -> LiveKnowledgeBase:
    return LiveKnowledgeBase(settings().content_dir)


@lru_cache(maxsize=1)
def handoff_desk() -> HandoffDesk:
    current = settings()
    current.var_dir.mkdir(parents=True, exist_ok=True)
    return HandoffDesk(
        HandoffStore(current.handoff_database_url),
        knowledge_base(),
        OfficeHours.load(current.office_hours_file),
        current.handoff_wait_minutes,
        current.handoffs_per_client_hour,
        _shared_counters("handoff"),
    )


@lru_cache(maxsize=1)
def vocabulary() -> LiveVocabulary:
    return LiveVocabulary(sorted(NLU_DIR.glob("*.yml")), knowledge_base())


@lru_cache(maxsize=1)
def ranker() -> LiveRanker:
    return LiveRanker()


def warm_up() -> None:
    """Build what the first answer needs (content, vocabulary, ranker) before anyone is waiting for it."""
    kb = knowledge_base().current()
    vocabulary().current()
    ranker().for_kb(kb)
