"""The SOM's own figures for a period: how many people wrote, about what, how often the assistant did
not understand, and how the hand-offs to advisors went.

Pure domain: it reads Rasa's tracker (the SQL `events` table, with SQLAlchemy core and without Rasa,
as `bot.retention` does) and the hand-off store. Days are Lima days (the office hours' zone); the
period runs from `since` 00:00 to the end of `until`. Waiting and first-response times count only
office hours (`bot.office_hours`): a message left on Friday night and claimed on Monday at 08:40
waited ten minutes.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from bot.handoff import AdvisorAccount, Handoff, HandoffMessage, HandoffStore
from bot.office_hours import OfficeHours

EVENTS = sa.table(
    "events", sa.column("id"), sa.column("sender_id"), sa.column("type_name"), sa.column("timestamp"), sa.column("data")
)
REASONS = ("requested", "sensitive", "not_understood")
TOP = 10
CHANNEL_PREFIXES = {"whatsapp": "whatsapp", "telegram": "telegram", "rest": "rest"}


@dataclass(frozen=True)
class Durations:
    """Office-hours durations of a set of hand-offs, in minutes."""

    count: int = 0
    median: float | None = None
    p90: float | None = None

    @classmethod
    def of(cls, seconds: Iterable[float]) -> Durations:
        minutes = sorted(s / 60 for s in seconds)
        if not minutes:
            return cls()
        p90 = minutes[max(0, math.ceil(0.9 * len(minutes)) - 1)]  # nearest rank
        return cls(len(minutes), round(statistics.median(minutes), 1), round(p90, 1))

    def as_json(self) -> dict[str, Any]:
        return {"count": self.count, "median_minutes": self.median, "p90_minutes": self.p90}


@dataclass(frozen=True)
class AdvisorFigures:
    """One advisor's hand-offs of the period: those they claimed."""

    name: str
    attended: int = 0  # claimed
    closed: int = 0
    first_response: Durations = Durations()  # opened → claim or first advisor message
    rated: int = 0
    satisfaction: float | None = None  # mean rating, 1..5

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "attended": self.attended,
            "closed": self.closed,
            "first_response": self.first_response.as_json(),
            "satisfaction": {"mean": self.satisfaction, "rated": self.rated},
        }


@dataclass(frozen=True)
class Figures:
    since: dt.date
    until: dt.date
    conversations_by_day: dict[dt.date, dict[str, int]] = field(default_factory=dict)  # day -> channel -> people
    conversations: int = 0  # distinct conversations with a message in the period
    turns: int = 0  # messages the assistant answered
    fallback_turns: int = 0  # of which: "¿Quiso decir…?" or "no le entendí"
    topics: list[tuple[str, int]] = field(default_factory=list)  # conversations per topic, most first
    countries: list[tuple[str, int]] = field(default_factory=list)
    handoffs_by_reason: dict[str, int] = field(default_factory=dict)
    waiting: Durations = Durations()  # opened → claimed or cancelled
    first_response: Durations = Durations()  # opened → claim or first advisor message
    cancelled_unattended: int = 0  # the person left the queue before an advisor came
    expired_unattended: int = 0  # nobody came in time (or out of hours) and no message was left
    still_waiting: int = 0
    ratings: dict[int, int] = field(default_factory=dict)  # 1..5 -> how many
    closed: int = 0  # hand-offs an advisor closed (each asked for a rating)
    advisors: tuple[AdvisorFigures, ...] = ()  # who claimed hand-offs, most attended first

    @property
    def handoffs(self) -> int:
        return sum(self.handoffs_by_reason.values())

    @property
    def fallback_rate(self) -> float | None:
        return self.fallback_turns / self.turns if self.turns else None

    @property
    def abandoned(self) -> int:
        return self.cancelled_unattended + self.expired_unattended

    @property
    def rated(self) -> int:
        return sum(self.ratings.values())

    @property
    def satisfaction(self) -> float | None:
        return sum(k * v for k, v in self.ratings.items()) / self.rated if self.rated else None

    def channel_totals(self) -> dict[str, int]:
        totals: Counter[str] = Counter()
        for channels in self.conversations_by_day.values():
            totals.update(channels)
        return dict(totals.most_common())

    def as_json(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "conversations": self.conversations,
            "conversations_by_day": [
                {"day": day.isoformat(), "channels": channels} for day, channels in self.conversations_by_day.items()
            ],
            "channels": self.channel_totals(),
            "turns": self.turns,
            "fallback_turns": self.fallback_turns,
            "fallback_rate": self.fallback_rate,
            "topics": [{"topic": k, "conversations": v} for k, v in self.topics],
            "countries": [{"country": k, "conversations": v} for k, v in self.countries],
            "handoffs": self.handoffs,
            "handoffs_by_reason": self.handoffs_by_reason,
            "waiting": self.waiting.as_json(),
            "first_response": self.first_response.as_json(),
            "abandoned": {
                "total": self.abandoned,
                "cancelled": self.cancelled_unattended,
                "expired": self.expired_unattended,
            },
            "still_waiting": self.still_waiting,
            "satisfaction": {
                "ratings": {str(k): v for k, v in sorted(self.ratings.items())},
                "rated": self.rated,
                "closed": self.closed,
                "mean": self.satisfaction,
            },
            "advisors": [advisor.as_json() for advisor in self.advisors],
        }


@dataclass(frozen=True)
class Period:
    """Lima days `since`..`until` (both included), as UTC instants [start, end)."""

    since: dt.date
    until: dt.date
    timezone: str = "America/Lima"

    @property
    def start(self) -> dt.datetime:
        return dt.datetime.combine(self.since, dt.time(), ZoneInfo(self.timezone)).astimezone(dt.timezone.utc)

    @property
    def end(self) -> dt.datetime:
        next_day = self.until + dt.timedelta(days=1)
        return dt.datetime.combine(next_day, dt.time(), ZoneInfo(self.timezone)).astimezone(dt.timezone.utc)

    def local_day(self, timestamp: float) -> dt.date:
        return dt.datetime.fromtimestamp(timestamp, ZoneInfo(self.timezone)).date()


class PeriodError(ValueError):
    """A period that makes no sense (ends before it starts)."""


def period(since: dt.date, until: dt.date | None, now: dt.datetime, hours: OfficeHours) -> Period:
    """The period to report: `until` defaults to today in Lima, as of `now`."""
    until = until or now.astimezone(ZoneInfo(hours.timezone)).date()
    if until < since:
        raise PeriodError("la fecha final es anterior a la inicial")
    return Period(since, until, hours.timezone)


def figures(
    store: HandoffStore, trackers: sa.engine.Engine, hours: OfficeHours, span: Period, now: dt.datetime
) -> Figures:
    """Every figure of the period. `now` ends the waits still running (nothing reads the clock)."""
    conversations = _conversation_figures(trackers, span)
    return Figures(since=span.since, until=span.until, **conversations, **_handoff_figures(store, hours, span, now))


# --- conversations: Rasa's events ---------------------------------------------------------------


def events_between(span: Period, kinds: tuple[str, ...]) -> sa.sql.Select:
    """Events of these kinds in the period (Rasa's `events` has an index on the time: see
    extensions/tracker_store.py)."""
    return sa.select(EVENTS.c.sender_id, EVENTS.c.type_name, EVENTS.c.timestamp, EVENTS.c.data).where(
        EVENTS.c.type_name.in_(kinds),
        EVENTS.c.timestamp >= span.start.timestamp(),
        EVENTS.c.timestamp < span.end.timestamp(),
    )


def _conversation_figures(engine: sa.engine.Engine, span: Period) -> dict[str, Any]:
    if not sa.inspect(engine).has_table("events"):
        return {}
    query = events_between(span, ("user", "slot")).order_by(EVENTS.c.timestamp)
    by_day: dict[dt.date, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    people: set[str] = set()
    channel_of: dict[str, str] = {}
    turns = fallbacks = 0
    topics: dict[str, set[str]] = defaultdict(set)
    countries: dict[str, set[str]] = defaultdict(set)
    with engine.connect() as connection:
        for sender, kind, timestamp, data in connection.execute(query):
            event = _json(data)
            if kind == "user":
                turns += 1
                people.add(sender)
                channel = channel_of.setdefault(sender, _channel(sender, event.get("input_channel")))
                by_day[span.local_day(timestamp)][channel].add(sender)
                continue
            name, value = event.get("name"), event.get("value")
            if name == "fallback_streak" and isinstance(value, int | float) and value >= 1:
                fallbacks += 1  # the streak grows only on a "¿Quiso decir…?" or "no le entendí" answer
            elif name == "topic" and isinstance(value, str) and value:
                topics[value].add(sender)
            elif name == "country" and isinstance(value, str) and value:
                countries[value].add(sender)
    return {
        "conversations_by_day": {
            day: dict(sorted(((c, len(s)) for c, s in channels.items()), key=lambda item: (-item[1], item[0])))
            for day, channels in sorted(by_day.items())
        },
        "conversations": len(people),
        "turns": turns,
        "fallback_turns": fallbacks,
        "topics": _ranked(topics),
        "countries": _ranked(countries),
    }


def _json(data: str | None) -> dict[str, Any]:
    try:
        value = json.loads(data or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _channel(sender: str, input_channel: Any) -> str:
    """The channel a conversation came through: Rasa's `input_channel`, else the id's namespace
    (`whatsapp:…`, `telegram:…`, `rest:…`; the web chat's ids are bare UUIDs)."""
    if isinstance(input_channel, str) and input_channel:
        return input_channel
    prefix = sender.split(":", 1)[0] if ":" in sender else ""
    return CHANNEL_PREFIXES.get(prefix, "socketio")


def _ranked(counts: dict[str, set[str]]) -> list[tuple[str, int]]:
    return sorted(((k, len(v)) for k, v in counts.items()), key=lambda item: (-item[1], item[0]))[:TOP]


@dataclass
class Turn:
    """One message of a person and what the assistant answered, for a supervisor to review."""

    conversation_id: str
    at: dt.datetime
    person: str
    assistant: list[str] = field(default_factory=list)
    not_understood: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "conversation_id": self.conversation_id,
            "at": self.at.isoformat(),
            "person": self.person,
            "assistant": "\n\n".join(self.assistant),
            "not_understood": self.not_understood,
        }


def recent_turns(
    engine: sa.engine.Engine, span: Period, only_not_understood: bool = True, limit: int = 50
) -> list[Turn]:
    """The period's latest turns (a person's text and the assistant's answer), newest first; by
    default only those answered with "¿Quiso decir…?" or "no le entendí". Buttons (`/intent`) are
    not what a person wrote: left out."""
    if not sa.inspect(engine).has_table("events"):
        return []
    query = events_between(span, ("user", "bot", "slot")).order_by(EVENTS.c.sender_id, EVENTS.c.id)
    turns: list[Turn] = []
    current: Turn | None = None
    with engine.connect() as connection:
        for sender, kind, timestamp, data in connection.execute(query):
            event = _json(data)
            if kind == "user":
                text = event.get("text") or ""
                current = None
                if isinstance(text, str) and text and not text.startswith("/"):
                    current = Turn(sender, dt.datetime.fromtimestamp(timestamp, dt.timezone.utc), text)
                    turns.append(current)
            elif current is None or current.conversation_id != sender:
                continue
            elif kind == "bot" and isinstance(event.get("text"), str):
                current.assistant.append(event["text"])
            elif kind == "slot" and event.get("name") == "fallback_streak":
                value = event.get("value")
                current.not_understood = isinstance(value, int | float) and value >= 1
    chosen = [t for t in turns if t.not_understood or not only_not_understood]
    return sorted(chosen, key=lambda t: t.at, reverse=True)[:limit]


# --- hand-offs: the store ----------------------------------------------------------------------


def _handoff_figures(store: HandoffStore, hours: OfficeHours, span: Period, now: dt.datetime) -> dict[str, Any]:
    start, end = (moment.replace(tzinfo=None) for moment in (span.start, span.end))
    first_advisor_message = (
        sa.select(sa.func.min(HandoffMessage.created_at))
        .where(HandoffMessage.handoff_id == Handoff.id, HandoffMessage.author == "advisor")
        .scalar_subquery()
    )
    query = (
        sa.select(
            Handoff.reason,
            Handoff.state,
            Handoff.mode,
            Handoff.message_left,
            Handoff.rating,
            Handoff.created_at,
            Handoff.claimed_at,
            Handoff.closed_at,
            first_advisor_message.label("first_message"),
            Handoff.advisor_id,
            AdvisorAccount.display_name,
        )
        .outerjoin(AdvisorAccount, AdvisorAccount.id == Handoff.advisor_id)
        .where(Handoff.created_at >= start, Handoff.created_at < end)
    )
    reasons: Counter[str] = Counter({reason: 0 for reason in REASONS})
    waits: list[float] = []
    responses: list[float] = []
    ratings: Counter[int] = Counter()
    cancelled = expired = waiting = closed = 0
    with store.engine.connect() as connection:
        rows = connection.execute(query).all()
    for reason, state, mode, message_left, rating, created, claimed, ended, first_message, _, _ in rows:
        reasons[reason] += 1
        opened = _aware(created)
        response = _first_response_seconds(hours, created, claimed, first_message)
        if response is not None:
            responses.append(response)
        if claimed is not None:
            waits.append(office_seconds(hours, opened, _aware(claimed)))
        elif state == "cancelled":
            waits.append(office_seconds(hours, opened, _aware(ended) if ended else now))
            cancelled += 1
        elif state == "waiting" and mode == "message" and not message_left:
            expired += 1
        elif state == "waiting":
            waiting += 1
        if state == "closed":
            closed += 1
        if rating is not None:
            ratings[int(rating)] += 1
    return {
        "handoffs_by_reason": dict(reasons),
        "waiting": Durations.of(waits),
        "first_response": Durations.of(responses),
        "cancelled_unattended": cancelled,
        "expired_unattended": expired,
        "still_waiting": waiting,
        "ratings": {score: ratings[score] for score in range(1, 6)},
        "closed": closed,
        "advisors": _advisor_figures(hours, rows),
    }


def _first_response_seconds(
    hours: OfficeHours, created: dt.datetime, claimed: dt.datetime | None, first_message: dt.datetime | None
) -> float | None:
    """Office-hours seconds from the opening to the claim or the first advisor message, whichever
    came first; None if neither came."""
    answers = [_aware(moment) for moment in (claimed, first_message) if moment is not None]
    return office_seconds(hours, _aware(created), min(answers)) if answers else None


def _advisor_figures(hours: OfficeHours, rows: Iterable[Any]) -> tuple[AdvisorFigures, ...]:
    """Per advisor who claimed a hand-off of the period; most attended first, then by name."""
    claimed: dict[int, list[Any]] = defaultdict(list)
    for row in rows:
        if row.advisor_id is not None and row.claimed_at is not None:
            claimed[row.advisor_id].append(row)
    found = (_advisor(hours, advisor_id, handoffs) for advisor_id, handoffs in claimed.items())
    return tuple(sorted(found, key=lambda advisor: (-advisor.attended, advisor.name)))


def _advisor(hours: OfficeHours, advisor_id: int, handoffs: list[Any]) -> AdvisorFigures:
    responses = (_first_response_seconds(hours, h.created_at, h.claimed_at, h.first_message) for h in handoffs)
    ratings = [int(h.rating) for h in handoffs if h.rating is not None]
    return AdvisorFigures(
        name=handoffs[0].display_name or f"asesor(a) {advisor_id}",
        attended=len(handoffs),
        closed=sum(h.state == "closed" for h in handoffs),
        first_response=Durations.of(seconds for seconds in responses if seconds is not None),
        rated=len(ratings),
        satisfaction=statistics.fmean(ratings) if ratings else None,
    )


def _aware(moment: dt.datetime) -> dt.datetime:
    """The store keeps naive UTC."""
    return moment.replace(tzinfo=dt.timezone.utc)


def office_seconds(hours: OfficeHours, start: dt.datetime, end: dt.datetime) -> float:
    """Seconds of office hours between two aware instants: working days, not holidays, opens..closes."""
    if end <= start:
        return 0.0
    zone = ZoneInfo(hours.timezone)
    start, end = start.astimezone(zone), end.astimezone(zone)
    total, day = 0.0, start.date()
    while day <= end.date():
        if day.weekday() in hours.days and day not in hours.holidays:
            opens = dt.datetime.combine(day, hours.opens, zone)
            closes = dt.datetime.combine(day, hours.closes, zone)
            overlap = (min(end, closes) - max(start, opens)).total_seconds()
            total += max(0.0, overlap)
        day += dt.timedelta(days=1)
    return total


# --- presentation: Spanish text and CSV (the dashboard renders its own) -------------------------

REASON_NAMES = {"requested": "pidió un asesor", "sensitive": "situación sensible", "not_understood": "no se entendió"}


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f} %".replace(".", ",")


def _minutes(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} min".replace(".", ",")


def _mean(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}".replace(".", ",")


def _advisor_lines(advisors: tuple[AdvisorFigures, ...]) -> list[str]:
    lines = ["Atención por asesor(a):"]
    lines += [
        f"  {a.name}: atendidas {a.attended}, cerradas {a.closed}; primera respuesta (mediana) "
        f"{_minutes(a.first_response.median)}; satisfacción {_mean(a.satisfaction)} de 5 (calificaciones: {a.rated})"
        for a in advisors
    ] or ["  Sin derivaciones atendidas en el periodo."]
    return lines


def text_report(figures: Figures, titles: dict[str, str] | None = None) -> str:
    """The figures as the command line prints them, in Spanish."""
    titles = titles or {}
    f = figures
    lines = [
        f"Informe del {f.since.isoformat()} al {f.until.isoformat()} (hora de Lima)",
        "",
        f"Conversaciones: {f.conversations}  (mensajes atendidos por el asistente: {f.turns})",
    ]
    lines += [f"  {channel}: {count}" for channel, count in f.channel_totals().items()]
    lines.append("Conversaciones por día y canal:")
    for day, channels in f.conversations_by_day.items():
        lines.append(f"  {day.isoformat()}  " + ", ".join(f"{c} {n}" for c, n in channels.items()))
    if not f.conversations_by_day:
        lines.append("  (ninguna)")
    lines.append(f"No entendidos («¿Quiso decir…?» o «no le entendí»): {f.fallback_turns} de {f.turns} mensajes, "
                 f"{_percent(f.fallback_rate)}")  # fmt: skip
    lines.append("Temas más consultados (conversaciones):")
    lines += [f"  {titles.get(topic, topic)}: {count}" for topic, count in f.topics] or ["  (ninguno)"]
    lines.append("Países más mencionados (conversaciones):")
    lines += [f"  {country}: {count}" for country, count in f.countries] or ["  (ninguno)"]
    lines.append(f"Derivaciones a asesores: {f.handoffs}")
    lines += [f"  {REASON_NAMES.get(reason, reason)}: {n}" for reason, n in f.handoffs_by_reason.items()]
    lines.append(
        f"Espera en la fila, en horario de atención: mediana {_minutes(f.waiting.median)}, "
        f"percentil 90 {_minutes(f.waiting.p90)} ({f.waiting.count} derivaciones)"
    )
    lines.append(
        f"Primera respuesta de un asesor, en horario de atención: mediana {_minutes(f.first_response.median)}, "
        f"percentil 90 {_minutes(f.first_response.p90)} ({f.first_response.count} derivaciones)"
    )
    lines.append(
        f"Abandonadas sin asesor: {f.abandoned} (canceladas por la persona {f.cancelled_unattended}, "
        f"vencidas sin mensaje {f.expired_unattended}); aún en espera: {f.still_waiting}"
    )
    mean = _mean(f.satisfaction)
    lines.append(f"Satisfacción: promedio {mean} de 5 ({f.rated} calificaciones de {f.closed} atenciones cerradas)")
    lines.append("  " + "  ".join(f"{score}★ {f.ratings.get(score, 0)}" for score in range(1, 6)))
    lines += _advisor_lines(f.advisors)
    return "\n".join(lines) + "\n"


CSV_HEADER = ("indicador", "clave", "detalle", "valor")


def csv_rows(figures: Figures, titles: dict[str, str] | None = None) -> list[tuple[str, str, str, Any]]:
    """One row per figure (long format: easy to filter or pivot in a spreadsheet)."""
    titles = titles or {}
    f = figures
    rows: list[tuple[str, str, str, Any]] = [
        ("periodo", "desde", "", f.since.isoformat()),
        ("periodo", "hasta", "", f.until.isoformat()),
        ("conversaciones", "total", "", f.conversations),
    ]
    for day, channels in f.conversations_by_day.items():
        rows += [("conversaciones_por_dia", day.isoformat(), channel, n) for channel, n in channels.items()]
    rows += [("conversaciones_por_canal", channel, "", n) for channel, n in f.channel_totals().items()]
    rows += [
        ("mensajes", "total", "", f.turns),
        ("mensajes", "no_entendidos", "", f.fallback_turns),
        ("mensajes", "tasa_no_entendidos", "", "" if f.fallback_rate is None else round(f.fallback_rate, 4)),
    ]
    rows += [("temas", topic, titles.get(topic, ""), n) for topic, n in f.topics]
    rows += [("paises", country, "", n) for country, n in f.countries]
    rows += [("derivaciones", reason, REASON_NAMES.get(reason, ""), n) for reason, n in f.handoffs_by_reason.items()]
    for name, durations in (("espera_minutos", f.waiting), ("primera_respuesta_minutos", f.first_response)):
        rows += [
            (name, "mediana", "", "" if durations.median is None else durations.median),
            (name, "percentil_90", "", "" if durations.p90 is None else durations.p90),
            (name, "derivaciones", "", durations.count),
        ]
    rows += [
        ("abandonadas", "canceladas", "", f.cancelled_unattended),
        ("abandonadas", "vencidas", "", f.expired_unattended),
        ("abandonadas", "en_espera", "", f.still_waiting),
    ]
    rows += [("satisfaccion", str(score), "", f.ratings.get(score, 0)) for score in range(1, 6)]
    rows += [
        ("satisfaccion", "promedio", "", "" if f.satisfaction is None else round(f.satisfaction, 2)),
        ("satisfaccion", "cerradas", "", f.closed),
    ]
    return rows + _advisor_rows(f.advisors)


def _advisor_rows(advisors: tuple[AdvisorFigures, ...]) -> list[tuple[str, str, str, Any]]:
    """Section `asesores`: the advisor's name as the key, the figure as the detail."""
    rows: list[tuple[str, str, str, Any]] = []
    for a in advisors:
        rows += [
            ("asesores", a.name, "atendidas", a.attended),
            ("asesores", a.name, "cerradas", a.closed),
            (
                "asesores",
                a.name,
                "primera_respuesta_mediana_minutos",
                "" if a.first_response.median is None else a.first_response.median,
            ),
            ("asesores", a.name, "calificaciones", a.rated),
            ("asesores", a.name, "satisfaccion_promedio", "" if a.satisfaction is None else round(a.satisfaction, 2)),
        ]
    return rows


def _cell(value: Any) -> Any:
    """A text a spreadsheet would run as a formula (=, +, -, @) is kept as text."""
    return f"'{value}" if isinstance(value, str) and value[:1] in ("=", "+", "-", "@") else value


def csv_text(figures: Figures, titles: dict[str, str] | None = None) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    writer.writerows([_cell(value) for value in row] for row in csv_rows(figures, titles))
    return out.getvalue()
