"""Which answers the knowledge base confuses: a leave-one-out check of its questions against itself.

Every entry lists the questions people ask for it. Each question is ranked by a ranker that does not
know it, as the dialogue would rank it as the first message of a conversation classified as the
entry's topic; when another entry comes first, the editors learn which two entries overlap and by
which question, before a person asks it.

Rebuilding the ranker once per question is exact but slow (8 minutes for the shipped content). By
default, the questions are held out in folds: fold j leaves out one question of every entry (its j-th,
except where that would leave out two questions with the same words, which could then no longer be
mistaken for each other), so one rebuild serves every entry (10 seconds). Each question is still
ranked without itself; its entry's rivals miss one question each, which rarely changes what comes
first: on the shipped content, 98 % of the questions come out as with one rebuild per question, and
the figure is about one point higher (71.3 % against 70.3 %).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bot.followups import asked_aspects, is_short
from bot.knowledge import Entry, KnowledgeBase
from bot.ranker import Context, EntryRanker
from bot.text import plain


@dataclass(frozen=True)
class Miss:
    """A question whose entry did not come first."""

    expected: str
    ranked_first: str
    question: str


@dataclass(frozen=True)
class Confusion:
    """Questions of `expected` that `ranked_first` wins: `count` of the entry's `asked`."""

    expected: str
    ranked_first: str
    count: int
    asked: int
    example: str


@dataclass(frozen=True)
class ConfusionReport:
    questions: int
    correct: int
    by_entry: dict[str, tuple[int, int]]  # entry id → (questions ranked first, questions)
    misses: tuple[Miss, ...]

    @property
    def accuracy(self) -> float:
        """Leave-one-out top-1: the share of questions whose own entry comes first."""
        return self.correct / self.questions if self.questions else 1.0

    def entry_accuracy(self, entry_id: str) -> float:
        correct, asked = self.by_entry[entry_id]
        return correct / asked if asked else 1.0

    def pairs(self, limit: int | None = None) -> list[Confusion]:
        """The confusions, most frequent first (then the larger share of the entry's questions)."""
        counts = Counter((m.expected, m.ranked_first) for m in self.misses)
        examples: dict[tuple[str, str], str] = {}
        for miss in self.misses:
            examples.setdefault((miss.expected, miss.ranked_first), miss.question)
        pairs = [
            Confusion(expected, first, count, self.by_entry[expected][1], examples[expected, first])
            for (expected, first), count in counts.items()
        ]
        pairs.sort(key=lambda c: (-c.count, -c.count / c.asked, c.expected, c.ranked_first))
        return pairs[:limit] if limit is not None else pairs


def first_message_context(kb: KnowledgeBase, entry: Entry, question: str) -> Context:
    """The context `Responder._rank` builds when `question` opens a conversation and the classifier is
    sure it is about the entry's topic: the country the question names, the aspects a short one asks."""
    country = kb.countries.get(kb.countries.find_in_text(question))
    return Context(
        intent_scores={entry.topic or "": 1.0},
        topic=None,
        country=country.name if country else None,
        remembered_country=None,
        aspects=asked_aspects(question) if is_short(question) else frozenset(),
    )


def check(
    kb: KnowledgeBase,
    per_question: bool = False,
    ranker: Callable[[KnowledgeBase], EntryRanker] = EntryRanker,
) -> ConfusionReport:
    """Rank every question of every ranked entry with that question left out of the ranker."""
    entries = [e for e in ranker(kb).entries if e.questions]
    folds = _single_questions(entries) if per_question else _folds(entries)
    correct, misses = 0, []
    by_entry = {e.id: [0, 0] for e in entries}
    for held_out in folds:
        fold_ranker = ranker(_without(kb, held_out))
        for entry_id, index in held_out:
            entry = kb.entries[entry_id]
            question = entry.questions[index]
            ranked = fold_ranker.rank(question, first_message_context(kb, entry, question))
            first = ranked[0].entry.id if ranked else ""
            by_entry[entry_id][1] += 1
            if first == entry_id:
                correct += 1
                by_entry[entry_id][0] += 1
            else:
                misses.append(Miss(entry_id, first, question))
    return ConfusionReport(
        questions=sum(asked for _, asked in by_entry.values()),
        correct=correct,
        by_entry={entry_id: (hits, asked) for entry_id, (hits, asked) in by_entry.items()},
        misses=tuple(misses),
    )


HeldOut = list[tuple[str, int]]  # (entry id, index of the question left out)


def _single_questions(entries: Iterable[Entry]) -> list[HeldOut]:
    return [[(e.id, i)] for e in entries for i in range(len(e.questions))]


def _folds(entries: list[Entry]) -> list[HeldOut]:
    """Each question in exactly one fold, at most one per entry in a fold, and never two with the same
    words in one fold (left out together, neither could be mistaken for the other)."""
    pending = {e.id: list(range(len(e.questions))) for e in entries}
    words = {(e.id, i): plain(q) for e in entries for i, q in enumerate(e.questions)}
    folds: list[HeldOut] = []
    while any(pending.values()):
        fold: HeldOut = []
        taken: set[str] = set()
        for entry_id, indexes in pending.items():
            index = next((i for i in indexes if words[entry_id, i] not in taken), None)
            if index is None:
                continue
            indexes.remove(index)
            fold.append((entry_id, index))
            taken.add(words[entry_id, index])
        folds.append(fold)
    return folds


def _without(kb: KnowledgeBase, held_out: HeldOut) -> KnowledgeBase:
    """The knowledge base with the held-out questions removed from their entries."""
    removed: dict[str, set[int]] = {}
    for entry_id, index in held_out:
        removed.setdefault(entry_id, set()).add(index)
    entries = {
        entry_id: dataclasses.replace(
            entry, questions=tuple(q for i, q in enumerate(entry.questions) if i not in removed[entry_id])
        )
        if entry_id in removed
        else entry
        for entry_id, entry in kb.entries.items()
    }
    return dataclasses.replace(kb, entries=entries)
