"""The supervisors' dashboard at /advisor/dashboard/: the SOM's figures (`bot.report`) as a page with
charts drawn here as inline SVG (no CDN, no chart library), as JSON and as CSV; and the review of
the assistant's answers (a supervisor says which entry should have answered a turn).

Signing in is the console's: the same bearer token (the console keeps it in the browser's
sessionStorage, which this page, on the same origin, reads). Only advisors with the supervisor role
(`python -m bot advisors promote USUARIO`) get the data: 401 without a valid token, 403 for others.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import html
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from rasa.core.channels.channel import InputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from bot import report
from bot.database import engine_for
from bot.handoff import Advisor
from bot.services import handoff_desk, knowledge_base, settings
from channels.advisor import advisor_of, serve_page
from channels.requests import json_object

logger = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).parent / "static" / "dashboard"
DEFAULT_DAYS = 30
MAX_DAYS = 366
MAX_REVIEW_TEXT = 2000
VIEW_AUDIT_EVERY = dt.timedelta(minutes=10)


def _error(status: int, message: str) -> HTTPResponse:
    return response.json({"error": message}, status=status)


@functools.lru_cache(maxsize=2)
def _trackers(url: str) -> Any:
    """One engine per tracker database for this process (the Rasa server's own is Rasa's)."""
    return engine_for(url)


def _period(request: Request, now: dt.datetime) -> report.Period | str:
    """The period asked for (`since`, `until`: YYYY-MM-DD, Lima days); by default the last 30 days."""
    hours = handoff_desk().hours
    today = now.astimezone(ZoneInfo(hours.timezone)).date()
    try:
        until = dt.date.fromisoformat(request.args.get("until")) if request.args.get("until") else today
        since = (
            dt.date.fromisoformat(request.args.get("since"))
            if request.args.get("since")
            else until - dt.timedelta(days=DEFAULT_DAYS - 1)
        )
        span = report.period(since, until, now, hours)
    except ValueError as error:  # a malformed date, or PeriodError
        return f"periodo inválido: {error}" if isinstance(error, report.PeriodError) else "use fechas AAAA-MM-DD"
    if (span.until - span.since).days >= MAX_DAYS:
        return f"el periodo no puede pasar de {MAX_DAYS} días"
    return span


def compute(request: Request) -> report.Figures | str:
    """The figures of the requested period, or what is wrong with the request."""
    desk = handoff_desk()
    now = desk.store.clock()
    span = _period(request, now)
    if isinstance(span, str):
        return span
    return report.figures(desk.store, _trackers(settings().tracker_database_url), desk.hours, span, now)


def turns(request: Request) -> list[report.Turn] | str:
    """The period's turns to review: only the not understood ones unless `all=1`."""
    desk = handoff_desk()
    span = _period(request, desk.store.clock())
    if isinstance(span, str):
        return span
    every = request.args.get("all") == "1"
    return report.recent_turns(_trackers(settings().tracker_database_url), span, only_not_understood=not every)


def titles() -> dict[str, str]:
    return dict(knowledge_base().current().titles)


class AdvisorDashboard(InputChannel):
    """Not a chat channel: Rasa mounts it (an absolute prefix, as is) inside the Rasa server."""

    @classmethod
    def name(cls) -> str:
        return "advisor_dashboard"

    def url_prefix(self) -> str:
        return "/advisor/dashboard"

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        dashboard = Blueprint("advisor_dashboard", __name__)
        desk = handoff_desk()

        async def run(function, *args):
            return await asyncio.to_thread(function, *args)

        def supervisors_only(handler):
            async def wrapper(request: Request, *args, **kwargs) -> HTTPResponse:
                advisor = await advisor_of(request)
                if advisor is None:
                    return _error(401, "inicie sesión en la consola de asesores (token ausente, inválido o vencido)")
                if not await run(desk.store.is_supervisor, advisor.id):
                    await run(desk.store.audit, advisor.id, "dashboard_refused")
                    return _error(403, "el panel de indicadores es solo para supervisores")
                await run(desk.store.audit_unless_recent, advisor.id, "dashboard", None, VIEW_AUDIT_EVERY)
                return await handler(request, advisor, *args, **kwargs)

            wrapper.__name__ = handler.__name__
            return wrapper

        def given(query):
            """Hand the route what `query` found for the request; a 400 with what is wrong with it."""

            def decorate(handler):
                async def wrapper(request: Request, advisor: Advisor) -> HTTPResponse:
                    found = await run(query, request)
                    if isinstance(found, str):
                        return _error(400, found)
                    return await handler(request, advisor, found)

                wrapper.__name__ = handler.__name__
                return wrapper

            return decorate

        serve_page(dashboard, STATIC_DIR)

        @dashboard.route("/api/figures", methods=["GET"])
        @supervisors_only
        @given(compute)
        async def figures(request: Request, advisor: Advisor, found: report.Figures) -> HTTPResponse:
            return response.json(found.as_json(), headers={"Cache-Control": "no-store"})

        @dashboard.route("/api/charts", methods=["GET"])
        @supervisors_only
        @given(compute)
        async def charts(request: Request, advisor: Advisor, found: report.Figures) -> HTTPResponse:
            return response.html(render(found, titles()), headers={"Cache-Control": "no-store"})

        @dashboard.route("/api/export.csv", methods=["GET"])
        @supervisors_only
        @given(compute)
        async def export(request: Request, advisor: Advisor, found: report.Figures) -> HTTPResponse:
            name = f"indicadores-som-{found.since.isoformat()}-{found.until.isoformat()}.csv"
            return response.text(
                report.csv_text(found, titles()),
                content_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
            )

        @dashboard.route("/api/turns", methods=["GET"])
        @supervisors_only
        @given(turns)
        async def recent(request: Request, advisor: Advisor, found: list[report.Turn]) -> HTTPResponse:
            return response.json({"turns": [t.as_json() for t in found]}, headers={"Cache-Control": "no-store"})

        @dashboard.route("/api/entries", methods=["GET"])
        @supervisors_only
        async def entries(request: Request, advisor: Advisor) -> HTTPResponse:
            kb = knowledge_base().current()
            listed = [{"id": e.id, "title": e.title} for e in sorted(kb.entries.values(), key=lambda e: e.id)]
            return response.json({"entries": listed})

        @dashboard.route("/api/reviews", methods=["GET"])
        @supervisors_only
        async def reviews(request: Request, advisor: Advisor) -> HTTPResponse:
            return response.json({"reviews": await run(desk.store.reviews)})

        @dashboard.route("/api/reviews", methods=["POST"])
        @supervisors_only
        async def review(request: Request, advisor: Advisor) -> HTTPResponse:
            body = json_object(request)
            fields = ("conversation_id", "person_text", "expected_entry")
            if body is None or not all(isinstance(body.get(k), str) and body[k].strip() for k in fields):
                return _error(400, f"faltan {', '.join(fields)} (textos no vacíos)")
            optional = {k: body.get(k) or "" for k in ("assistant_text", "comment")}
            if not all(isinstance(v, str) for v in optional.values()):
                return _error(400, "'assistant_text' y 'comment' deben ser textos")
            if any(len(v) > MAX_REVIEW_TEXT for v in (*optional.values(), *(body[k] for k in fields))):
                return _error(413, f"un campo supera los {MAX_REVIEW_TEXT} caracteres")
            entry = body["expected_entry"].strip()
            if entry not in knowledge_base().current().entries:
                return _error(400, f"no existe la respuesta '{entry}' en la base de conocimiento")
            review_id = await run(
                desk.store.add_review,
                advisor.id,
                body["conversation_id"].strip(),
                body["person_text"].strip(),
                optional["assistant_text"].strip(),
                entry,
                optional["comment"].strip(),
            )
            await run(desk.store.audit, advisor.id, "review", None, f"review {review_id}")
            return response.json({"id": review_id}, status=201)

        return dashboard


# --- charts: inline SVG, drawn here ---------------------------------------------------------------

PALETTE = ("#a6192e", "#1a5fb4", "#0b6b3a", "#8a5a00", "#6b3fa0", "#4a4a50")
CHANNEL_NAMES = {"whatsapp": "WhatsApp", "telegram": "Telegram", "socketio": "Chat web", "rest": "REST"}
REASON_TITLES = {"requested": "Pidió un asesor", "sensitive": "Situación sensible", "not_understood": "No se entendió"}
WIDTH = 640  # a half-width card's drawing units
WIDE = 1000  # the full-width chart's


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _number(value: float | None, digits: int = 1, suffix: str = "") -> str:
    return "—" if value is None else f"{value:.{digits}f}".replace(".", ",") + suffix


def _svg(label: str, height: int, body: str, width: int = WIDTH) -> str:
    return (
        f'<svg role="img" aria-label="{_e(label)}" viewBox="0 0 {width} {height}" width="100%" '
        f'preserveAspectRatio="xMinYMin meet" xmlns="http://www.w3.org/2000/svg"><title>{_e(label)}</title>'
        f"{body}</svg>"
    )


def bars(label: str, items: list[tuple[str, int]], color: str = PALETTE[1]) -> str:
    """Horizontal bars, one per item, with the count at the end."""
    if not items:
        return f'<p class="empty">{_e(label)}: sin datos en el periodo.</p>'
    row, left, top = 26, 200, max(v for _, v in items) or 1
    parts = []
    for i, (name, value) in enumerate(items):
        y, length = i * row + 4, (WIDTH - left - 60) * value / top
        parts.append(
            f'<text x="{left - 8}" y="{y + 14}" text-anchor="end" font-size="13" fill="#1d1d1f">{_e(name[:30])}</text>'
            f'<rect x="{left}" y="{y}" width="{length:.1f}" height="18" rx="3" fill="{color}"/>'
            f'<text x="{left + length + 6:.1f}" y="{y + 14}" font-size="13" fill="#1d1d1f">{value}</text>'
        )
    return _svg(label, len(items) * row + 8, "".join(parts))


def stacked_days(figures: report.Figures) -> str:
    """Conversations per day, one bar per day stacked by channel, with a legend."""
    label = "Conversaciones por día y canal"
    days = figures.conversations_by_day
    if not days:
        return f'<p class="empty">{label}: sin conversaciones en el periodo.</p>'
    channels = list(figures.channel_totals())
    colors = {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(channels)}
    span = (figures.until - figures.since).days + 1
    plot_h, base, left = 180, 200, 40
    step = (WIDE - left - 10) / span
    top = max(sum(c.values()) for c in days.values()) or 1
    parts = [
        f'<line x1="{left}" y1="{base}" x2="{WIDE - 10}" y2="{base}" stroke="#8a8a90"/>',
        f'<text x="{left - 6}" y="{base - plot_h + 10}" text-anchor="end" font-size="12" fill="#5a5a60">{top}</text>',
        f'<text x="{left - 6}" y="{base}" text-anchor="end" font-size="12" fill="#5a5a60">0</text>',
    ]
    for index in range(span):
        day = figures.since + dt.timedelta(days=index)
        x, y = left + index * step + step * 0.15, float(base)
        for channel, count in days.get(day, {}).items():
            h = plot_h * count / top
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{step * 0.7:.1f}" height="{h:.1f}" fill="{colors[channel]}">'
                f"<title>{_e(day.isoformat())} · {_e(CHANNEL_NAMES.get(channel, channel))}: {count}</title></rect>"
            )
        if span <= 14 or index % max(1, span // 10) == 0:
            parts.append(
                f'<text x="{x + step * 0.35:.1f}" y="{base + 16}" text-anchor="middle" font-size="11" '
                f'fill="#5a5a60">{day.strftime("%d/%m")}</text>'
            )
    for i, channel in enumerate(channels):
        x = left + i * 130
        parts.append(
            f'<rect x="{x}" y="{base + 28}" width="12" height="12" fill="{colors[channel]}"/>'
            f'<text x="{x + 18}" y="{base + 39}" font-size="12" fill="#1d1d1f">'
            f"{_e(CHANNEL_NAMES.get(channel, channel))} ({figures.channel_totals()[channel]})</text>"
        )
    return _svg(label, base + 48, "".join(parts), WIDE)


ADVISOR_COLUMNS = (
    "Asesor(a)",
    "Atendidas",
    "Cerradas",
    "Primera respuesta (mediana)",
    "Satisfacción",
    "Calificaciones",
)


def advisor_table(advisors: tuple[report.AdvisorFigures, ...]) -> str:
    """Each advisor's hand-offs of the period as a table, headed by the card's title (#advisors-title)."""
    if not advisors:
        return '<p class="empty">Sin derivaciones atendidas en el periodo.</p>'
    head = "".join(f'<th scope="col">{_e(column)}</th>' for column in ADVISOR_COLUMNS)
    body = "".join(
        f'<tr><th scope="row">{_e(a.name)}</th><td>{a.attended}</td><td>{a.closed}</td>'
        f"<td>{_e(_number(a.first_response.median, 1, ' min'))}</td>"
        f"<td>{_e(_number(a.satisfaction, 2, ' / 5'))}</td><td>{a.rated}</td></tr>"
        for a in advisors
    )
    return (
        f'<table class="advisors" aria-labelledby="advisors-title"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>"
    )


def _card(title: str, value: str, detail: str = "") -> str:
    extra = f'<span class="detail">{_e(detail)}</span>' if detail else ""
    return f'<div class="kpi"><span class="title">{_e(title)}</span><strong>{_e(value)}</strong>{extra}</div>'


def render(figures: report.Figures, topic_titles: dict[str, str]) -> str:
    """The dashboard's content for one period: figures as cards and charts. Every text from the data
    (topics, countries, channels) is escaped: nothing in it is read as markup."""
    f = figures
    cards = "".join(
        (
            _card("Conversaciones", str(f.conversations), f"{f.turns} mensajes"),
            _card("No entendidos", _number(None if f.fallback_rate is None else f.fallback_rate * 100, 1, " %"),
                  f"{f.fallback_turns} de {f.turns} mensajes"),
            _card("Derivaciones", str(f.handoffs), f"{f.still_waiting} aún en espera"),
            _card("Espera (mediana)", _number(f.waiting.median, 1, " min"),
                  f"percentil 90: {_number(f.waiting.p90, 1, ' min')} · horario de atención"),
            _card("Primera respuesta (mediana)", _number(f.first_response.median, 1, " min"),
                  f"percentil 90: {_number(f.first_response.p90, 1, ' min')}"),
            _card("Abandonadas sin asesor", str(f.abandoned),
                  f"{f.cancelled_unattended} canceladas · {f.expired_unattended} vencidas sin mensaje"),
            _card("Satisfacción", _number(f.satisfaction, 2, " / 5"), f"{f.rated} calificaciones de {f.closed}"),
        )
    )  # fmt: skip
    sections = [
        f'<p class="period" id="period">Del {f.since.strftime("%d/%m/%Y")} al {f.until.strftime("%d/%m/%Y")} '
        "(hora de Lima)</p>",
        f'<section class="kpis" aria-label="Resumen">{cards}</section>',
        f'<section class="card wide"><h2>Conversaciones por día y canal</h2>{stacked_days(f)}</section>',
        '<section class="card"><h2>Temas más consultados</h2>'
        + bars("Temas más consultados", [(topic_titles.get(t, t), n) for t, n in f.topics])
        + "</section>",
        '<section class="card"><h2>Países más mencionados</h2>'
        + bars("Países más mencionados", f.countries, PALETTE[2])
        + "</section>",
        '<section class="card"><h2>Derivaciones por motivo</h2>'
        + bars(
            "Derivaciones por motivo",
            [(REASON_TITLES.get(r, r), n) for r, n in f.handoffs_by_reason.items()],
            PALETTE[0],
        )
        + "</section>",
        '<section class="card"><h2>Calificaciones</h2>'
        + bars("Calificaciones", [(f"{score} ★", f.ratings.get(score, 0)) for score in range(5, 0, -1)], PALETTE[3])
        + "</section>",
        '<section class="card wide"><h2 id="advisors-title">Atención por asesor(a)</h2>'
        + advisor_table(f.advisors)
        + "</section>",
    ]
    return "".join(sections)
