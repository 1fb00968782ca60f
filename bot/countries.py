"""Countries people name: normalise what they type ("eeuu", "boliviana", "espaa") to one name."""

from __future__ import annotations

import datetime as dt
import difflib
import functools
import re
from dataclasses import dataclass

from bot.text import fold

_WORD = re.compile(r"[a-z0-9.]+")
FUZZY_MATCHES_KEPT = 20_000  # words and phrases whose closest known match is remembered
# Ordinary words that are close misspellings of a country or demonym: never read them as one.
NOT_COUNTRIES = frozenset(
    {
        "espanol", "ingles", "frances", "aleman", "portugues", "salvador", "paraguas", "bolivar", "ecuatorial",
        "colonia", "colonial", "portal", "americanos", "americanas",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Country:
    name: str
    aliases: tuple[str, ...]
    andean_community: bool
    bilateral: str | None
    multilateral: str | None
    agreement_status: str
    notes: str | None
    sources: tuple  # of bot.sources.Source
    reviewed: dt.date
    verify: str | None = None
    cities: tuple[str, ...] = ()  # where Peruvians work there, so "estoy en Milán" names Italy


class CountryIndex:
    """Looks countries up by any alias, tolerating small misspellings."""

    FUZZY_CUTOFF = 0.84
    MIN_FUZZY_LENGTH = 5

    def __init__(self, countries: list[Country]) -> None:
        self.by_name = {c.name: c for c in countries}
        self._by_alias: dict[str, str] = {}
        for country in countries:
            for alias in (country.name, *country.aliases, *country.cities):
                self._by_alias[fold(alias)] = country.name
        # Misspellings are looked for among countries and demonyms only: a word one letter away
        # from a city is more often an ordinary word ("patrón" / Paterson, "semilla" / Sevilla).
        cities = {fold(city) for country in countries for city in country.cities}
        self._fuzzy_keys = [alias for alias in self._by_alias if alias not in cities]
        self._longest_alias_words = max((len(a.split()) for a in self._by_alias), default=1)
        # Fuzzy matching compares with every alias; people repeat the same words, so each is compared once.
        self._closest_alias = functools.lru_cache(maxsize=FUZZY_MATCHES_KEPT)(self._compare_with_aliases)

    def __iter__(self):
        return iter(self.by_name.values())

    def get(self, name: str | None) -> Country | None:
        canonical = self.normalise(name) if name else None
        return self.by_name.get(canonical) if canonical else None

    def normalise(self, value: str) -> str | None:
        """The canonical name for an alias or a close misspelling of one, else None."""
        key = fold(value).strip(" .,;:!?¿¡")
        if key in self._by_alias:
            return self._by_alias[key]
        if len(key) < self.MIN_FUZZY_LENGTH or key in NOT_COUNTRIES:
            return None
        return self._closest_alias(key)

    def _compare_with_aliases(self, key: str) -> str | None:
        close = difflib.get_close_matches(key, self._fuzzy_keys, n=1, cutoff=self.FUZZY_CUTOFF)
        return self._by_alias[close[0]] if close else None

    def find_in_text(self, text: str) -> str | None:
        """The first country named in free text, trying longer phrases first ("corea del sur")."""
        return next((name for name, _ in self._mentions(_WORD.findall(fold(text))) if name), None)

    def without_countries(self, text: str, fuzzy: bool = True) -> str:
        """The words of `text` that name no country (folded): what it says besides where.

        Without `fuzzy`, only exact aliases count: quick enough for the whole knowledge base."""
        return " ".join(word for name, word in self._mentions(_WORD.findall(fold(text)), fuzzy) if not name)

    def _mentions(self, words: list[str], fuzzy: bool = True):
        """(country or None, words) for each run of words, longest country phrases first."""
        look_up = self.normalise if fuzzy else self._by_alias.get
        start = 0
        while start < len(words):
            for size in range(min(self._longest_alias_words, len(words) - start), 0, -1):
                found = look_up(" ".join(words[start : start + size]))
                if found:
                    yield found, " ".join(words[start : start + size])
                    start += size
                    break
            else:
                yield None, words[start]
                start += 1

    def aliases(self) -> dict[str, list[str]]:
        """Canonical name → every alias, for generating the NLU lookup table and synonyms."""
        result: dict[str, list[str]] = {name: [] for name in self.by_name}
        for country in self.by_name.values():
            result[country.name] = sorted({a.lower() for a in country.aliases} - {country.name.lower()})
        return result
