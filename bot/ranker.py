"""Which knowledge-base entry answers a message: question-level retrieval with the conversation as prior.

Every entry lists the questions people ask for it (`questions:` in data/content/). A message is
compared with those questions, the title and the text (TF-IDF over character and word n-grams of
the folded text, so typos and missing accents still match), and the lexical score is nudged by what
the assistant already knows: the intent the classifier chose, the conversation's topic and country,
and the aspect a short follow-up asks about. The ranker is rebuilt from the knowledge base itself,
so an editor's new question works on the next reload, without retraining.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from bot.countries import CountryIndex
from bot.knowledge import Entry, KnowledgeBase
from bot.text import plain

# Intents that are conversation moves, not subjects the knowledge base explains.
CONVERSATIONAL_INTENTS = frozenset(
    {"greet", "goodbye", "thank", "affirm", "deny", "bot_challenge", "show_menu", "human_handoff", "out_of_scope", "inform"}
)
# Greetings and fillers that say nothing about what the person needs.
FILLER_WORDS = frozenset(
    "hola holaa buenas buenos buen dia dias tardes noches por favor porfa porfavor xfa gracias quiero quisiera "
    "saber necesito informacion info consulta una pregunta señor senor señorita senorita disculpe".split()
)
CHAR_SHARE = 0.6  # of the similarity that comes from character n-grams (typos), the rest from words
BODY_WEIGHT = 0.75  # the entry's own text counts less than the questions people ask for it
CENTROID_SHARE = 0.7  # of the question score that comes from all its questions together, the rest from the closest
INTENT_WEIGHT = 0.2  # times the classifier's confidence in the entry's topic
TOPIC_WEIGHT = 0.1  # the entry belongs to the conversation's current topic
ASPECT_WEIGHT = 0.15  # the entry answers the aspect the message asks about
COUNTRY_NAMED_WEIGHT = 0.35  # the entry is about the country this message names
COUNTRY_REMEMBERED_WEIGHT = 0.12  # … or the country of the conversation
OTHER_COUNTRY_PENALTY = 0.4  # the entry is about another country than the one in the conversation
NO_COUNTRY_PENALTY = 0.05  # a country guide when no country is known: the general entry comes first


@dataclass(frozen=True)
class Context:
    """What the conversation tells about a message, beyond its words."""

    intent_scores: Mapping[str, float] = None  # type: ignore[assignment]
    topic: str | None = None
    country: str | None = None  # named in this message
    remembered_country: str | None = None
    aspects: frozenset[str] = frozenset()

    def intent_score(self, intent: str | None) -> float:
        return (self.intent_scores or {}).get(intent or "", 0.0)


@dataclass(frozen=True)
class Scored:
    entry: Entry
    score: float
    lexical: float


def content_words(text: str, countries: CountryIndex, fuzzy: bool = True) -> str:
    """What a text asks, for comparison: no greetings or fillers, and no country names, which the
    ranker weighs as a prior instead (otherwise every question naming Chile would resemble every other)."""
    return " ".join(w for w in plain(countries.without_countries(text, fuzzy)).split() if w not in FILLER_WORDS)


class EntryRanker:
    def __init__(self, kb: KnowledgeBase) -> None:
        self.entries = tuple(
            e for e in kb.entries.values() if e.topic and e.topic not in CONVERSATIONAL_INTENTS and (e.questions or e.intent)
        )
        self.topics = frozenset(e.topic for e in self.entries)
        self.countries = kb.countries
        questions, question_owner, bodies = [], [], []
        for index, entry in enumerate(self.entries):
            for text in (*entry.questions, entry.title):
                questions.append(content_words(text, kb.countries, fuzzy=False))
                question_owner.append(index)
            bodies.append(content_words(" ".join((entry.title, *entry.messages)), kb.countries, fuzzy=False))
        self._char = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True)
        self._word = TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True, token_pattern=r"\w+")
        corpus = questions + bodies
        self._char.fit(corpus)
        self._word.fit(corpus)
        self._questions = self._vectors(questions)
        self._bodies = self._vectors(bodies)
        owners = np.asarray(question_owner)
        self._centroids = sparse.csr_matrix(
            normalize(np.vstack([np.asarray(self._questions[owners == i].mean(axis=0)) for i in range(len(self.entries))]))
        ) if self.entries else self._bodies
        # Questions grouped by entry, for a max per entry with one reduceat.
        owner = np.asarray(question_owner)
        self._order = np.argsort(owner, kind="stable")
        self._starts = np.searchsorted(owner[self._order], np.arange(len(self.entries)))

    def _vectors(self, texts: list[str]) -> sparse.csr_matrix:
        chars = normalize(self._char.transform(texts)) * np.sqrt(CHAR_SHARE)
        words = normalize(self._word.transform(texts)) * np.sqrt(1 - CHAR_SHARE)
        return sparse.hstack([chars, words], format="csr")

    def lexical(self, text: str) -> np.ndarray:
        """Cosine similarity of the message with each entry: its questions (the closest one and all of
        them together, which is steadier than one lucky match), or its text."""
        words = content_words(text, self.countries)
        if not words or not self.entries:
            return np.zeros(len(self.entries))
        vector = self._vectors([words]).T
        by_question = (self._questions @ vector).toarray().ravel()[self._order]
        best_question = np.maximum.reduceat(by_question, self._starts)
        by_centroid = (self._centroids @ vector).toarray().ravel()
        by_questions = (1 - CENTROID_SHARE) * best_question + CENTROID_SHARE * by_centroid
        by_body = (self._bodies @ vector).toarray().ravel()
        return np.maximum(by_questions, BODY_WEIGHT * by_body)

    def rank(self, text: str, context: Context) -> list[Scored]:
        """Entries best first, each with its score (lexical similarity plus the context's priors)."""
        lexical = self.lexical(text)
        scored = [
            Scored(entry, float(lexical[i]) + self._prior(entry, context), float(lexical[i]))
            for i, entry in enumerate(self.entries)
        ]
        return sorted(scored, key=lambda s: -s.score)

    def _prior(self, entry: Entry, context: Context) -> float:
        prior = INTENT_WEIGHT * context.intent_score(entry.topic)
        if context.topic and entry.topic == context.topic:
            prior += TOPIC_WEIGHT
        if context.aspects & entry.aspects:
            prior += ASPECT_WEIGHT
        if entry.country:
            known = context.country or context.remembered_country
            if context.country == entry.country:
                prior += COUNTRY_NAMED_WEIGHT
            elif known == entry.country and entry.topic == context.topic:  # still talking about that country
                prior += COUNTRY_REMEMBERED_WEIGHT
            elif known:
                prior -= OTHER_COUNTRY_PENALTY
            else:
                prior -= NO_COUNTRY_PENALTY
        elif entry.topic == "andean_worker" and context.country:
            named = self.countries.get(context.country)
            if named and named.andean_community:  # a Bolivian, Colombian or Ecuadorian worker
                prior += COUNTRY_NAMED_WEIGHT
        return prior


class LiveRanker:
    """The ranker for the knowledge base as it is now: rebuilt when the content is reloaded."""

    def __init__(self) -> None:
        self._built_for: KnowledgeBase | None = None
        self._ranker: EntryRanker | None = None

    def for_kb(self, kb: KnowledgeBase) -> EntryRanker:
        if kb is not self._built_for or self._ranker is None:
            self._ranker, self._built_for = EntryRanker(kb), kb
        return self._ranker
