"""What the assistant says: one turn in (intent, entities, remembered slots), messages out.

Pure domain logic over the knowledge base, with no Rasa import, so it is tested directly and the
Rasa action stays a thin adapter. All wording lives in `data/content/`; this module only chooses
and composes entries.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from bot.countries import Country, fold
from bot.knowledge import Entry, KnowledgeBase
from bot.vocabulary import Vocabulary

# Topics whose answer depends on the country the person names.
COUNTRY_TOPICS = ("social_security", "work_abroad", "rights_abroad", "andean_worker", "foreigner_work_peru")
# Topics offered when someone names a country without saying what they want to know.
COUNTRY_FOLLOW_UPS = ("work_abroad", "rights_abroad", "social_security", "foreigner_work_peru")
FALLBACK_INTENT = "nlu_fallback"
NOT_SUGGESTED = frozenset({FALLBACK_INTENT, "inform", "affirm", "deny", "greet", "goodbye", "thank", "out_of_scope"})
# Hand-off reasons, kept in the `pending_offer` slot while an advisor is on offer.
REQUESTED, NOT_UNDERSTOOD, SENSITIVE = "requested", "not_understood", "sensitive"
# Signs of trafficking, retained documents or exploitation, in folded text: they earn a priority offer.
SENSITIVE_SIGNS = re.compile(
    r"(pasaporte|dni|documento|carne)s?\b.{0,40}(reten|quedar|quita|guard|no me (lo|los|la|las) (dan|devuelv))"
    r"|(reten|quitaron|quedaron).{0,30}(pasaporte|dni|documento)"
    r"|no me dejan (salir|irme)|encerrad|amenaz|trata de personas|explota|me obligan|me golpe|no puedo salir"
)
SENSITIVE_TOPICS = ("job_offer_check", "rights_abroad", "family_abroad")


@dataclass(frozen=True)
class Message:
    text: str
    buttons: tuple[tuple[str, str], ...] = ()  # (title, payload)


@dataclass(frozen=True)
class Turn:
    """What the assistant knows when it must answer."""

    intent: str
    text: str = ""
    ranking: tuple[tuple[str, float], ...] = ()
    country: str | None = None  # named in this message
    entry: str | None = None  # requested by a button
    slots: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Reply:
    messages: tuple[Message, ...]
    slots: dict[str, Any]
    handoff: str | None = None  # the reason, when the person should now be handed to an advisor


def payload(intent: str, **entities: str) -> str:
    """A Rasa button payload that triggers `intent` with `entities`, bypassing NLU."""
    return f"/{intent}{json.dumps(entities, ensure_ascii=False)}" if entities else f"/{intent}"


class Responder:
    def __init__(self, kb: KnowledgeBase, vocabulary: Vocabulary | None = None) -> None:
        self.kb = kb
        self.vocabulary = vocabulary

    def respond(self, turn: Turn) -> Reply:
        country = self._country(turn)
        slots: dict[str, Any] = {"fallback_streak": 0.0, "pending_offer": None}
        if country:
            slots["country"] = country.name
        intent = turn.intent
        if intent == FALLBACK_INTENT or (self.vocabulary and self.vocabulary.is_unreadable(turn.text)):
            return self._fallback(turn)  # not understood, or keyboard mashing the classifier placed somewhere
        if intent == "greet":
            messages = self._greeting(turn, slots)
        elif intent == "show_menu":
            messages = self._menu(self.kb.main_entry("show_menu"))
        elif intent == "out_of_scope":
            messages = self._menu(self.kb.main_entry("out_of_scope"))
        elif intent == "human_handoff" or (intent == "affirm" and turn.slots.get("pending_offer")):
            return Reply(messages=(), slots=slots, handoff=turn.slots.get("pending_offer") or REQUESTED)
        elif intent == "inform":
            messages = self._inform(turn, country, slots)
            if messages is None:
                return self._fallback(turn)
        elif intent in SENSITIVE_TOPICS and SENSITIVE_SIGNS.search(fold(turn.text)):
            slots["topic"], slots["pending_offer"] = intent, SENSITIVE
            messages = self._render(self.kb.main_entry(intent)) + self._render(self.kb.entry("handoff.sensitive_offer"))
            return Reply(messages=tuple(messages), slots=slots)
        elif intent in COUNTRY_TOPICS:
            slots["topic"] = intent
            messages = self._topic(intent, country or self._remembered_country(turn))
        else:
            entry = self.kb.main_entry(intent)
            if entry is None:
                return self._fallback(turn)
            if intent not in ("affirm", "deny", "thank", "goodbye", "bot_challenge"):
                slots["topic"] = intent
            messages = self._render(entry)
        if any(payload("human_handoff") == p for m in messages for _, p in m.buttons):
            slots["pending_offer"] = REQUESTED
        return Reply(messages=tuple(messages), slots=slots)

    # --- conversation -------------------------------------------------------------------

    def _greeting(self, turn: Turn, slots: dict[str, Any]) -> list[Message]:
        messages = self._render(self.kb.main_entry("greet"), with_source=False)
        if not turn.slots.get("shown_privacy"):
            messages += self._render(self.kb.entry("conversation.privacy"), with_source=False)
            slots["shown_privacy"] = True
        return messages + self._menu(self.kb.main_entry("show_menu"))

    def _menu(self, intro: Entry) -> list[Message]:
        buttons = tuple((item.title, payload(item.intent)) for item in self.kb.menu)
        messages = self._render(intro, with_source=False)
        last = messages[-1]
        return messages[:-1] + [Message(last.text, buttons)]

    def _fallback(self, turn: Turn) -> Reply:
        streak = int(turn.slots.get("fallback_streak") or 0) + 1
        suggestions = [intent for intent, _ in turn.ranking if intent not in NOT_SUGGESTED][:2]
        if streak == 1 and suggestions:
            entry = self.kb.entry("conversation.did_you_mean")
            buttons = tuple((self.kb.title(i), payload(i)) for i in suggestions)
            buttons += ((self.kb.title("show_menu"), payload("show_menu")),)
            return Reply((Message(entry.messages[0], buttons),), {"fallback_streak": float(streak)})
        messages = self._render(self.kb.entry("conversation.not_understood"), with_source=False)
        return Reply(tuple(messages), {"fallback_streak": float(streak), "pending_offer": NOT_UNDERSTOOD})

    # --- topics -------------------------------------------------------------------------

    def _inform(self, turn: Turn, country: Country | None, slots: dict[str, Any]) -> list[Message] | None:
        if turn.entry and turn.entry in self.kb.entries:
            return self._render(self.kb.entry(turn.entry))
        topic = turn.slots.get("topic")
        if country and topic in COUNTRY_TOPICS:
            return self._topic(topic, country)
        if country:
            entry = self.kb.entry("country.what_about")
            buttons = tuple((self.kb.title(i), payload(i, country=country.name)) for i in COUNTRY_FOLLOW_UPS)
            return [Message(self._fill(entry.messages[0], country), buttons)]
        if topic in COUNTRY_TOPICS:
            return self._render(self.kb.entry("country.ask"), with_source=False)
        return None  # a detail with nothing to attach it to: not understood

    def _topic(self, intent: str, country: Country | None) -> list[Message]:
        if intent in ("andean_worker", "foreigner_work_peru") and country:
            return self._work_in_peru(country)
        if intent == "social_security":
            if country is None:
                return self._render(self.kb.main_entry(intent)) + self._render(
                    self.kb.entry("country.ask"), with_source=False
                )
            return self._social_security(country)
        messages = self._render(self.kb.main_entry(intent))
        if country and intent in ("work_abroad", "rights_abroad") and country.notes:
            messages.insert(-1, Message(f"*{country.name}*: {country.notes}"))
        return messages

    def _work_in_peru(self, country: Country) -> list[Message]:
        """Andean Community nationals go through SIVITMA; everyone else, the foreign-worker rules."""
        if country.andean_community:
            note, main = self.kb.entry("country.andean_member"), self.kb.main_entry("andean_worker")
        else:
            note, main = self.kb.entry("country.not_andean"), self.kb.main_entry("foreigner_work_peru")
        return [Message(self._fill(note.messages[0], country))] + self._render(main)

    def _social_security(self, country: Country) -> list[Message]:
        if country.agreement_status == "unknown" or not (country.bilateral or country.multilateral):
            entry = self.kb.entry("country.agreement_unknown")
            return [Message(self._fill(m, country)) for m in entry.messages]
        entry = self.kb.entry("country.agreement")
        lines = [self._fill(entry.messages[0], country)]
        lines += [f"• {text}" for text in (country.bilateral, country.multilateral) if text]
        if country.notes:
            lines.append(country.notes)
        if country.agreement_status == "partial":
            lines.append(self._fill(self.kb.entry("country.agreement_partial").messages[0], country))
        body = "\n".join(lines) + self._source_line(country.sources)
        buttons = tuple((b.title, self._button_payload(b)) for b in entry.buttons)
        return [Message(body, buttons)]

    # --- rendering ----------------------------------------------------------------------

    def _render(self, entry: Entry, with_source: bool = True) -> list[Message]:
        messages = [Message(text) for text in entry.messages]
        last = messages[-1].text
        if with_source:
            last += self._source_line(entry.sources, entry.links)
        buttons = tuple((b.title, self._button_payload(b)) for b in entry.buttons)
        messages[-1] = Message(last, buttons)
        return messages

    @staticmethod
    def _source_line(sources: tuple[str, ...], links: tuple = ()) -> str:
        urls = [s for s in sources if s.startswith("https://")] or [link.url for link in links]
        return f"\n\nFuente: {urls[0]}" if urls else ""

    @staticmethod
    def _button_payload(button) -> str:
        return payload("inform", entry=button.goto) if button.goto else payload(button.intent)

    @staticmethod
    def _fill(text: str, country: Country) -> str:
        return text.replace("{country}", country.name)

    def _country(self, turn: Turn) -> Country | None:
        if turn.country:
            return self.kb.countries.get(turn.country)
        if turn.intent in COUNTRY_TOPICS or turn.intent == "inform":
            return self.kb.countries.get(self.kb.countries.find_in_text(turn.text))
        return None

    def _remembered_country(self, turn: Turn) -> Country | None:
        return self.kb.countries.get(turn.slots.get("country"))
