"""`make eval`'s measures beyond Rasa's NLU report: the simple peer classifier, which entry answers a
held-out question, multi-turn conversations (follow-ups, no repeats, destinations) and the sources.

The NLU comes in as a `parse` function (text → Rasa's parse result), so this module needs no Rasa:
`make eval` passes one that asks the running server, and tests can pass their own.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from bot.dialogue import Reply, Responder, Turn
from bot.knowledge import KnowledgeBase
from bot.text import fold

Parse = Callable[[str], dict]
ANNOTATION = re.compile(r"\[([^\]]+)\](\{[^}]*\}|\([^)]*\))")


# --- the peer: TF-IDF + logistic regression ------------------------------------------------


def nlu_examples(paths: Iterable[Path]) -> list[tuple[str, str]]:
    """(text, intent) pairs from Rasa NLU YAML files, entity annotations reduced to their text."""
    pairs = []
    for path in paths:
        for block in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("nlu") or []:
            if "intent" not in block:
                continue
            for line in str(block.get("examples") or "").splitlines():
                text = line.strip()
                if text.startswith("- "):
                    pairs.append((ANNOTATION.sub(r"\1", text[2:].strip()), block["intent"]))
    return pairs


PEERS = {
    # The plain peer: scikit-learn's defaults (word TF-IDF, logistic regression).
    "peer_plain": lambda: make_pipeline(TfidfVectorizer(), LogisticRegression(max_iter=2000)),
    # A stronger one: character n-grams of the folded text, as typo-tolerant as DIET's own featurizers.
    "peer_char_ngrams": lambda: make_pipeline(
        TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4), sublinear_tf=True, preprocessor=fold),
        LogisticRegression(max_iter=2000, C=10),
    ),
}


def peer_accuracy(train: list[tuple[str, str]], test: list[tuple[str, str]], peer_name: str = "peer_plain") -> float:
    """Held-out intent accuracy of a simple peer the shipped pipeline must beat."""
    peer = PEERS[peer_name]()
    peer.fit([t for t, _ in train], [i for _, i in train])
    predicted = peer.predict([t for t, _ in test])
    return sum(p == i for p, (_, i) in zip(predicted, test)) / max(len(test), 1)


# --- conversations ---------------------------------------------------------------------------


@dataclass
class Outcome:
    """One turn's result: what was expected, what the assistant did, and whether it matched."""

    conversation: str
    turn: int
    said: str
    expected: str
    got: str
    ok: bool
    text: str = ""


@dataclass
class Conversation:
    """A multi-turn case: what the person says and what each answer must be (entry id or outcome)."""

    name: str
    turns: list[dict[str, Any]] = field(default_factory=list)


def load_conversations(path: Path) -> list[Conversation]:
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return [Conversation(c["name"], list(c["turns"])) for c in raw.get("conversations") or []]


def load_entry_questions(path: Path) -> list[Conversation]:
    """The held-out entry set as one-turn conversations."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return [
        Conversation(f"{item['entry']} #{n}", [{"say": question, "expect": item["entry"]}])
        for item in raw.get("entries") or []
        for n, question in enumerate(item["questions"], 1)
    ]


# What a conversation turn may expect instead of an entry id (besides "handoff"; conversation moves
# give their entry's id).
PROMPT_OUTCOMES = {
    "followup.which_one": "which_one",
    "followup.what_exactly": "what_exactly",
    "followup.no_detail": "no_detail",
    "conversation.did_you_mean": "fallback",
    "conversation.not_understood": "fallback",
    "menu": "menu",
}


def outcome_of(reply: Reply) -> str:
    """The entry that answered, or what the assistant did instead ("handoff" or a PROMPT_OUTCOMES value)."""
    if reply.handoff:
        return "handoff"
    return reply.entry or PROMPT_OUTCOMES.get(reply.prompt or "", reply.prompt or "nothing")


class ConversationRunner:
    """Plays conversations through the NLU and the dialogue, carrying slots as the action does."""

    def __init__(self, responder: Responder, parse: Parse) -> None:
        self.responder = responder
        self.parse = parse

    def turn_for(self, text: str, slots: dict[str, Any]) -> Turn:
        parsed = self.parse(text)
        entities = {e.get("entity"): e.get("value") for e in parsed.get("entities") or []}
        return Turn(
            intent=(parsed.get("intent") or {}).get("name") or "nlu_fallback",
            text=text,
            ranking=tuple((r["name"], r.get("confidence", 0.0)) for r in parsed.get("intent_ranking") or []),
            country=entities.get("country"),
            entry=entities.get("entry"),
            slots=dict(slots),
        )

    def play(self, conversation: Conversation) -> list[Outcome]:
        slots: dict[str, Any] = {"shown_privacy": True}
        outcomes = []
        for number, step in enumerate(conversation.turns, 1):
            reply = self.responder.respond(self.turn_for(step["say"], slots))
            slots.update(reply.slots)
            got, text = outcome_of(reply), "\n".join(m.text for m in reply.messages)
            expected = str(step["expect"])
            ok = got == expected and all(fold(part) in fold(text) for part in step.get("contains") or ())
            ok = ok and not any(fold(part) in fold(text) for part in step.get("not_contains") or ())
            outcomes.append(Outcome(conversation.name, number, step["say"], expected, got, ok, text))
        return outcomes


def accuracy(outcomes: list[Outcome], first_turns: bool = True) -> float:
    counted = [o for o in outcomes if first_turns or o.turn > 1]
    return sum(o.ok for o in counted) / max(len(counted), 1)


# --- sources -----------------------------------------------------------------------------------


def source_figures(kb: KnowledgeBase, today: dt.date, stale_days: int = 365) -> dict[str, int]:
    """Items (entries and country rows) with a primary source, flagged `verify`, neither; bare domains."""
    items = [(e.sources, e.verify, e.reviewed) for e in kb.entries.values()]
    items += [(c.sources, c.verify, c.reviewed) for c in kb.countries]
    counts: Counter[str] = Counter()
    for sources, verify, reviewed in items:
        primary = any(kb.policy.is_primary(s) for s in sources)
        counts["primary"] += primary
        counts["flagged"] += bool(verify)
        counts["neither"] += not primary and not verify
        counts["bare_domains"] += sum(s.is_bare_domain for s in sources)
        counts["stale"] += (today - reviewed).days > stale_days
    counts["items"] = len(items)
    return dict(counts)
