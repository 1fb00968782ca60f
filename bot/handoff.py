"""Human advisor hand-off: the queue of conversations waiting for, or talking with, an advisor.

One SQL database (SQLite under var/ by default, PostgreSQL when DATABASE_URL is set) shared by the
action server, which opens hand-offs, and the Rasa server, which routes messages and serves the
advisor console. States: waiting → active → closed (or cancelled by the person).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import VerificationError
from sqlalchemy.orm import declarative_base, sessionmaker

from bot.database import engine_for

Base: Any = declarative_base()  # SQLAlchemy 1.4 builds this class at run time: no static type for it
OPEN_STATES = ("waiting", "active")
TOKEN_LIFETIME = dt.timedelta(hours=8)
SUMMARY_TURNS = 6


Clock = Callable[[], dt.datetime]  # returns an aware datetime


def system_clock() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def naive_utc(moment: dt.datetime) -> dt.datetime:
    """The database keeps naive UTC times."""
    return moment.astimezone(dt.timezone.utc).replace(tzinfo=None)


class AdvisorAccount(Base):
    __tablename__ = "advisors"
    id = sa.Column(sa.Integer, primary_key=True)
    username = sa.Column(sa.String(64), unique=True, nullable=False)
    display_name = sa.Column(sa.String(128), nullable=False)
    password_hash = sa.Column(sa.String(255), nullable=False)
    created_at = sa.Column(sa.DateTime, nullable=False)


class Session(Base):
    __tablename__ = "advisor_sessions"
    token_hash = sa.Column(sa.String(64), primary_key=True)
    advisor_id = sa.Column(sa.Integer, sa.ForeignKey("advisors.id"), nullable=False)
    expires_at = sa.Column(sa.DateTime, nullable=False)


class Handoff(Base):
    __tablename__ = "handoffs"
    id = sa.Column(sa.Integer, primary_key=True)
    conversation_id = sa.Column(sa.String(255), nullable=False, index=True)
    channel = sa.Column(sa.String(32), nullable=False)
    reason = sa.Column(sa.String(32), nullable=False)  # requested | not_understood | sensitive
    priority = sa.Column(sa.Integer, default=0, nullable=False)  # 1 = sensitive situation
    profile = sa.Column(sa.Text, default="{}", nullable=False)  # what the assistant learned (JSON)
    summary = sa.Column(sa.Text, default="", nullable=False)
    state = sa.Column(sa.String(16), default="waiting", nullable=False, index=True)
    mode = sa.Column(sa.String(16), default="live", nullable=False)  # live | message (leave a message)
    message_left = sa.Column(sa.Boolean, default=False, nullable=False)
    advisor_id = sa.Column(sa.Integer, sa.ForeignKey("advisors.id"), nullable=True)
    rating = sa.Column(sa.Integer, nullable=True)
    awaiting_rating = sa.Column(sa.Boolean, default=False, nullable=False)
    created_at = sa.Column(sa.DateTime, nullable=False)
    claimed_at = sa.Column(sa.DateTime, nullable=True)
    closed_at = sa.Column(sa.DateTime, nullable=True)
    last_person_message_at = sa.Column(sa.DateTime, nullable=False)


class HandoffMessage(Base):
    __tablename__ = "handoff_messages"
    id = sa.Column(sa.Integer, primary_key=True)
    handoff_id = sa.Column(sa.Integer, sa.ForeignKey("handoffs.id"), nullable=False, index=True)
    author = sa.Column(sa.String(16), nullable=False)  # person | assistant | advisor | note | system
    advisor_id = sa.Column(sa.Integer, sa.ForeignKey("advisors.id"), nullable=True)
    text = sa.Column(sa.Text, nullable=False)
    created_at = sa.Column(sa.DateTime, nullable=False)


class HandoffMedia(Base):
    """A file the person sent during a hand-off: its type and the provider's address of it (Twilio's
    media URL), never its bytes. An advisor's console fetches it from there when opened; the row
    is erased with its hand-off (retention, `forget`)."""

    __tablename__ = "handoff_media"
    id = sa.Column(sa.Integer, primary_key=True)
    handoff_id = sa.Column(sa.Integer, sa.ForeignKey("handoffs.id"), nullable=False, index=True)
    message_id = sa.Column(sa.Integer, sa.ForeignKey("handoff_messages.id"), nullable=False)
    content_type = sa.Column(sa.String(128), default="", nullable=False)
    url = sa.Column(sa.Text, nullable=False)


class AuditEntry(Base):
    __tablename__ = "advisor_audit"
    id = sa.Column(sa.Integer, primary_key=True)
    advisor_id = sa.Column(sa.Integer, sa.ForeignKey("advisors.id"), nullable=True)
    action = sa.Column(sa.String(32), nullable=False)
    handoff_id = sa.Column(sa.Integer, nullable=True)
    detail = sa.Column(sa.Text, default="", nullable=False)
    at = sa.Column(sa.DateTime, nullable=False)


class SupervisorRole(Base):
    """Advisors who may read the dashboard and review the assistant's answers (a table of its own:
    `create_all` adds tables to an existing database, never columns)."""

    __tablename__ = "supervisors"
    advisor_id = sa.Column(sa.Integer, sa.ForeignKey("advisors.id"), primary_key=True)
    granted_at = sa.Column(sa.DateTime, nullable=False)


class AnswerReview(Base):
    """A supervisor's verdict on one assistant turn: the answer was wrong, `expected_entry` should
    have answered (what `python -m bot review export` gives the editors)."""

    __tablename__ = "answer_reviews"
    id = sa.Column(sa.Integer, primary_key=True)
    conversation_id = sa.Column(sa.String(255), nullable=False, index=True)
    person_text = sa.Column(sa.Text, nullable=False)
    assistant_text = sa.Column(sa.Text, default="", nullable=False)
    expected_entry = sa.Column(sa.String(128), nullable=False)
    comment = sa.Column(sa.Text, default="", nullable=False)
    supervisor_id = sa.Column(sa.Integer, sa.ForeignKey("advisors.id"), nullable=False)
    created_at = sa.Column(sa.DateTime, nullable=False)


# How far an outbound message got, as the provider reports it (Twilio's MessageStatus). A status
# never moves backwards: a late or repeated callback ("delivered" after "read") changes nothing.
DELIVERY_RANK = {
    "accepted": 0, "scheduled": 0, "queued": 1, "sending": 2, "sent": 3,
    "delivered": 4, "undelivered": 4, "failed": 4, "read": 5,
}  # fmt: skip
FAILED_DELIVERY = frozenset({"failed", "undelivered"})


class DeliveryReceipt(Base):
    """One outbound message as the provider knows it (its SID), the furthest status it reached, and
    the hand-off message it carried, if any. No personal data: no address, no text. A table of its
    own (`create_all` adds tables to an existing database, never columns), without a foreign key so
    erasing hand-off messages never waits for it."""

    __tablename__ = "delivery_receipts"
    provider_sid = sa.Column(sa.String(64), primary_key=True)
    status = sa.Column(sa.String(16), nullable=False)
    error_code = sa.Column(sa.String(16), nullable=True)
    handoff_message_id = sa.Column(sa.Integer, nullable=True, index=True)
    template = sa.Column(sa.Boolean, default=False, nullable=False)  # went as an approved template
    updated_at = sa.Column(sa.DateTime, nullable=False, index=True)


class ProviderContent(Base):
    """Content created once at the provider (a WhatsApp button set, by the hash of its JSON) and
    reused by every replica and after restarts."""

    __tablename__ = "provider_contents"
    digest = sa.Column(sa.String(64), primary_key=True)
    content_sid = sa.Column(sa.String(64), nullable=False)
    created_at = sa.Column(sa.DateTime, nullable=False)


class HandoffError(Exception):
    """A request the hand-off rules refuse; the subclass says why, the message says it to an advisor."""


class InvalidRequest(HandoffError):
    """What was asked for is malformed (a password too short, say)."""


class NotFound(HandoffError):
    """No such hand-off."""


class Conflict(HandoffError):
    """The hand-off is not in a state that allows this (already claimed, closed, outside WhatsApp's window)."""


class NotYours(HandoffError):
    """Another advisor attends this hand-off."""


@dataclass(frozen=True)
class Advisor:
    """A signed-in advisor: who writes, claims and closes."""

    id: int
    name: str


@dataclass(frozen=True)
class HandoffView:
    """A hand-off record detached from the database session."""

    id: int
    conversation_id: str
    channel: str
    reason: str
    priority: int
    profile: dict[str, Any]
    summary: str
    state: str
    mode: str
    message_left: bool
    advisor_id: int | None
    advisor: str | None
    rating: int | None
    awaiting_rating: bool
    created_at: dt.datetime
    claimed_at: dt.datetime | None
    closed_at: dt.datetime | None
    last_person_message_at: dt.datetime

    @property
    def given_back(self) -> bool:
        """Waiting again after an advisor had it (released to the queue)."""
        return self.state == "waiting" and self.claimed_at is not None

    def as_json(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items()}
        data["given_back"] = self.given_back
        for key in ("created_at", "claimed_at", "closed_at", "last_person_message_at"):
            data[key] = data[key].isoformat() + "Z" if data[key] else None
        return data


@dataclass(frozen=True)
class TranscriptLine:
    author: str
    text: str
    at: dt.datetime
    advisor: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"author": self.author, "text": self.text, "at": self.at.isoformat() + "Z", "advisor": self.advisor}


def missing_history(session: list[TranscriptLine], record: list[TranscriptLine]) -> list[TranscriptLine]:
    """The messages of `session` (everything said before the hand-off) that `record` lacks.

    A record starts with the last part of the session: what the assistant saw when it opened the
    hand-off (the recent turns). The earlier messages are the session minus that overlap. With no
    overlap to be sure of, nothing is added."""
    said = [(line.author, line.text) for line in record]
    if not said:
        return list(session)
    for overlap in range(min(len(session), len(said)), 0, -1):
        if [(line.author, line.text) for line in session[-overlap:]] == said[:overlap]:
            return session[:-overlap]
    return []


# The hand-offs that take a conversation's messages: one an advisor attends, or one still waiting
# for the person's message (once left, the assistant answers again until an advisor takes the case).
INTERCEPTS = sa.or_(Handoff.state == "active", sa.and_(Handoff.state == "waiting", Handoff.message_left.is_(False)))

_INVOLVES = (
    sa.select(Handoff.id)
    .where(
        Handoff.conversation_id == sa.bindparam("conversation_id"),
        sa.or_(INTERCEPTS, Handoff.awaiting_rating.is_(True)),
    )
    .limit(1)
)


class HandoffStore:
    def __init__(self, database_url: str, clock: Clock = system_clock) -> None:
        """Every time the store writes or compares comes from `clock`, so tests choose the day."""
        self.clock = clock
        self.engine = engine_for(database_url)
        try:
            Base.metadata.create_all(self.engine)
        except sa.exc.DBAPIError:  # another process created the tables at the same moment
            Base.metadata.create_all(self.engine)
        self._sessions = sessionmaker(bind=self.engine, expire_on_commit=False)
        self._hasher = PasswordHasher()

    def _now(self) -> dt.datetime:
        return naive_utc(self.clock())

    @contextmanager
    def _session(self) -> Iterator[Any]:
        session = self._sessions()
        try:
            yield session
            session.commit()
        except Exception:
            session.rollback()
            raise
        finally:
            session.close()

    # --- advisors -----------------------------------------------------------------------

    def add_advisor(self, username: str, password: str, display_name: str | None = None) -> None:
        if len(password) < 10:
            raise InvalidRequest("la contraseña debe tener al menos 10 caracteres")
        with self._session() as s:
            if s.query(AdvisorAccount).filter_by(username=username).first():
                raise Conflict(f"ya existe el asesor '{username}'")
            s.add(
                AdvisorAccount(
                    username=username,
                    display_name=display_name or username,
                    password_hash=self._hasher.hash(password),
                    created_at=self._now(),
                )
            )

    def login(self, username: str, password: str) -> tuple[str, Advisor] | None:
        """A new session token for valid credentials, and whose it is; else None."""
        with self._session() as s:
            advisor = s.query(AdvisorAccount).filter_by(username=username).first()
            if advisor is None:
                self._hasher.hash(password)  # same cost whether or not the user exists
                return None
            try:
                self._hasher.verify(advisor.password_hash, password)
            except VerificationError:
                return None
            token, now = secrets.token_urlsafe(32), self._now()
            s.add(Session(token_hash=_digest(token), advisor_id=advisor.id, expires_at=now + TOKEN_LIFETIME))
            s.query(Session).filter(Session.expires_at < now).delete()
            return token, Advisor(advisor.id, advisor.display_name)

    def end_session(self, token: str) -> bool:
        """Sign out: the token stops working at once. False if it was not a live session."""
        with self._session() as s:
            return s.query(Session).filter(Session.token_hash == _digest(token)).delete() > 0

    def end_sessions_of(self, username: str) -> int:
        """Revoke every session of an advisor (a lost laptop, someone leaving); how many there were."""
        with self._session() as s:
            advisor = s.query(AdvisorAccount).filter_by(username=username).first()
            if advisor is None:
                raise NotFound(f"no existe el asesor '{username}'")
            return s.query(Session).filter(Session.advisor_id == advisor.id).delete()

    def advisor_for_token(self, token: str) -> Advisor | None:
        with self._session() as s:
            row = (
                s.query(AdvisorAccount.id, AdvisorAccount.display_name)
                .join(Session, Session.advisor_id == AdvisorAccount.id)
                .filter(Session.token_hash == _digest(token), Session.expires_at > self._now())
                .first()
            )
            return Advisor(row[0], row[1]) if row else None

    def audit(self, advisor_id: int | None, action: str, handoff_id: int | None = None, detail: str = "") -> None:
        with self._session() as s:
            s.add(
                AuditEntry(advisor_id=advisor_id, action=action, handoff_id=handoff_id, detail=detail, at=self._now())
            )

    def audit_unless_recent(self, advisor_id: int, action: str, handoff_id: int | None, within: dt.timedelta) -> None:
        """Audit once per `within`: a console that polls a case reads it every few seconds."""
        with self._session() as s:
            recent = (
                s.query(AuditEntry.id)
                .filter_by(advisor_id=advisor_id, action=action, handoff_id=handoff_id)
                .filter(AuditEntry.at > self._now() - within)
                .first()
            )
            if recent is None:
                s.add(
                    AuditEntry(advisor_id=advisor_id, action=action, handoff_id=handoff_id, detail="", at=self._now())
                )

    def audit_log(self) -> list[tuple[int | None, str, int | None]]:
        with self._session() as s:
            return [(a.advisor_id, a.action, a.handoff_id) for a in s.query(AuditEntry).order_by(AuditEntry.id)]

    # --- supervisors and reviews -------------------------------------------------------

    def set_supervisor(self, username: str, supervisor: bool = True) -> None:
        """Grant (or take away) the supervisor role: the dashboard and the review of answers."""
        with self._session() as s:
            advisor = s.query(AdvisorAccount).filter_by(username=username).first()
            if advisor is None:
                raise NotFound(f"no existe el asesor '{username}'")
            role = s.get(SupervisorRole, advisor.id)
            if supervisor and role is None:
                s.add(SupervisorRole(advisor_id=advisor.id, granted_at=self._now()))
            elif not supervisor and role is not None:
                s.delete(role)

    def is_supervisor(self, advisor_id: int) -> bool:
        with self._session() as s:
            return s.get(SupervisorRole, advisor_id) is not None

    def add_review(
        self,
        supervisor_id: int,
        conversation_id: str,
        person_text: str,
        assistant_text: str,
        expected_entry: str,
        comment: str = "",
    ) -> int:
        """Keep a supervisor's verdict on an assistant turn; its id."""
        with self._session() as s:
            review = AnswerReview(
                conversation_id=conversation_id,
                person_text=person_text,
                assistant_text=assistant_text,
                expected_entry=expected_entry,
                comment=comment,
                supervisor_id=supervisor_id,
                created_at=self._now(),
            )
            s.add(review)
            s.flush()
            return int(review.id)

    def reviews(self) -> list[dict[str, Any]]:
        """Every review, oldest first, with the supervisor's name."""
        with self._session() as s:
            rows = (
                s.query(AnswerReview, AdvisorAccount.display_name)
                .join(AdvisorAccount, AdvisorAccount.id == AnswerReview.supervisor_id)
                .order_by(AnswerReview.id)
            )
            return [
                {
                    "id": r.id,
                    "conversation_id": r.conversation_id,
                    "person_text": r.person_text,
                    "assistant_text": r.assistant_text,
                    "expected_entry": r.expected_entry,
                    "comment": r.comment,
                    "supervisor": name,
                    "created_at": r.created_at.isoformat() + "Z",
                }
                for r, name in rows
            ]

    def purge_reviews_before(self, cutoff: dt.datetime) -> int:
        """Delete reviews written before `cutoff` (aware): they quote what a person wrote (Ley 29733)."""
        with self._session() as s, overwriting_deletes(s.connection()):
            return s.query(AnswerReview).filter(AnswerReview.created_at < naive_utc(cutoff)).delete()

    def forget_reviews(self, conversation_id: str) -> int:
        """Delete the reviews of one person's conversation; how many."""
        with self._session() as s, overwriting_deletes(s.connection()):
            return s.query(AnswerReview).filter(AnswerReview.conversation_id == conversation_id).delete()

    # --- hand-offs ----------------------------------------------------------------------

    def open(
        self,
        conversation_id: str,
        channel: str,
        reason: str,
        priority: int,
        profile: dict[str, Any],
        transcript: list[tuple[str, str]],
        mode: str = "live",
    ) -> HandoffView:
        """Open a hand-off, or return the one already open for this conversation."""
        with self._session() as s:
            current = self._open_record(s, conversation_id)
            if current is not None:
                return self._view(s, current)
            now = self._now()
            record = Handoff(
                conversation_id=conversation_id,
                channel=channel,
                reason=reason,
                priority=priority,
                profile=json.dumps(profile, ensure_ascii=False),
                summary=" / ".join(f"{who}: {text[:80]}" for who, text in transcript[-SUMMARY_TURNS:]),
                mode=mode,
                created_at=now,
                last_person_message_at=now,
            )
            s.add(record)
            s.flush()
            for author, text in transcript:
                s.add(HandoffMessage(handoff_id=record.id, author=author, text=text, created_at=now))
            return self._view(s, record)

    def involves(self, conversation_id: str) -> bool:
        """One cheap query on every message: is a hand-off open, or a rating awaited?

        A statement built once, on a bare connection: the ORM session, query building and
        commit cost more than the indexed lookup itself."""
        with self.engine.connect() as connection:
            return connection.execute(_INVOLVES, {"conversation_id": conversation_id}).first() is not None

    def open_for(self, conversation_id: str) -> HandoffView | None:
        """The hand-off that intercepts this conversation's messages, if any."""
        with self._session() as s:
            record = self._open_record(s, conversation_id)
            return self._view(s, record) if record else None

    def offered_message_before(self, conversation_id: str) -> bool:
        """Whether this conversation already had a leave-a-message hand-off."""
        with self._session() as s:
            return s.query(Handoff.id).filter_by(conversation_id=conversation_id, mode="message").first() is not None

    def awaiting_rating(self, conversation_id: str) -> HandoffView | None:
        with self._session() as s:
            record = (
                s.query(Handoff)
                .filter_by(conversation_id=conversation_id, awaiting_rating=True)
                .order_by(Handoff.id.desc())
                .first()
            )
            return self._view(s, record) if record else None

    def get(self, handoff_id: int) -> HandoffView:
        with self._session() as s:
            return self._view(s, self._record(s, handoff_id))

    def queue(self, state: str) -> list[HandoffView]:
        """Hand-offs in `state`: left messages and sensitive cases first, then the oldest."""
        with self._session() as s:
            query = s.query(Handoff).filter_by(state=state)
            if state == "closed":
                query = query.order_by(Handoff.closed_at.desc()).limit(200)
            else:
                query = query.order_by(Handoff.priority.desc(), Handoff.created_at, Handoff.id)
            return [self._view(s, r) for r in query]

    def position(self, handoff_id: int) -> int:
        """1-based place in the waiting queue (the order of `queue`), 0 when not waiting.

        Counted in the database: the queue can be long, and this runs for every hand-off request."""
        with self._session() as s:
            record = s.get(Handoff, handoff_id)
            if record is None or record.state != "waiting":
                return 0
            ahead = sa.or_(
                Handoff.priority > record.priority,
                sa.and_(
                    Handoff.priority == record.priority,
                    sa.or_(
                        Handoff.created_at < record.created_at,
                        sa.and_(Handoff.created_at == record.created_at, Handoff.id < record.id),
                    ),
                ),
            )
            return 1 + s.query(sa.func.count(Handoff.id)).filter(Handoff.state == "waiting", ahead).scalar()

    def transcript(self, handoff_id: int) -> list[TranscriptLine]:
        with self._session() as s:
            rows = (
                s.query(HandoffMessage, AdvisorAccount.display_name)
                .outerjoin(AdvisorAccount, AdvisorAccount.id == HandoffMessage.advisor_id)
                .filter(HandoffMessage.handoff_id == handoff_id)
                .order_by(HandoffMessage.id)
            )
            return [TranscriptLine(m.author, m.text, m.created_at, name) for m, name in rows]

    def add_message(
        self,
        handoff_id: int,
        author: str,
        text: str,
        advisor_id: int | None = None,
        media: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        """Add a line to the record; `media` (the person's files: {"type", "url"}) keeps only where
        each file is, for an advisor to open later."""
        with self._session() as s:
            record, now = self._record(s, handoff_id), self._now()
            message = HandoffMessage(
                handoff_id=handoff_id, author=author, text=text, advisor_id=advisor_id, created_at=now
            )
            s.add(message)
            if author == "person":
                record.last_person_message_at = now
            files = [item for item in media if isinstance(item.get("url"), str) and item["url"]]
            if files:
                s.flush()  # the message's id
                for item in files:
                    content_type = str(item.get("type") or "")[:128]
                    s.add(
                        HandoffMedia(
                            handoff_id=handoff_id, message_id=message.id, content_type=content_type, url=item["url"]
                        )
                    )

    def media(self, handoff_id: int) -> list[tuple[int, str, str]]:
        """The files the person sent during this hand-off, in order: (the line of the transcript
        that carries it, its type, its URL)."""
        with self._session() as s:
            lines = {
                message_id: index
                for index, (message_id,) in enumerate(
                    s.query(HandoffMessage.id).filter_by(handoff_id=handoff_id).order_by(HandoffMessage.id)
                )
            }
            rows = s.query(HandoffMedia).filter_by(handoff_id=handoff_id).order_by(HandoffMedia.id)
            return [(lines[m.message_id], m.content_type, m.url) for m in rows if m.message_id in lines]

    def claim(self, handoff_id: int, advisor_id: int) -> HandoffView:
        """Take a waiting hand-off; of two advisors claiming at once, exactly one wins."""
        with self._session() as s:
            self._record(s, handoff_id)
            won = (
                s.query(Handoff)
                .filter(Handoff.id == handoff_id, Handoff.state == "waiting")
                .update(
                    {"state": "active", "advisor_id": advisor_id, "claimed_at": self._now()}, synchronize_session=False
                )
            )
            if not won:
                raise Conflict("esta conversación ya no está en espera")
        return self.get(handoff_id)

    def require_owner(self, handoff_id: int, advisor_id: int) -> HandoffView:
        view = self.get(handoff_id)
        if view.state != "active":
            raise Conflict(f"esta conversación no está en atención ({view.state})")
        if view.advisor_id != advisor_id:
            raise NotYours("otro asesor atiende esta conversación")
        return view

    def release(self, handoff_id: int, advisor_id: int, supervisor: bool = False) -> HandoffView:
        """Put an active hand-off back in the queue (its advisor, or a supervisor, releases it): first
        in line, and in leave-a-message mode, so that the waiting time already spent never expires it;
        the person's next message is kept for whoever takes it."""
        view = self.get(handoff_id) if supervisor else self.require_owner(handoff_id, advisor_id)
        if view.state != "active":
            raise Conflict(f"esta conversación no está en atención ({view.state})")
        with self._session() as s:
            released = (
                s.query(Handoff)
                .filter(Handoff.id == handoff_id, Handoff.state == "active", Handoff.advisor_id == view.advisor_id)
                .update(
                    {
                        "state": "waiting", "advisor_id": None, "mode": "message",
                        "priority": sa.case((Handoff.priority < 1, 1), else_=Handoff.priority),
                    },
                    synchronize_session=False,
                )
            )  # fmt: skip
            if not released:
                raise Conflict("esta conversación cambió mientras tanto: actualice la vista")
        return self.get(handoff_id)

    def close(self, handoff_id: int, advisor_id: int) -> HandoffView:
        self.require_owner(handoff_id, advisor_id)
        with self._session() as s:
            record = self._record(s, handoff_id)
            record.state, record.closed_at, record.awaiting_rating = "closed", self._now(), True
        return self.get(handoff_id)

    def cancel(self, handoff_id: int) -> None:
        with self._session() as s:
            record = self._record(s, handoff_id)
            record.state, record.closed_at = "cancelled", self._now()

    def switch_to_message_mode(self, handoff_id: int) -> bool:
        """Nobody could attend live: the person may leave a message, which stays in the queue.

        True for the one caller that made the switch (several servers may sweep at once)."""
        with self._session() as s:
            return bool(
                s.query(Handoff)
                .filter(Handoff.id == handoff_id, Handoff.mode == "live", Handoff.state == "waiting")
                .update({"mode": "message"}, synchronize_session=False)
            )

    def mark_message_left(self, handoff_id: int) -> None:
        with self._session() as s:
            record = self._record(s, handoff_id)
            record.message_left, record.priority = True, max(record.priority, 1)

    def unclaimed_since(self, cutoff: dt.datetime) -> list[HandoffView]:
        """Live hand-offs still waiting since before `cutoff` (an aware datetime)."""
        cutoff = naive_utc(cutoff)
        with self._session() as s:
            query = s.query(Handoff).filter(
                Handoff.state == "waiting", Handoff.mode == "live", Handoff.created_at < cutoff
            )
            return [self._view(s, r) for r in query]

    def rate(self, handoff_id: int, rating: int) -> None:
        with self._session() as s:
            record = self._record(s, handoff_id)
            record.rating, record.awaiting_rating = rating, False

    def stop_awaiting_rating(self, handoff_id: int) -> None:
        with self._session() as s:
            self._record(s, handoff_id).awaiting_rating = False

    # --- delivery receipts and provider content ---------------------------------------

    def note_delivery(self, provider_sid: str, status: str, error_code: str | None = None) -> str:
        """Keep what the provider says about one message; returns the status now stored. Only a
        status further on than the stored one is kept (callbacks come late, twice, out of order)."""
        status = status.lower()
        if status not in DELIVERY_RANK:
            raise InvalidRequest(f"estado de entrega desconocido: {status[:32]}")
        for attempt in range(2):  # two first callbacks at once: one inserts, the other updates
            try:
                with self._session() as s:
                    receipt = s.get(DeliveryReceipt, provider_sid)
                    if receipt is None:
                        receipt = DeliveryReceipt(provider_sid=provider_sid, status=status, updated_at=self._now())
                        receipt.error_code = error_code or None
                        s.add(receipt)
                    elif DELIVERY_RANK[status] > DELIVERY_RANK.get(receipt.status, -1):
                        receipt.status, receipt.updated_at = status, self._now()
                        receipt.error_code = error_code or receipt.error_code
                    return str(receipt.status)
            except sa.exc.IntegrityError:
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def add_sent_message(
        self,
        handoff_id: int,
        author: str,
        text: str,
        advisor_id: int | None,
        provider_sids: tuple[str, ...] = (),
        template: bool = False,
    ) -> None:
        """`add_message` for a message a provider took, linked to its receipts (one per SID: a
        long text goes in several parts)."""
        with self._session() as s:
            record, now = self._record(s, handoff_id), self._now()
            message = HandoffMessage(handoff_id=record.id, author=author, text=text, advisor_id=advisor_id)
            message.created_at = now
            s.add(message)
            s.flush()
            for sid in provider_sids:
                receipt = s.get(DeliveryReceipt, sid)
                if receipt is None:  # its first callback has not come yet
                    receipt = DeliveryReceipt(provider_sid=sid, status="queued", updated_at=now)
                    s.add(receipt)
                receipt.handoff_message_id, receipt.template = message.id, template

    def deliveries(self, handoff_id: int) -> list[dict[str, Any] | None]:
        """For each line of `transcript(handoff_id)`, in its order: how far the message got at the
        provider (the least advanced of its parts; a failed part fails it), or None."""
        with self._session() as s:
            ids = [
                i
                for (i,) in s.query(HandoffMessage.id)
                .filter(HandoffMessage.handoff_id == handoff_id)
                .order_by(HandoffMessage.id)
            ]
            receipts: dict[int, list[DeliveryReceipt]] = {}
            for start in range(0, len(ids), CHUNK):
                chunk = ids[start : start + CHUNK]
                for r in s.query(DeliveryReceipt).filter(DeliveryReceipt.handoff_message_id.in_(chunk)):
                    receipts.setdefault(r.handoff_message_id, []).append(r)
            return [_delivery_summary(receipts[i]) if i in receipts else None for i in ids]

    def content_sid(self, digest: str) -> str | None:
        with self._session() as s:
            record = s.get(ProviderContent, digest)
            return record.content_sid if record else None

    def remember_content(self, digest: str, content_sid: str) -> str:
        """Keep a created content's SID; if another replica kept one first, that one (returned) wins."""
        try:
            with self._session() as s:
                s.add(ProviderContent(digest=digest, content_sid=content_sid, created_at=self._now()))
            return content_sid
        except sa.exc.IntegrityError:
            return self.content_sid(digest) or content_sid

    def purge_receipts_before(self, cutoff: dt.datetime) -> int:
        """Delete delivery receipts last updated before `cutoff` (aware)."""
        with self._session() as s:
            old = DeliveryReceipt.updated_at < naive_utc(cutoff)
            return s.query(DeliveryReceipt).filter(old).delete(synchronize_session=False)

    # --- retention (Ley 29733) ----------------------------------------------------------

    def purge_older_than(
        self, cutoff: dt.datetime, conversation_active: Callable[[str], bool] = lambda conversation_id: False
    ) -> tuple[int, int]:
        """Delete the hand-offs last touched before `cutoff` (aware), with their messages and notes.

        Last touched: opened, claimed, closed, or a message or note written, whichever came last.
        Closed and cancelled hand-offs go; so do open ones (waiting or active) that were abandoned,
        unless `conversation_active` says the person still talks to the assistant. Audit rows about
        them are kept but unlinked. Returns (closed or cancelled, abandoned)."""
        cutoff = naive_utc(cutoff)
        with self._session() as s:
            stale = s.query(Handoff.id, Handoff.conversation_id, Handoff.state).filter(_untouched_since(cutoff)).all()
            finished = [i for i, _, state in stale if state not in OPEN_STATES]
            abandoned = [
                i for i, conversation, state in stale if state in OPEN_STATES and not conversation_active(conversation)
            ]
            ids = finished + abandoned
            with overwriting_deletes(s.connection()):
                for start in range(0, len(ids), CHUNK):
                    chunk = ids[start : start + CHUNK]
                    _unlink_audit(s, AuditEntry.handoff_id.in_(chunk), "purged")
                    _erase(s, chunk)
            return len(finished), len(abandoned)

    def purge_audit_before(self, cutoff: dt.datetime) -> int:
        """Delete audit entries written before `cutoff` (aware)."""
        with self._session() as s:
            return s.query(AuditEntry).filter(AuditEntry.at < naive_utc(cutoff)).delete(synchronize_session=False)

    def purge_expired_sessions(self) -> int:
        """Delete advisor sessions past their expiry (signing in deletes them too, but only then)."""
        with self._session() as s:
            return s.query(Session).filter(Session.expires_at < self._now()).delete(synchronize_session=False)

    def personal_data(self, conversation_id: str) -> Erased:
        """What this store keeps about one conversation: what `forget` erases."""
        with self._session() as s:
            ids = _handoffs_of(s, conversation_id)
            authors = [a for (a,) in s.query(HandoffMessage.author).filter(HandoffMessage.handoff_id.in_(ids))]
            audit = s.query(sa.func.count(AuditEntry.id)).filter(_naming(conversation_id, ids)).scalar()
            reviews = s.query(sa.func.count(AnswerReview.id)).filter_by(conversation_id=conversation_id).scalar()
            return Erased(len(ids), sum(a != "note" for a in authors), authors.count("note"), audit, reviews)

    def forget(self, conversation_id: str) -> Erased:
        """Erase one person's hand-offs, their messages, the advisors' notes and the reviews quoting
        them. The audit
        rows that name them keep who did what and when, but no longer about which case."""
        with self._session() as s:
            ids = _handoffs_of(s, conversation_id)
            with overwriting_deletes(s.connection()):
                audit = _unlink_audit(s, _naming(conversation_id, ids), "erased")
                handoffs, messages, notes = _erase(s, ids)
                reviews = s.query(AnswerReview).filter_by(conversation_id=conversation_id).delete()
            return Erased(handoffs, messages, notes, audit, reviews)

    # --- helpers ------------------------------------------------------------------------

    @staticmethod
    def _open_record(s, conversation_id: str) -> Handoff | None:
        return (
            s.query(Handoff)
            .filter(Handoff.conversation_id == conversation_id, INTERCEPTS)
            .order_by(Handoff.id.desc())
            .first()
        )

    @staticmethod
    def _record(s, handoff_id: int) -> Handoff:
        record = s.get(Handoff, handoff_id)
        if record is None:
            raise NotFound("no existe esa derivación")
        return record

    @staticmethod
    def _view(s, record: Handoff) -> HandoffView:
        advisor = s.get(AdvisorAccount, record.advisor_id).display_name if record.advisor_id else None
        return HandoffView(
            id=record.id,
            conversation_id=record.conversation_id,
            channel=record.channel,
            reason=record.reason,
            priority=record.priority,
            profile=json.loads(record.profile or "{}"),
            summary=record.summary,
            state=record.state,
            mode=record.mode,
            message_left=record.message_left,
            advisor_id=record.advisor_id,
            advisor=advisor,
            rating=record.rating,
            awaiting_rating=record.awaiting_rating,
            created_at=record.created_at,
            claimed_at=record.claimed_at,
            closed_at=record.closed_at,
            last_person_message_at=record.last_person_message_at,
        )


CHUNK = 500  # ids per IN (...): SQLite limits the parameters of one statement


@dataclass(frozen=True)
class Erased:
    """What was (or would be) erased about a conversation: hand-offs, the messages in them (the
    person's, the assistant's and the advisors'), the advisors' internal notes, and the audit rows
    that named them (kept, but pseudonymised)."""

    handoffs: int = 0
    messages: int = 0
    notes: int = 0
    audit_entries: int = 0
    reviews: int = 0  # supervisors' reviews quoting what the person wrote


def _delivery_summary(receipts: list[DeliveryReceipt]) -> dict[str, Any]:
    failed = next((r for r in receipts if r.status in FAILED_DELIVERY), None)
    shown = failed or min(receipts, key=lambda r: DELIVERY_RANK.get(r.status, 0))
    return {
        "status": shown.status,
        "failed": failed is not None,
        "error_code": shown.error_code,
        "template": any(r.template for r in receipts),
    }


def _untouched_since(cutoff: dt.datetime) -> Any:
    """Hand-offs with no activity at or after `cutoff` (naive UTC): not opened, claimed, closed nor
    written to since."""
    return sa.and_(
        Handoff.created_at < cutoff,
        Handoff.last_person_message_at < cutoff,
        sa.or_(Handoff.claimed_at.is_(None), Handoff.claimed_at < cutoff),
        sa.or_(Handoff.closed_at.is_(None), Handoff.closed_at < cutoff),
        ~sa.exists().where(HandoffMessage.handoff_id == Handoff.id, HandoffMessage.created_at >= cutoff),
    )


def _handoffs_of(s: Any, conversation_id: str) -> list[int]:
    return [i for (i,) in s.query(Handoff.id).filter(Handoff.conversation_id == conversation_id)]


def _naming(conversation_id: str, handoff_ids: list[int]) -> Any:
    """Audit rows about these hand-offs, or whose detail quotes the conversation id."""
    return sa.or_(AuditEntry.handoff_id.in_(handoff_ids), AuditEntry.detail.contains(conversation_id, autoescape=True))


def _unlink_audit(s: Any, condition: Any, why: str) -> int:
    """Keep these audit rows (who did what, when) without the case they were about; `why` says so."""
    return s.query(AuditEntry).filter(condition).update({"handoff_id": None, "detail": why}, synchronize_session=False)


def _erase(s: Any, ids: list[int]) -> tuple[int, int, int]:
    """Delete these hand-offs and their messages: how many hand-offs, messages (notes aside) and notes."""
    of_these = HandoffMessage.handoff_id.in_(ids)
    s.query(HandoffMedia).filter(HandoffMedia.handoff_id.in_(ids)).delete(synchronize_session=False)
    notes = s.query(HandoffMessage).filter(of_these, HandoffMessage.author == "note").delete(synchronize_session=False)
    messages = s.query(HandoffMessage).filter(of_these).delete(synchronize_session=False)
    handoffs = s.query(Handoff).filter(Handoff.id.in_(ids)).delete(synchronize_session=False)
    return handoffs, messages, notes


@contextmanager
def overwriting_deletes(connection: Any) -> Iterator[None]:
    """SQLite leaves deleted rows readable in the file's free pages unless `secure_delete` is on (as
    Debian's build has it by default; others do not). On for these deletions, then as it was."""
    if connection.dialect.name != "sqlite":
        yield
        return
    before = connection.exec_driver_sql("PRAGMA secure_delete").scalar()
    connection.exec_driver_sql("PRAGMA secure_delete = ON")
    try:
        yield
    finally:
        connection.exec_driver_sql(f"PRAGMA secure_delete = {int(before)}")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
