"""The words people use with the assistant, to tell a message it cannot read from one it can.

The classifier always picks some intent, and keyboard mashing ("qwpoe rtuy", "kkkk") can land on
one with high confidence. A message none of whose words is known, even misspelt, is not
understood: the dialogue then asks "¿Quiso decir…?" instead of answering the wrong topic. Known
words come from the NLU examples (how people write) and the knowledge base (what it talks about).
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Iterable
from pathlib import Path

import yaml

from bot.countries import FUZZY_MATCHES_KEPT
from bot.knowledge import KnowledgeBase, LiveKnowledgeBase
from bot.text import fold

WORD = re.compile(r"[a-zñ]{3,}")  # in folded text; shorter words ("si", "ok", "en") prove nothing
CLOSE_ENOUGH = 0.75  # "trabajr" → "trabajar", "italya" → "italia", "jubilasion" → "jubilacion"
ANNOTATION = re.compile(r"\]\{[^}]*\}|\]\([^)]*\)")  # entity annotations in NLU examples


WORDS_COMPARED = 8  # a message whose first eight unknown words are all far from known ones is not read
# difflib's ratio is 2·matches / (len(a) + len(b)): at CLOSE_ENOUGH, the shorter word is at least
# this share of the longer one, so only known words of about the same length can be close.
LENGTH_SHARE = CLOSE_ENOUGH / (2 - CLOSE_ENOUGH)


class Vocabulary:
    def __init__(self, words: Iterable[str]) -> None:
        self.words = frozenset(words)
        self._by_length: dict[int, list[str]] = {}
        for word in sorted(self.words):
            self._by_length.setdefault(len(word), []).append(word)
        # Each unknown word is compared with the known words once; people repeat their words.
        self._is_close_to_known = functools.lru_cache(maxsize=FUZZY_MATCHES_KEPT)(self._compare_with_known)

    @classmethod
    def from_files(cls, paths: Iterable[Path]) -> Vocabulary:
        """Every word in the string values of these YAML files (NLU examples, content)."""
        words: set[str] = set()
        for path in paths:
            for text in _strings(yaml.safe_load(path.read_text(encoding="utf-8"))):
                words.update(WORD.findall(fold(ANNOTATION.sub("]", text))))
        return cls(words)

    def is_unreadable(self, text: str) -> bool:
        """True when the message has words and none of them is known or close to a known one."""
        if text.startswith("/"):  # a button payload, not typed text
            return False
        words = list(dict.fromkeys(WORD.findall(fold(text))))
        if not words or not self.words.isdisjoint(words):
            return False
        # Bounded work whatever the length of the message: a few words, each against its length band.
        return not any(self._is_close_to_known(word) for word in words[:WORDS_COMPARED])

    def _compare_with_known(self, word: str) -> bool:
        shortest, longest = int(len(word) * LENGTH_SHARE), int(len(word) / LENGTH_SHARE) + 1
        candidates = [known for size in range(shortest, longest + 1) for known in self._by_length.get(size, ())]
        return bool(difflib.get_close_matches(word, candidates, n=1, cutoff=CLOSE_ENOUGH))


class LiveVocabulary:
    """The words of the NLU examples and of the content as the live knowledge base has it now.

    Rebuilt when the knowledge base is reloaded, so words an editor adds are known at once."""

    def __init__(self, nlu_files: Iterable[Path], knowledge: LiveKnowledgeBase) -> None:
        self._nlu_files = tuple(nlu_files)
        self._knowledge = knowledge
        self._built_for: KnowledgeBase | None = None
        self._vocabulary = Vocabulary(())

    def current(self) -> Vocabulary:
        kb = self._knowledge.current()
        if kb is not self._built_for:
            content_files = sorted(self._knowledge.directory.glob("*.yml"))
            self._vocabulary = Vocabulary.from_files([*self._nlu_files, *content_files])
            self._built_for = kb
        return self._vocabulary


def _strings(value: object) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
