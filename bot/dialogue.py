"""What the assistant says: one turn in (intent, entities, remembered slots), messages out.

Pure domain logic over the knowledge base, with no Rasa import, so it is tested directly and the
Rasa action stays a thin adapter. All wording lives in `data/content/`; this module only chooses
and composes entries.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from typing import Any

from bot.countries import Country
from bot.followups import asked_aspects, is_short, names_a_subject
from bot.knowledge import Entry, KnowledgeBase
from bot.ranker import Context, EntryRanker, Scored
from bot.sources import Source
from bot.text import fill, fold, plain
from bot.vocabulary import Vocabulary

# Topics whose answer depends on the country the person names.
COUNTRY_TOPICS = ("social_security", "work_abroad", "rights_abroad", "andean_worker", "foreigner_work_peru")
# Topics offered when someone names a country without saying what they want to know.
COUNTRY_FOLLOW_UPS = ("work_abroad", "rights_abroad", "social_security", "foreigner_work_peru")
FALLBACK_INTENT = "nlu_fallback"
# Conversation moves answered as such when the classifier is sure of them; anything else is a question.
CONVERSATION_MOVES = frozenset({"greet", "show_menu", "thank", "goodbye", "affirm", "deny", "bot_challenge"})
MOVE_CONFIDENCE = 0.7
# Which missing detail is named first when a follow-up asks about several.
ASPECT_ORDER = (
    "cost", "duration", "documents", "where", "who", "permit",
    "tourist", "recognition", "social_security", "help", "scams",
)  # fmt: skip
DEFAULT_CONTACT = "el SOM"
# Words around a bare country that add nothing: "y para Chile?", "con chile", "en canadá".
COUNTRY_LEAD_WORDS = frozenset(
    "y e o con para pa en de del a al x por sobre que q pues entonces si ok ya el la".split()
)
NOT_SUGGESTED = frozenset({FALLBACK_INTENT, "inform", "affirm", "deny", "greet", "goodbye", "thank", "out_of_scope"})
# Hand-off reasons, kept in the `pending_offer` slot while an advisor is on offer.
REQUESTED, NOT_UNDERSTOOD, SENSITIVE = "requested", "not_understood", "sensitive"
# Signs of trafficking, retained documents or exploitation, in folded text: they earn a priority offer.
SENSITIVE_SIGNS = re.compile(
    r"(pasaporte|dni|documento|carne)s?\b.{0,40}(retien|retuv|reten|se (lo|la|los|las) qued|quit|guard"
    r"|no me (lo|los|la|las) (dan|devuelv))"
    r"|(retien|retuv|reten|quit|se quedo con|se quedaron con).{0,30}(pasaporte|dni|documento|carne)"
    r"|no (me|la|lo|los|las|nos) dejan (salir|irme|ir)|encerrad|amenaz|\btrata\b|explota|me obligan|me golpe"
    r"|no puedo salir"
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
    entry: str | None = None  # the knowledge-base entry that answered, if one did
    prompt: str | None = None  # otherwise the prompt it used: a followup.* or conversation.* entry, or "menu"


def payload(intent: str, **entities: str) -> str:
    """A Rasa button payload that triggers `intent` with `entities`, bypassing NLU."""
    return f"/{intent}{json.dumps(entities, ensure_ascii=False)}" if entities else f"/{intent}"


class Responder:
    # Retrieval scores (lexical similarity plus priors, see `bot.ranker`), tuned on `make eval`'s held-out set.
    ANSWER_AT = 0.3  # the best entry answers when it scores this much…
    CLEAR_MARGIN = 0.01  # … and leads the next entry by this much; otherwise both are offered
    ASK_AT = 0.3  # below this, no entry is a plausible answer
    STRONG_MATCH = 0.6  # lexical similarity that beats the conversation's topic and the classifier's doubt
    SUGGEST_AT = 0.2  # entries this similar are offered in "¿Quiso decir…?"

    def __init__(
        self, kb: KnowledgeBase, vocabulary: Vocabulary | None = None, ranker: EntryRanker | None = None
    ) -> None:
        self.kb = kb
        self.vocabulary = vocabulary
        self.ranker = ranker or EntryRanker(kb)

    def respond(self, turn: Turn) -> Reply:
        country = self._country(turn)
        slots: dict[str, Any] = {"fallback_streak": 0.0, "pending_offer": None, "last_entry": None}
        if country:
            slots["country"] = country.name
        intent = turn.intent
        if self.vocabulary and self.vocabulary.is_unreadable(turn.text):
            return self._fallback(turn, ())  # keyboard mashing, whatever intent the classifier placed it in
        if intent == "human_handoff" or (intent == "affirm" and turn.slots.get("pending_offer")):
            return Reply(messages=(), slots=slots, handoff=turn.slots.get("pending_offer") or REQUESTED)
        if intent not in CONVERSATION_MOVES and SENSITIVE_SIGNS.search(fold(turn.text)):
            return self._sensitive(turn, country, slots)
        if turn.entry and turn.entry in self.kb.entries:  # a button
            return self._answer(self.kb.entry(turn.entry), turn, slots)
        if country and turn.text and self._only_names_a_country(turn.text):
            return self._by_intent(replace(turn, intent="inform"), country, [], slots)  # "Chile", "¿y para Chile?"
        ranked = self._rank(turn, country)
        strong = bool(ranked) and ranked[0].lexical >= self.STRONG_MATCH
        if intent in CONVERSATION_MOVES and self._sure_of(turn, intent) and not strong and not asked_aspects(turn.text):
            return self._conversation_move(turn, slots)
        answer = self._question(turn, ranked, slots)
        if answer is not None:
            return answer
        return self._by_intent(turn, country, ranked, slots)

    def _sensitive(self, turn: Turn, country: Country | None, slots: dict[str, Any]) -> Reply:
        """Signs of trafficking or retained documents: the closest entry on those situations, and an advisor first."""
        fitting = [
            s.entry for s in self._rank(turn, country) if s.entry.topic in SENSITIVE_TOPICS and not s.entry.country
        ]
        entry = (
            fitting[0]
            if fitting
            else self.kb.main_entry(turn.intent if turn.intent in SENSITIVE_TOPICS else "job_offer_check")
        )
        messages = self._render(entry) + self._render(self.kb.entry("handoff.sensitive_offer"))
        slots["topic"], slots["last_entry"], slots["pending_offer"] = entry.topic, entry.id, SENSITIVE
        return Reply(messages=tuple(messages), slots=slots, entry=entry.id)

    def _by_intent(self, turn: Turn, country: Country | None, ranked: list[Scored], slots: dict[str, Any]) -> Reply:
        """No entry stands out for the words: answer the classified intent's main entry, as a menu would."""
        intent = turn.intent
        if intent in CONVERSATION_MOVES:
            return self._conversation_move(turn, slots)
        if intent == "out_of_scope":
            return self._reply(self._menu(self.kb.main_entry("out_of_scope")), slots, prompt="menu")
        if intent == "inform":
            return self._inform(turn, country, slots) or self._fallback(turn, ranked)
        entry = self.kb.find_main_entry(intent)
        if intent == FALLBACK_INTENT or entry is None:
            return self._fallback(turn, ranked)
        return self._answer(entry, turn, slots)

    def _conversation_move(self, turn: Turn, slots: dict[str, Any]) -> Reply:
        intent = turn.intent
        if intent == "greet":
            return self._reply(self._greeting(turn, slots), slots, prompt="conversation.greet")
        if intent == "show_menu":
            return self._reply(self._menu(self.kb.main_entry("show_menu")), slots, prompt="menu")
        entry = self.kb.main_entry(intent)
        return self._reply(self._render(entry), slots, prompt=entry.id)

    def _reply(
        self, messages: list[Message], slots: dict[str, Any], entry: str | None = None, prompt: str | None = None
    ) -> Reply:
        if any(payload("human_handoff") == p for m in messages for _, p in m.buttons):
            slots["pending_offer"] = REQUESTED
        slots["last_entry"] = entry
        return Reply(messages=tuple(messages), slots=slots, entry=entry, prompt=prompt)

    @staticmethod
    def _sure_of(turn: Turn, intent: str) -> bool:
        """Whether the classifier is sure enough of a conversation move ("hola", "gracias") to skip retrieval."""
        confidence = dict(turn.ranking).get(intent, 1.0 if not turn.ranking else 0.0)
        return confidence >= MOVE_CONFIDENCE or not turn.text

    # --- questions ----------------------------------------------------------------------

    def _only_names_a_country(self, text: str) -> bool:
        """ "Chile", "con chile", "¿y para Chile?": a country and nothing else to go on."""
        rest = plain(self.kb.countries.without_countries(text)).split()
        return is_short(text) and all(word in COUNTRY_LEAD_WORDS for word in rest)

    def _rank(self, turn: Turn, country: Country | None) -> list[Scored]:
        if not turn.text or turn.text.startswith("/"):
            return []
        country = country or self.kb.countries.get(self.kb.countries.find_in_text(turn.text))
        remembered = self._remembered_country(turn)
        context = Context(
            intent_scores=dict(turn.ranking) or {turn.intent: 1.0},
            topic=turn.slots.get("topic"),
            country=country.name if country else None,
            remembered_country=remembered.name if remembered else None,
            aspects=asked_aspects(turn.text)
            if is_short(turn.text)
            else frozenset(),  # a long question speaks for itself
        )
        return self.ranker.rank(turn.text, context)

    def _question(self, turn: Turn, ranked: list[Scored], slots: dict[str, Any]) -> Reply | None:
        """The entry that answers the words, a choice between two, or None when no entry stands out."""
        if not ranked:
            return None
        best = ranked[0]
        topic: str | None = turn.slots.get("topic")
        aspects = asked_aspects(turn.text)
        if (
            topic in self.ranker.topics
            and aspects
            and is_short(turn.text)
            and not (names_a_subject(turn.text) and best.lexical >= self.STRONG_MATCH and best.entry.topic != topic)
        ):
            return self._follow_up(turn, topic, aspects, ranked, slots)
        if best.score < self.ASK_AT:
            return None
        known_country = slots.get("country") or turn.slots.get("country")
        # A guide for a country nobody mentioned is no plausible second choice.
        runner_up = next((s for s in ranked[1:2] if s.entry.country in (None, known_country)), None)
        if runner_up and runner_up.score >= self.ASK_AT and best.score - runner_up.score < self.CLEAR_MARGIN:
            return self._which_one((best.entry, runner_up.entry), slots)
        if best.score < self.ANSWER_AT:
            return None
        if best.entry.id == turn.slots.get("last_entry"):
            return self._next_after(best, ranked, turn, slots)
        return self._answer(best.entry, turn, slots)

    def _follow_up(
        self, turn: Turn, topic: str, aspects: frozenset[str], ranked: list[Scored], slots: dict[str, Any]
    ) -> Reply:
        """A short question about the current subject: the entry of this topic (and country) that answers it."""
        remembered = slots.get("country") or turn.slots.get("country")
        fitting = [
            s for s in ranked
            if (s.entry.topic == topic or topic in s.entry.follows)
            and s.entry.aspects & aspects
            and s.entry.country in (None, remembered)
        ]  # fmt: skip
        fitting.sort(key=lambda s: s.entry.country != remembered)  # the conversation's country first
        last = turn.slots.get("last_entry")
        fresh = [s for s in fitting if s.entry.id != last]
        if fresh:
            return self._answer(fresh[0].entry, turn, slots)
        subject = self.kb.entries.get(last) if last else None
        if subject is None or subject.topic != topic:
            subject = self.kb.main_entry(topic)
        if fitting:  # only the answer just given fits: do not repeat it
            return self._what_exactly(subject, slots)
        return self._no_detail(subject, aspects, slots)

    def _next_after(self, best: Scored, ranked: list[Scored], turn: Turn, slots: dict[str, Any]) -> Reply:
        """The entry just given was asked for again: the next one of the same subject, or ask what exactly."""
        for other in ranked[1:]:
            if other.score < self.ASK_AT:
                break
            if other.entry.topic == best.entry.topic and other.entry.country in (None, best.entry.country):
                return self._answer(other.entry, turn, slots)
        return self._what_exactly(best.entry, slots)

    def _answer(self, entry: Entry, turn: Turn, slots: dict[str, Any]) -> Reply:
        country = self.kb.countries.get(slots.get("country")) or self._remembered_country(turn)
        if entry.intent in COUNTRY_TOPICS:
            messages = self._topic(entry.intent, country)
            entry = self.kb.entry(self._topic_entry(entry.intent, country))
        else:
            messages = self._render(entry)
        if entry.topic not in CONVERSATION_MOVES:
            slots["topic"] = entry.topic
        if entry.country:
            slots["country"] = entry.country
        return self._reply(messages, slots, entry.id)

    def _which_one(self, entries: tuple[Entry, Entry], slots: dict[str, Any]) -> Reply:
        prompt = self.kb.entry("followup.which_one")
        buttons = tuple((e.title, payload("inform", entry=e.id)) for e in entries)
        buttons += ((self.kb.title("show_menu"), payload("show_menu")),)
        return self._reply([Message(prompt.messages[0], buttons)], slots, prompt=prompt.id)

    def _what_exactly(self, subject: Entry, slots: dict[str, Any]) -> Reply:
        prompt = self.kb.entry("followup.what_exactly")
        buttons = tuple((b.title, self._button_payload(b)) for b in subject.buttons) or tuple(
            (b.title, self._button_payload(b)) for b in prompt.buttons
        )
        slots["topic"] = subject.topic
        return self._reply(
            [Message(fill(prompt.messages[0], {"subject": subject.title}), buttons)], slots, prompt=prompt.id
        )

    def _no_detail(self, subject: Entry, aspects: frozenset[str], slots: dict[str, Any]) -> Reply:
        """Say honestly that this detail is not in the knowledge base, who has it, and offer an advisor."""
        prompt = self.kb.entry("followup.no_detail")
        aspect = next(a for a in ASPECT_ORDER if a in aspects)
        main = self.kb.find_main_entry(subject.topic) if subject.topic else None
        contact = subject.contact or (main.contact if main else None) or DEFAULT_CONTACT
        values = {"aspect": self.kb.aspect_names.get(aspect, aspect), "subject": subject.title, "contact": contact}
        buttons = tuple((b.title, self._button_payload(b)) for b in prompt.buttons)
        slots["topic"] = subject.topic
        return self._reply([Message(fill(prompt.messages[0], values), buttons)], slots, prompt=prompt.id)

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

    def _fallback(self, turn: Turn, ranked: list[Scored] | tuple) -> Reply:
        """Not understood: first "¿Quiso decir…?" with the closest entries (or intents), then an advisor."""
        streak = int(turn.slots.get("fallback_streak") or 0) + 1
        close = [s.entry for s in ranked[:2] if s.lexical >= self.SUGGEST_AT]
        if close:
            suggestions = [(e.title, payload("inform", entry=e.id)) for e in close]
        else:
            intents = [intent for intent, _ in turn.ranking if intent not in NOT_SUGGESTED][:2]
            suggestions = [(self.kb.title(i), payload(i)) for i in intents]
        if streak == 1 and suggestions:
            entry = self.kb.entry("conversation.did_you_mean")
            buttons = tuple(suggestions) + ((self.kb.title("show_menu"), payload("show_menu")),)
            return Reply((Message(entry.messages[0], buttons),), {"fallback_streak": float(streak)}, prompt=entry.id)
        messages = self._render(self.kb.entry("conversation.not_understood"), with_source=False)
        slots = {"fallback_streak": float(streak), "pending_offer": NOT_UNDERSTOOD}
        return Reply(tuple(messages), slots, prompt="conversation.not_understood")

    # --- topics -------------------------------------------------------------------------

    def _inform(self, turn: Turn, country: Country | None, slots: dict[str, Any]) -> Reply | None:
        """A bare country or detail: attach it to the conversation's topic, or ask what it is about."""
        topic = turn.slots.get("topic")
        if country and topic in COUNTRY_TOPICS:
            same = self._same_detail_for(turn.slots.get("last_entry"), country)
            if same is not None:  # "¿y para Chile?" after Spain's documents: Chile's documents
                return self._answer(same, turn, slots)
            return self._reply(self._topic(topic, country), slots, self._topic_entry(topic, country))
        if country:
            entry = self.kb.entry("country.what_about")
            buttons = tuple((self.kb.title(i), payload(i, country=country.name)) for i in COUNTRY_FOLLOW_UPS)
            return self._reply([Message(self._fill(entry.messages[0], country), buttons)], slots, prompt=entry.id)
        if topic in COUNTRY_TOPICS:
            return self._reply(
                self._render(self.kb.entry("country.ask"), with_source=False), slots, prompt="country.ask"
            )
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
        guide = self._guide(country) if intent == "work_abroad" else None
        if guide is not None:
            return self._render(guide)
        messages = self._render(self.kb.main_entry(intent))
        if country and intent in ("work_abroad", "rights_abroad") and country.notes:
            messages.insert(-1, Message(f"*{country.name}*: {country.notes}"))
        return messages

    def _topic_entry(self, intent: str, country: Country | None) -> str:
        """The entry `_topic` answers with: the country's guide for work abroad, else the main entry."""
        guide = self._guide(country) if intent == "work_abroad" else None
        return (guide or self.kb.main_entry(intent)).id

    def _guide(self, country: Country | None) -> Entry | None:
        """The destination guide's opening entry for a country: how to work there legally."""
        if country is None:
            return None
        guides = [e for e in self.kb.entries.values() if e.country == country.name and e.topic == "work_abroad"]
        return next((e for e in guides if "permit" in e.aspects), guides[0] if guides else None)

    def _same_detail_for(self, last_entry: str | None, country: Country) -> Entry | None:
        """The entry that answers, for `country`, what `last_entry` answered for another country."""
        last = self.kb.entries.get(last_entry or "")
        if last is None or not last.aspects or last.country == country.name:
            return None
        same = [
            e for e in self.kb.entries.values()
            if e.country == country.name and e.topic == last.topic and e.aspects & last.aspects
        ]  # fmt: skip
        return max(same, key=lambda e: len(e.aspects & last.aspects), default=None)

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
            last += self._source_line(entry.sources)
        buttons = tuple((b.title, self._button_payload(b)) for b in entry.buttons)
        messages[-1] = Message(last, buttons)
        return messages

    def _source_line(self, sources: tuple[Source, ...]) -> str:
        """The first primary source, named by its institution; secondary sources are for editors only."""
        shown = self.kb.policy.shown(sources)
        return f"\n\nFuente: {shown}" if shown else ""

    @staticmethod
    def _button_payload(button) -> str:
        return payload("inform", entry=button.goto) if button.goto else payload(button.intent)

    @staticmethod
    def _fill(text: str, country: Country) -> str:
        return fill(text, {"country": country.name})

    def _country(self, turn: Turn) -> Country | None:
        if turn.country:
            return self.kb.countries.get(turn.country)
        if turn.intent in COUNTRY_TOPICS or turn.intent == "inform":
            return self.kb.countries.get(self.kb.countries.find_in_text(turn.text))
        return None

    def _remembered_country(self, turn: Turn) -> Country | None:
        return self.kb.countries.get(turn.slots.get("country"))
