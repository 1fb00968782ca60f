"""The knowledge base: sourced answers the SOM maintains as YAML files in `data/content/`.

Content is validated as it is loaded (every problem names its file and entry) and reloaded when a
file changes, so an edit is live without retraining or restarting.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bot.countries import Country, CountryIndex
from bot.sources import Source, SourcePolicy, parse_policy, parse_sources

logger = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 700
MAX_MESSAGES_PER_ENTRY = 4
AUDIENCES = frozenset(
    {
        "potential_migrant",
        "emigrant",
        "potential_returnee",
        "returnee",
        "family",
        "andean_worker",
        "immigrant",
        "all",
    }
)
# Intents the NLU can predict (the contract shared with outside evaluations).
INTENTS = (
    "greet", "goodbye", "thank", "affirm", "deny", "bot_challenge", "show_menu",
    "human_handoff", "out_of_scope", "inform", "som_info", "contact_channels", "work_abroad",
    "job_offer_check", "rights_abroad", "social_security", "return_to_peru", "returned_migrant",
    "family_abroad", "andean_worker", "foreigner_work_peru",
)  # fmt: skip
# Every intent but `inform` (a bare country or detail) has one main entry that answers it.
ANSWERED_INTENTS = tuple(intent for intent in INTENTS if intent != "inform")
# What a follow-up question can ask about an entry's subject ("¿y cuánto cuesta?"): see `bot.followups`.
ASPECTS = frozenset(
    {
        "permit",
        "who",
        "where",
        "documents",
        "cost",
        "duration",
        "tourist",
        "recognition",
        "social_security",
        "help",
        "scams",
    }
)
URL_PATTERN = re.compile(r"^https://[A-Za-z0-9.-]+\.[A-Za-z]{2,}(/[^\s]*)?$")
SPECIAL_FILES = (
    "countries.yml", "intent_titles.yml", "menu.yml", "office_hours.yml", "canned_replies.yml", "sources.yml",
)  # fmt: skip


class ContentError(Exception):
    """The content files have problems; `problems` lists them, one per line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Button:
    title: str
    goto: str | None = None
    intent: str | None = None


@dataclass(frozen=True)
class Link:
    title: str
    url: str


@dataclass(frozen=True)
class Entry:
    id: str
    title: str
    messages: tuple[str, ...]
    sources: tuple[Source, ...]
    reviewed: dt.date
    audiences: tuple[str, ...] = ()
    intent: str | None = None  # set on the one main entry of an intent
    topic: str | None = None  # the conversation topic (an intent) the entry belongs to
    country: str | None = None  # the destination it is about
    aspects: frozenset[str] = frozenset()  # the follow-up questions it answers
    # Other topics whose follow-ups it answers too (the SOM's cost, after its address or phone).
    follows: frozenset[str] = frozenset()
    questions: tuple[str, ...] = ()  # how people ask for it, for the ranker
    contact: str | None = None  # who confirms what the entry does not state
    buttons: tuple[Button, ...] = ()
    links: tuple[Link, ...] = ()
    verify: str | None = None
    file: str = ""


@dataclass(frozen=True)
class MenuItem:
    title: str
    intent: str
    audience: str


@dataclass(frozen=True)
class KnowledgeBase:
    entries: dict[str, Entry]
    countries: CountryIndex
    titles: dict[str, str]
    menu: tuple[MenuItem, ...]
    policy: SourcePolicy
    aspect_names: dict[str, str]  # how the person is told which detail is missing

    def entry(self, entry_id: str) -> Entry:
        return self.entries[entry_id]

    def main_entry(self, intent: str) -> Entry:
        """The entry that answers `intent`: every intent but `inform` has one (checked on load)."""
        entry = self.find_main_entry(intent)
        if entry is None:
            raise KeyError(f"no main entry answers intent '{intent}'")
        return entry

    def find_main_entry(self, intent: str) -> Entry | None:
        """The entry that answers `intent`, or None for an intent nothing answers (`inform`, `nlu_fallback`)."""
        return next((e for e in self.entries.values() if e.intent == intent), None)

    def title(self, intent: str) -> str:
        return self.titles.get(intent, intent)

    @classmethod
    def load(cls, content_dir: Path) -> KnowledgeBase:
        """Load and validate every file; raise `ContentError` listing all problems."""
        problems: list[str] = []
        entries: dict[str, Entry] = {}
        aspect_names: dict[str, str] = {}
        for path in sorted(content_dir.glob("*.yml")):
            if path.name in SPECIAL_FILES:
                continue
            raw = _read_yaml(path, problems)
            aspect_names.update((raw or {}).get("aspect_names") or {})
            for item in (raw or {}).get("entries") or []:
                entry = _parse_entry(item, path.name, problems)
                if entry is None:
                    continue
                if entry.id in entries:
                    problems.append(f"{path.name}: {entry.id}: duplicate id (also in {entries[entry.id].file})")
                entries[entry.id] = entry
        countries = _parse_countries(_read_yaml(content_dir / "countries.yml", problems), problems)
        titles = (_read_yaml(content_dir / "intent_titles.yml", problems) or {}).get("titles") or {}
        menu = _parse_menu(_read_yaml(content_dir / "menu.yml", problems), problems)
        policy = parse_policy(_read_yaml(content_dir / "sources.yml", problems), problems)
        kb = cls(
            entries=entries,
            countries=CountryIndex(countries),
            titles=dict(titles),
            menu=menu,
            policy=policy,
            aspect_names=aspect_names,
        )
        problems.extend(kb._cross_reference_problems())
        if problems:
            raise ContentError(problems)
        return kb

    def _cross_reference_problems(self) -> Iterable[str]:
        for entry in self.entries.values():
            for button in entry.buttons:
                if button.goto and button.goto not in self.entries:
                    yield f"{entry.file}: {entry.id}: button '{button.title}' points to missing entry '{button.goto}'"
                if button.intent and button.intent not in INTENTS:
                    yield f"{entry.file}: {entry.id}: button '{button.title}' uses unknown intent '{button.intent}'"
            if entry.intent and entry.intent not in INTENTS:
                yield f"{entry.file}: {entry.id}: unknown intent '{entry.intent}'"
            for topic in sorted(({entry.topic} if entry.topic else set()) | entry.follows):
                if topic not in ANSWERED_INTENTS:
                    yield f"{entry.file}: {entry.id}: unknown topic '{topic}'"
            if entry.follows and not entry.aspects:
                yield f"{entry.file}: {entry.id}: follows other topics but answers no aspect"
            if entry.country and self.countries.get(entry.country) is None:
                yield f"{entry.file}: {entry.id}: unknown country '{entry.country}' (use a name from countries.yml)"
            if entry.questions and not entry.topic:
                yield f"{entry.file}: {entry.id}: has questions but no topic"
            yield from self.policy.problems(f"{entry.file}: {entry.id}", entry.sources, entry.verify, entry.messages)
        first_with: dict[str, str] = {}
        for entry in self.entries.values():  # "¿Quiso decir…?" and the supervisors' review name entries by title
            if entry.title in first_with:
                yield f"{entry.file}: {entry.id}: title '{entry.title}' is also {first_with[entry.title]}'s"
            first_with.setdefault(entry.title, entry.id)
        for country in self.countries:
            texts = [t for t in (country.notes, country.bilateral, country.multilateral) if t]
            yield from self.policy.problems(f"countries.yml: {country.name}", country.sources, country.verify, texts)
        for intent in ANSWERED_INTENTS:
            mains = [e.id for e in self.entries.values() if e.intent == intent]
            if len(mains) != 1:
                yield f"intent '{intent}' needs exactly one main entry, found {mains or 'none'}"
        for aspect in sorted(ASPECTS - set(self.aspect_names)):
            yield f"followups.yml: aspect_names: missing a name for '{aspect}'"
        for intent in INTENTS:
            if intent not in self.titles:
                yield f"intent_titles.yml: missing title for '{intent}'"
        for item in self.menu:
            if item.intent not in INTENTS:
                yield f"menu.yml: '{item.title}' uses unknown intent '{item.intent}'"


def _read_yaml(path: Path, problems: list[str]) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.append(f"{path.name}: file is missing")
    except yaml.YAMLError as error:
        problems.append(f"{path.name}: not valid YAML: {error}")
    return None


def _check_dated_and_sourced(item: dict, where: str, problems: list[str]) -> tuple[tuple[Source, ...], dt.date | None]:
    sources = parse_sources(item.get("sources"), where, problems)
    reviewed = item.get("reviewed")
    if not isinstance(reviewed, dt.date):
        problems.append(f"{where}: missing or malformed 'reviewed' date (YYYY-MM-DD)")
        reviewed = None
    return sources, reviewed


def _parse_entry(item: Any, file: str, problems: list[str]) -> Entry | None:
    if not isinstance(item, dict) or not item.get("id"):
        problems.append(f"{file}: an entry has no id")
        return None
    where = f"{file}: {item['id']}"
    messages = tuple(str(m).strip() for m in item.get("messages") or ())
    if not messages:
        problems.append(f"{where}: no messages")
    if len(messages) > MAX_MESSAGES_PER_ENTRY:
        problems.append(f"{where}: {len(messages)} messages, at most {MAX_MESSAGES_PER_ENTRY}")
    for number, message in enumerate(messages, 1):
        if len(message) > MAX_MESSAGE_CHARS:
            problems.append(f"{where}: message {number} has {len(message)} characters, at most {MAX_MESSAGE_CHARS}")
    if not item.get("title"):
        problems.append(f"{where}: missing title")
    audiences = tuple(item.get("audiences") or ())
    if not audiences or not set(audiences) <= AUDIENCES:
        problems.append(f"{where}: audiences must be a non-empty subset of {sorted(AUDIENCES)}")
    links = []
    for link in item.get("links") or ():
        url = str(link.get("url", ""))
        if not URL_PATTERN.match(url):
            problems.append(f"{where}: malformed link '{url}'")
        links.append(Link(title=str(link.get("title") or url), url=url))
    buttons = []
    for button in item.get("buttons") or ():
        if bool(button.get("goto")) == bool(button.get("intent")):
            problems.append(f"{where}: button '{button.get('title')}' needs exactly one of goto or intent")
        buttons.append(Button(title=str(button.get("title", "")), goto=button.get("goto"), intent=button.get("intent")))
    aspects = frozenset(str(a) for a in item.get("aspects") or ())
    if aspects - ASPECTS:
        problems.append(f"{where}: unknown aspects {sorted(aspects - ASPECTS)} (use {sorted(ASPECTS)})")
    questions = item.get("questions") or []
    if not isinstance(questions, list) or not all(isinstance(q, str) and q.strip() for q in questions):
        problems.append(f"{where}: questions must be a list of non-empty texts")
        questions = ()
    sources, reviewed = _check_dated_and_sourced(item, where, problems)
    return Entry(
        id=str(item["id"]),
        title=str(item.get("title", "")),
        messages=messages,
        sources=sources,
        reviewed=reviewed or dt.date.min,
        audiences=audiences,
        intent=item.get("intent"),
        topic=item.get("topic") or item.get("intent"),
        country=item.get("country"),
        aspects=aspects,
        follows=frozenset(str(t) for t in item.get("follows") or ()),
        questions=tuple(q.strip() for q in questions),
        contact=item.get("contact"),
        buttons=tuple(buttons),
        links=tuple(links),
        verify=item.get("verify"),
        file=file,
    )


def _parse_countries(raw: Any, problems: list[str]) -> list[Country]:
    countries = []
    for item in (raw or {}).get("countries") or []:
        where = f"countries.yml: {item.get('name', '?')}"
        sources, reviewed = _check_dated_and_sourced(item, where, problems)
        social_security = item.get("social_security") or {}
        status = social_security.get("status")
        if status not in ("confirmed", "partial", "unknown"):
            problems.append(f"{where}: social_security.status must be confirmed, partial or unknown")
        countries.append(
            Country(
                name=str(item["name"]),
                aliases=tuple(str(a) for a in item.get("aliases") or ()),
                andean_community=bool(item.get("andean_community")),
                bilateral=social_security.get("bilateral"),
                multilateral=social_security.get("multilateral"),
                agreement_status=status or "unknown",
                notes=item.get("notes"),
                sources=sources,
                reviewed=reviewed or dt.date.min,
                verify=item.get("verify"),
                cities=tuple(str(c) for c in item.get("cities") or ()),
            )
        )
    return countries


def _parse_menu(raw: Any, problems: list[str]) -> tuple[MenuItem, ...]:
    items = []
    for item in (raw or {}).get("menu") or []:
        if not item.get("title") or not item.get("intent"):
            problems.append(f"menu.yml: every item needs a title and an intent: {item}")
            continue
        items.append(MenuItem(title=item["title"], intent=item["intent"], audience=item.get("audience", "")))
    return tuple(items)


class LiveKnowledgeBase:
    """The knowledge base as it is on disk now: reloaded when a content file changes.

    A change that does not validate is logged and ignored, so a typo never takes answers down.
    """

    CHECK_INTERVAL_SECONDS = 1.0

    def __init__(self, content_dir: Path) -> None:
        self._dir = content_dir
        self._lock = threading.Lock()
        self._signature = self._read_signature()
        self._kb = KnowledgeBase.load(content_dir)
        self._checked_at = time.monotonic()

    def _read_signature(self) -> tuple:
        return tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(self._dir.glob("*.yml")))

    @property
    def directory(self) -> Path:
        return self._dir

    def current(self) -> KnowledgeBase:
        now = time.monotonic()
        if now - self._checked_at < self.CHECK_INTERVAL_SECONDS:
            return self._kb
        with self._lock:
            self._checked_at = now
            signature = self._read_signature()
            if signature != self._signature:
                self._signature = signature
                try:
                    self._kb = KnowledgeBase.load(self._dir)
                    logger.info("knowledge base reloaded (%d entries)", len(self._kb.entries))
                except ContentError as error:
                    logger.error("content change ignored, it has problems:\n%s", error)
        return self._kb
