"""Where each fact comes from, and which sources the SOM accepts as authorities.

The table of primary authorities lives in data/content/sources.yml. A source is the SOM leaflet,
an editor's note pointing at the fact sheet (`facts:<section>`), or a page's full URL. Only the
leaflet and pages of a listed authority are ever shown to the person; everything else stays in the
data for editors.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from bot.text import fold

LEAFLET = "leaflet"
LEAFLET_TITLE = "folleto del SOM"
SOURCE_PATTERN = re.compile(r"^(leaflet|facts:.+|https?://\S+)$")  # a few official pages are still http
# Words that tell the person to confirm a fact, which every `verify` entry must contain.
CONFIRM_WORDS = re.compile(r"\bconfirm")


@dataclass(frozen=True)
class Source:
    ref: str  # leaflet, facts:<section> or a page's URL
    name: str | None = None  # the institution, when the table's name for the domain is too broad

    @property
    def is_url(self) -> bool:
        return self.ref.startswith(("https://", "http://"))

    @property
    def host(self) -> str:
        return (urlsplit(self.ref).hostname or "").lower() if self.is_url else ""

    @property
    def is_bare_domain(self) -> bool:
        """A site's home page proves nothing: a fact needs the page that states it."""
        return self.is_url and urlsplit(self.ref).path.strip("/") == "" and not urlsplit(self.ref).query


@dataclass(frozen=True)
class Authority:
    domain: str
    name: str


class SourcePolicy:
    """Primary authorities by domain (a listed domain covers its subdomains)."""

    def __init__(self, authorities: Iterable[Authority]) -> None:
        # Longest domains first, so migraciones.gob.pe names itself before gob.pe does.
        self.authorities = tuple(sorted(authorities, key=lambda a: -len(a.domain)))

    def authority_for(self, source: Source) -> Authority | None:
        host = source.host
        if not host:
            return None
        return next((a for a in self.authorities if host == a.domain or host.endswith("." + a.domain)), None)

    def is_primary(self, source: Source) -> bool:
        return source.ref == LEAFLET or (not source.is_bare_domain and self.authority_for(source) is not None)

    def shown(self, sources: Iterable[Source]) -> str | None:
        """The line the person sees after "Fuente: ", from the first primary source; None if none."""
        for source in sources:
            if source.ref == LEAFLET:
                return LEAFLET_TITLE
            authority = self.authority_for(source)
            if authority and not source.is_bare_domain:
                return f"{source.name or authority.name} — {source.ref}"
        return None

    def problems(self, where: str, sources: Iterable[Source], verify: str | None, texts: Iterable[str]) -> list[str]:
        """What breaks the policy in one sourced item, each naming the item."""
        sources = tuple(sources)
        found = [
            f"{where}: bare domain '{s.ref}' (cite the page that states the fact)" for s in sources if s.is_bare_domain
        ]
        if not any(self.is_primary(s) for s in sources) and not verify:
            found.append(
                f"{where}: no primary source (leaflet or a page of an authority in sources.yml) and no 'verify'"
            )
        if verify and not any(CONFIRM_WORDS.search(fold(text)) for text in texts):
            found.append(f"{where}: has 'verify' but never tells the person to confirm (\"confírmelo con …\")")
        return found


def parse_sources(raw: Any, where: str, problems: list[str]) -> tuple[Source, ...]:
    """`sources:` items are strings or {url, name} mappings."""
    sources = []
    for item in raw or ():
        ref, name = (item.get("url"), item.get("name")) if isinstance(item, dict) else (item, None)
        ref = str(ref or "")
        if not SOURCE_PATTERN.match(ref):
            problems.append(f"{where}: malformed source '{ref}' (use leaflet, facts:<section> or a page's URL)")
            continue
        sources.append(Source(ref=ref, name=str(name) if name else None))
    if not sources:
        problems.append(f"{where}: missing sources")
    return tuple(sources)


def parse_policy(raw: Any, problems: list[str]) -> SourcePolicy:
    authorities = []
    for item in (raw or {}).get("primary") or ():
        if not isinstance(item, dict) or not item.get("domain") or not item.get("name"):
            problems.append(f"sources.yml: every authority needs a domain and a name: {item}")
            continue
        authorities.append(Authority(domain=str(item["domain"]).lower(), name=str(item["name"])))
    if not authorities:
        problems.append("sources.yml: no primary authorities listed")
    return SourcePolicy(authorities)
