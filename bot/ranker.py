"""Which knowledge-base entry answers a message: question-level retrieval with the conversation as prior.

Every entry lists the questions people ask for it (`questions:` in data/content/). A message is
compared with those questions, the title and the text (TF-IDF over character and word n-grams of
the folded text, so typos and missing accents still match), and the lexical score is nudged by what
the assistant already knows: the intent the classifier chose, the conversation's topic and country,
and the aspect a short follow-up asks about. The ranker is rebuilt from the knowledge base itself,
so an editor's new question works on the next reload, without retraining.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from bot.countries import CountryIndex
from bot.knowledge import Entry, KnowledgeBase
from bot.text import plain

# Intents that are conversation moves, not subjects the knowledge base explains.
CONVERSATIONAL_INTENTS = frozenset(
    {
        "greet",
        "goodbye",
        "thank",
        "affirm",
        "deny",
        "bot_challenge",
        "show_menu",
        "human_handoff",
        "out_of_scope",
        "inform",
    }
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
# The intent a question about an aspect is classified as, wherever its entry lives: "where do I complain
# in Italy?" is rights_abroad for the classifier, and Italy's guide answers it.
ASPECT_INTENTS = {"help": "rights_abroad", "scams": "job_offer_check"}
COUNTRY_AWARE_INTENTS = frozenset({"social_security"})


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


class _QueryVector:
    """One message's TF-IDF vector, as the fitted vectorizer computes it, written into a dense array.

    sklearn's `transform` spends most of its time validating its input; for one short message per
    turn, counting the n-grams directly is several times faster and gives the same numbers."""

    def __init__(self, vectorizer: TfidfVectorizer, offset: int, scale: float) -> None:
        self.analyze = vectorizer.build_analyzer()
        self.vocabulary = vectorizer.vocabulary_
        self.idf = vectorizer.idf_
        self.offset, self.scale = offset, scale

    def write(self, text: str, dense: np.ndarray) -> None:
        counts = Counter(self.analyze(text))
        columns = [self.vocabulary.get(gram) for gram in counts]
        known = [(j, n) for j, n in zip(columns, counts.values()) if j is not None]
        if not known:
            return
        index = np.fromiter((j for j, _ in known), dtype=np.int64, count=len(known))
        values = (1.0 + np.log(np.fromiter((n for _, n in known), dtype=float, count=len(known)))) * self.idf[index]
        dense[self.offset + index] = values * (self.scale / np.sqrt(values @ values))


class EntryRanker:
    def __init__(self, kb: KnowledgeBase) -> None:
        self.entries = tuple(
            e
            for e in kb.entries.values()
            if e.topic and e.topic not in CONVERSATIONAL_INTENTS and (e.questions or e.intent)
        )
        self.topics = frozenset(e.topic for e in self.entries if e.topic)
        self.countries = kb.countries
        questions, question_owner, bodies = [], [], []
        for index, entry in enumerate(self.entries):
            for text in (*entry.questions, entry.title):
                questions.append(content_words(text, kb.countries, fuzzy=False))
                question_owner.append(index)
            bodies.append(content_words(" ".join((entry.title, *entry.messages)), kb.countries, fuzzy=False))
        char = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True)
        word = TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True, token_pattern=r"\w+")
        shares = (np.sqrt(CHAR_SHARE), np.sqrt(1 - CHAR_SHARE))
        corpus = questions + bodies or [""]
        every_text = sparse.hstack(
            [char.fit_transform(corpus) * shares[0], word.fit_transform(corpus) * shares[1]], format="csr"
        )
        self._query = (_QueryVector(char, 0, shares[0]), _QueryVector(word, len(char.vocabulary_), shares[1]))
        self._width = every_text.shape[1]
        owners = np.asarray(question_owner, dtype=np.int64)
        by_question = every_text[: len(questions)]
        centroids = [np.asarray(by_question[owners == i].mean(axis=0)) for i in range(len(self.entries))]
        centroids_matrix = sparse.csr_matrix(normalize(np.vstack(centroids))) if centroids else by_question
        # One matrix, one product per message: every question, then each entry's centroid, then its text.
        self._index = sparse.vstack([by_question, centroids_matrix, every_text[len(questions) :]], format="csr")
        self._question_count = len(questions)
        self._order = np.argsort(owners, kind="stable")
        self._starts = np.searchsorted(owners[self._order], np.arange(len(self.entries)))
        self._masks = _Masks(self.entries, kb.countries)

    def lexical(self, text: str) -> np.ndarray:
        """Cosine similarity of the message with each entry: its questions (the closest one and all of
        them together, which is steadier than one lucky match), or its text."""
        words = content_words(text, self.countries)
        if not words or not self.entries:
            return np.zeros(len(self.entries))
        query = np.zeros(self._width)
        for part in self._query:
            part.write(words, query)
        similarity = self._index @ query
        n, q = len(self.entries), self._question_count
        best_question = np.maximum.reduceat(similarity[:q][self._order], self._starts)
        by_questions = (1 - CENTROID_SHARE) * best_question + CENTROID_SHARE * similarity[q : q + n]
        return np.maximum(by_questions, BODY_WEIGHT * similarity[q + n :])

    def rank(self, text: str, context: Context) -> list[Scored]:
        """Entries best first, each with its score (lexical similarity plus the context's priors)."""
        lexical = self.lexical(text)
        scores = lexical + self._masks.priors(context)
        return [
            Scored(self.entries[i], float(scores[i]), float(lexical[i])) for i in np.argsort(-scores, kind="stable")
        ]


class _Masks:
    """The entries' topics, countries and aspects as arrays, so the priors cost a few vector operations."""

    def __init__(self, entries: tuple[Entry, ...], countries: CountryIndex) -> None:
        topics = {e.topic for e in entries}
        # An entry belongs to its topic's conversation, and to those it `follows` (answers their follow-ups).
        self.by_topic = {t: np.array([e.topic == t or t in e.follows for e in entries]) for t in topics}
        self.by_intent = {
            t: np.array([e.topic == t or t in {ASPECT_INTENTS.get(a) for a in e.aspects} for e in entries])
            for t in topics
        }
        self.by_aspect = {
            a: np.array([a in e.aspects for e in entries]) for a in {a for e in entries for a in e.aspects}
        }
        self.country = np.array([e.country or "" for e in entries], dtype=object)
        self.has_country = self.country != ""
        self.andean_general = self.by_topic.get("andean_worker", np.zeros(len(entries), bool)) & ~self.has_country
        # Main entries that compose their answer for the country named (the agreement with it, its guide…).
        self.answers_for_any_country = np.array([e.intent in COUNTRY_AWARE_INTENTS for e in entries])
        self.countries = countries
        self.none = np.zeros(len(entries), bool)

    def priors(self, context: Context) -> np.ndarray:
        prior = np.zeros(len(self.country))
        for intent, confidence in (context.intent_scores or {}).items():
            if intent in self.by_intent:
                prior += INTENT_WEIGHT * confidence * self.by_intent[intent]
        in_topic = self.by_topic.get(context.topic or "", self.none)
        prior += TOPIC_WEIGHT * in_topic
        if context.aspects:
            prior += ASPECT_WEIGHT * np.logical_or.reduce([self.by_aspect.get(a, self.none) for a in context.aspects])
        known = context.country or context.remembered_country
        named = self.country == context.country if context.country else self.none
        remembered = (self.country == known) & in_topic & ~named if known else self.none  # still talking about it
        other = self.has_country & ~named & ~(self.country == known) if known else self.none
        prior += COUNTRY_NAMED_WEIGHT * named + COUNTRY_REMEMBERED_WEIGHT * remembered - OTHER_COUNTRY_PENALTY * other
        if context.country:
            prior += COUNTRY_REMEMBERED_WEIGHT * self.answers_for_any_country
        if not known:
            prior -= NO_COUNTRY_PENALTY * self.has_country
        andean = self.countries.get(context.country) if context.country else None
        if andean is not None and andean.andean_community:  # a Bolivian, Colombian or Ecuadorian worker
            prior += COUNTRY_NAMED_WEIGHT * self.andean_general
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
