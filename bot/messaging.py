"""Text handling for chat apps (WhatsApp, Telegram), kept apart from Rasa and the network.

Chat apps cap message length, have no buttons (WhatsApp through Twilio) or cap button data
(Telegram), redeliver webhooks, and let anyone type as fast and as much as they like. Everything
here is pure and synchronous so the channels in `channels/` stay thin and this is tested directly.
"""

from __future__ import annotations

import hashlib
import html
import re
import time
from collections import OrderedDict
from collections.abc import Hashable, Iterator, Sequence
from enum import Enum
from typing import Generic, Protocol, TypeVar

from bot.ratelimit import RateLimiter, SharedCounter
from bot.text import plain


class SharedKeys(SharedCounter, Protocol):
    """Keys several processes share (Redis, in `integrations.redis_keys`); None answers: not reachable now."""

    def add(self, key: str, value: str, ttl: float) -> bool | None: ...

    def set(self, key: str, value: str, ttl: float) -> None: ...

    def get(self, key: str) -> str | None: ...


WHATSAPP_MAX_CHARS = 1600  # Twilio rejects longer WhatsApp bodies (error 21617)
TELEGRAM_MAX_CHARS = 4096
TELEGRAM_MAX_CALLBACK_BYTES = 64
MAX_INPUT_CHARS = 1500  # longer input is cut before NLU: nobody asks one question in more
Option = tuple[str, str]  # (title, payload)

# A sentence ends at . ! ? … followed by a space, or at a line break; the space stays with it.
_SENTENCE = re.compile(r".*?(?:[.!?…]+(?=\s)|\n|\Z)\s*", re.S)
_WORD = re.compile(r"\S+\s*")
_NUMBER_WORDS = {
    "uno": 1, "una": 1, "primero": 1, "primera": 1, "dos": 2, "segundo": 2, "segunda": 2,
    "tres": 3, "tercero": 3, "tercera": 3, "cuatro": 4, "cuarto": 4, "cuarta": 4, "cinco": 5,
    "quinto": 5, "quinta": 5, "seis": 6, "sexto": 6, "sexta": 6, "siete": 7, "septimo": 7,
    "septima": 7, "ocho": 8, "octavo": 8, "octava": 8, "nueve": 9, "noveno": 9, "novena": 9,
    "diez": 10, "decimo": 10, "decima": 10,
}  # fmt: skip
_OPTION_FILLER = {"opcion", "numero", "nro", "no", "n", "la", "el", "de", "es"}
_MIN_PARTIAL_CHARS = 4
_BOLD = re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])")


# --- length ---------------------------------------------------------------------------------


def split_message(text: str, limit: int) -> list[str]:
    """Cut `text` into chunks of at most `limit` characters, in order, at sentence boundaries.

    A sentence longer than the limit is cut between words, and a word longer than the limit
    (a pasted link, say) is cut where it must.
    """
    text = text.strip()
    if len(text) <= limit:
        return [text] if text else []
    chunks: list[str] = []
    current = ""
    for sentence in _SENTENCE.findall(text):
        for piece in _fit(sentence, limit):
            if current and len((current + piece).rstrip()) > limit:
                chunks.append(current.strip())
                current = ""
            current += piece
    if current.strip():
        chunks.append(current.strip())
    return chunks


def _fit(sentence: str, limit: int) -> Iterator[str]:
    if len(sentence.rstrip()) <= limit:
        yield sentence
        return
    for word in _WORD.findall(sentence):
        while len(word.rstrip()) > limit:
            yield word[:limit]
            word = word[limit:]
        yield word


def cut_input(text: str, limit: int = MAX_INPUT_CHARS) -> tuple[str, bool]:
    """`text` shortened to `limit` characters at a word boundary, and whether it was cut."""
    if len(text) <= limit:
        return text, False
    head = text[:limit]
    space = head.rfind(" ")
    return (head[:space] if space > limit // 2 else head).rstrip(), True


# --- numbered options (WhatsApp has no buttons) ---------------------------------------------


def numbered_options(text: str, header: str, titles: Sequence[str]) -> str:
    """One message: the text, then "Responda con el número:" and the numbered titles."""
    lines = [f"{number}. {title}" for number, title in enumerate(titles, 1)]
    return "\n".join([text.rstrip(), "", header, *lines])


def match_option(reply: str, options: Sequence[Option]) -> str | None:
    """The payload of the option `reply` picks: its number ("1", "uno", "la 2", "1️⃣") or its words.

    Words pick an option when they are its whole title or a part of exactly one title, so a new
    question that happens to share a word with an option still goes to the NLU.
    """
    if not options:
        return None
    words = [w for w in plain(reply).split() if w not in _OPTION_FILLER] or plain(reply).split()
    if len(words) == 1:
        number = int(words[0]) if words[0].isdigit() else _NUMBER_WORDS.get(words[0])
        if number is not None:
            return options[number - 1][1] if 1 <= number <= len(options) else None
    wanted = " ".join(plain(reply).split())
    titles = [plain(title) for title, _ in options]
    if wanted in titles:
        return options[titles.index(wanted)][1]
    if len(wanted) < _MIN_PARTIAL_CHARS:
        return None
    containing = [i for i, title in enumerate(titles) if f" {wanted} " in f" {title} "]
    return options[containing[0]][1] if len(containing) == 1 else None


# --- what people type -------------------------------------------------------------------------


def as_free_text(text: str) -> str:
    """Typed text never reaches Rasa as a payload: "/human_handoff" typed is read as words.

    Payloads come only from our own buttons (or numbered options), so nobody can inject intents
    and entities by typing them.
    """
    return text.lstrip().lstrip("/").strip()


def telegram_html(text: str) -> str:
    """Our *bold* as Telegram HTML, with everything else escaped so no text can break a message."""
    return _BOLD.sub(r"<b>\1</b>", html.escape(text, quote=False))


# --- memory with expiry -------------------------------------------------------------------------

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ExpiringMap(Generic[K, V]):
    """A bounded map whose entries expire `ttl` seconds after they were last set.

    Webhook ids, remembered options and button keys must outlive a request but not grow forever.
    """

    def __init__(self, ttl: float, max_items: int = 50_000) -> None:
        self.ttl = ttl
        self.max_items = max_items
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def set(self, key: K, value: V, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._items.pop(key, None)
        self._items[key] = (now + self.ttl, value)
        self._expire(now)

    def get(self, key: K, now: float | None = None) -> V | None:
        now = time.monotonic() if now is None else now
        self._expire(now)
        item = self._items.get(key)
        return item[1] if item else None

    def _expire(self, now: float) -> None:
        """Entries are kept in expiry order, so expired ones are at the front."""
        while self._items and (len(self._items) > self.max_items or next(iter(self._items.values()))[0] <= now):
            self._items.popitem(last=False)


class RecentIds:
    """Webhook deliveries already seen: Twilio and Telegram redeliver when unsure we got one.

    With `shared` keys (Redis, several replicas) a redelivery to another replica is seen too."""

    def __init__(self, ttl: float = 3600.0, max_items: int = 50_000, shared: SharedKeys | None = None) -> None:
        self._seen: ExpiringMap[str, bool] = ExpiringMap(ttl, max_items)
        self._shared = shared

    def first_time(self, delivery_id: str, now: float | None = None) -> bool:
        if self._seen.get(delivery_id, now):
            return False
        self._seen.set(delivery_id, True, now)
        if self._shared is None:
            return True
        # Unknown (Redis unreachable): this process's memory decides.
        return self._shared.add(f"seen:{delivery_id}", "1", self._seen.ttl) is not False


class Flood(Enum):
    ALLOW = "allow"
    WARN = "warn"  # over the limit: tell the person once
    DROP = "drop"  # still over the limit and already told


class FloodLimiter:
    """At most `limit` messages per sender in `window` seconds; beyond that, one polite notice.
    With `shared` keys (several replicas), the messages and the notice are counted across them."""

    def __init__(
        self, limit: int = 10, window: float = 60.0, shared: SharedKeys | None = None, name: str = "flood"
    ) -> None:
        self._rate = RateLimiter(limit, window, shared, name)
        self._warned: ExpiringMap[str, bool] = ExpiringMap(window)
        self._shared, self._name = shared, name

    def check(self, sender: str, now: float | None = None) -> Flood:
        now = time.monotonic() if now is None else now
        if self._rate.allow(sender, now):
            return Flood.ALLOW
        first = (
            None if self._shared is None else self._shared.add(f"{self._name}-warned:{sender}", "1", self._rate.window)
        )
        if first is None:  # no shared keys, or unreachable: this process decides
            first = not self._warned.get(sender, now)
        if not first:
            return Flood.DROP
        self._warned.set(sender, True, now)
        return Flood.WARN


class WebFloodLimiter:
    """The flood limit for the web (REST, web chat), where one client can open any number of
    conversations: per conversation as on WhatsApp, and per client address over all of them."""

    def __init__(
        self, per_conversation: int, per_client: int, window: float = 60.0, shared: SharedKeys | None = None
    ) -> None:
        """Limits of 0 turn that limit off."""
        self._conversations = FloodLimiter(per_conversation, window, shared) if per_conversation else None
        self._clients = FloodLimiter(per_client, window, shared, "flood-client") if per_client else None

    def check(self, client: str, conversation: str, now: float | None = None) -> Flood:
        for limiter, key in ((self._clients, client), (self._conversations, conversation)):
            verdict = limiter.check(key, now) if limiter is not None else Flood.ALLOW
            if verdict is not Flood.ALLOW:
                return verdict
        return Flood.ALLOW


class CallbackData:
    """Telegram button data is at most 64 bytes: longer payloads travel as a short key."""

    KEY_PREFIX = "~"

    def __init__(self, ttl: float = 7 * 24 * 3600.0, shared: SharedKeys | None = None) -> None:
        self._payloads: ExpiringMap[str, str] = ExpiringMap(ttl)
        self._shared = shared  # with Redis, any replica (or this one after a restart) resolves a key

    def for_payload(self, payload: str) -> str:
        if len(payload.encode("utf-8")) <= TELEGRAM_MAX_CALLBACK_BYTES and not payload.startswith(self.KEY_PREFIX):
            return payload
        key = self.KEY_PREFIX + hashlib.sha256(payload.encode("utf-8")).hexdigest()[:24]
        self._payloads.set(key, payload)
        if self._shared is not None:
            self._shared.set(f"button:{key}", payload, self._payloads.ttl)
        return key

    def payload(self, data: str) -> str | None:
        """The payload behind button data, or None when its key has expired (or a restart lost it)."""
        if not data.startswith(self.KEY_PREFIX):
            return data
        known = self._payloads.get(data)
        if known is None and self._shared is not None:
            known = self._shared.get(f"button:{data}")
        return known
