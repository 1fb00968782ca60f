"""The hand-off workflow on a real SQLite store: queue order, office hours, leaving, rating, races."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pytest

from bot.handoff import HandoffError, HandoffStore, TranscriptLine, missing_history
from bot.handoff_desk import HandoffDesk
from bot.knowledge import LiveKnowledgeBase
from bot.office_hours import OfficeHours
from bot.settings import CONTENT_DIR

LIMA = dt.timezone(dt.timedelta(hours=-5))
TUESDAY_10AM = dt.datetime(2026, 12, 1, 10, 0, tzinfo=LIMA)
TUESDAY_10PM = dt.datetime(2026, 12, 1, 22, 0, tzinfo=LIMA)
HOLIDAY_10AM = dt.datetime(2026, 12, 8, 10, 0, tzinfo=LIMA)


class FakeClock:
    """The desk's one source of time, set by each test: no test reads today's date."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def desk(tmp_path: Path) -> HandoffDesk:
    store = HandoffStore(f"sqlite:///{tmp_path / 'handoff.db'}", clock=FakeClock(TUESDAY_10AM))
    store.add_advisor("ana", "una-clave-larga", "Ana")
    store.add_advisor("luis", "otra-clave-larga", "Luis")
    return HandoffDesk(store, LiveKnowledgeBase(CONTENT_DIR), OfficeHours.load(CONTENT_DIR / "office_hours.yml"), 10)


def open_handoff(desk, conversation="c1", reason="requested", now=TUESDAY_10AM):
    desk.store.clock.now = now
    return desk.request(conversation, "rest", reason, {"país": "Chile"}, [("person", "hola"), ("assistant", "Hola")])


def test_office_hours_follow_lima_days_hours_and_holidays():
    hours = OfficeHours.load(CONTENT_DIR / "office_hours.yml")
    assert hours.is_open(TUESDAY_10AM)
    assert not hours.is_open(TUESDAY_10PM)
    assert not hours.is_open(HOLIDAY_10AM)
    assert not hours.is_open(dt.datetime(2026, 12, 5, 10, 0, tzinfo=LIMA))  # Saturday
    assert hours.is_open(dt.datetime(2026, 12, 1, 15, 0, tzinfo=dt.timezone.utc))  # 10:00 in Lima


def test_queue_puts_sensitive_cases_first_then_the_oldest(desk):
    first, _ = open_handoff(desk, "c1")
    second, said = open_handoff(desk, "c2")
    assert "puesto 2" in said[0][0]
    urgent, said = open_handoff(desk, "c3", reason="sensitive")
    assert "1818" in said[0][0]
    assert [h.id for h in desk.store.queue("waiting")] == [urgent.id, first.id, second.id]
    assert [desk.store.position(h.id) for h in (urgent, first, second)] == [1, 2, 3]
    desk.claim(urgent.id, 1, "Ana")
    assert [desk.store.position(h.id) for h in (urgent, first, second)] == [0, 1, 2]


def test_asking_twice_keeps_one_record(desk):
    first, _ = open_handoff(desk)
    again, _ = open_handoff(desk)
    assert first.id == again.id and len(desk.store.queue("waiting")) == 1


def test_waiting_person_is_not_answered_by_the_assistant_and_can_leave(desk):
    view, _ = open_handoff(desk)
    decision = desk.on_person_message("c1", "sigo esperando, es urgente")
    assert decision.to_assistant is None and decision.replies == ()
    assert desk.store.transcript(view.id)[-1].text == "sigo esperando, es urgente"
    leave = desk.on_person_message("c1", "Menú")
    assert leave.to_assistant == "/show_menu" and "salió de la fila" in leave.replies[0][0]
    assert desk.store.get(view.id).state == "cancelled"
    assert desk.on_person_message("c1", "hola").to_assistant == "hola"


def test_out_of_hours_takes_a_message_once_and_advisors_see_it_first(desk):
    live, _ = open_handoff(desk, "day")
    view, said = open_handoff(desk, "night", now=TUESDAY_10PM)
    assert "de lunes a viernes, de 08:30 a 16:30" in said[0][0]
    _, again = open_handoff(desk, "night", now=TUESDAY_10PM)
    assert again[0][0] != said[0][0]  # the full notice is sent once per conversation
    decision = desk.on_person_message("night", "Necesito ayuda con mi contrato, mi correo es x@y.pe")
    assert "quedó registrado" in decision.replies[0][0]
    assert desk.on_person_message("night", "menu").to_assistant == "menu"  # back with the assistant
    assert [h.id for h in desk.store.queue("waiting")] == [view.id, live.id]
    _, later = open_handoff(desk, "night", now=TUESDAY_10PM)
    assert later[0][0] == again[0][0]


def test_unclaimed_hand_off_times_out_once_and_offers_to_leave_a_message(desk):
    view, _ = open_handoff(desk)
    desk.store.clock.now = TUESDAY_10AM + dt.timedelta(minutes=9)
    assert desk.expire_unclaimed() == [], "still within the 10-minute wait"
    desk.store.clock.now = TUESDAY_10AM + dt.timedelta(minutes=11)
    expired = desk.expire_unclaimed()
    assert [v.id for v, _ in expired] == [view.id] and "ningún asesor" in expired[0][1][0][0]
    assert desk.expire_unclaimed() == []
    assert "quedó registrado" in desk.on_person_message("c1", "mi numero es 999").replies[0][0]


def test_of_two_advisors_claiming_at_once_exactly_one_wins(desk):
    view, _ = open_handoff(desk)
    outcomes = []

    def claim(advisor_id):
        try:
            desk.claim(view.id, advisor_id, "x")
            outcomes.append("won")
        except HandoffError as error:
            outcomes.append(error.status)

    threads = [threading.Thread(target=claim, args=(i,)) for i in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes, key=str) == [409, "won"]


def test_only_the_owner_replies_and_closing_asks_for_a_rating(desk):
    view, _ = open_handoff(desk)
    desk.claim(view.id, 1, "Ana")
    with pytest.raises(HandoffError) as error:
        desk.reply(view.id, 2, "hola")
    assert error.value.status == 403
    desk.reply(view.id, 1, "Hola, soy Ana")
    _, farewell = desk.close(view.id, 1)
    assert "del 1" in farewell[-1][0]
    assert "Gracias por su calificación" in desk.on_person_message("c1", "5").replies[0][0]
    assert desk.store.get(view.id).rating == 5
    assert [a[1] for a in desk.store.audit_log()] == ["claim", "reply", "close"]


def test_the_check_on_every_message_follows_a_hand_off_through_its_life(desk):
    involves = desk.store.involves
    assert not involves("c1")
    view, _ = open_handoff(desk)
    assert involves("c1") and not involves("c2")  # waiting
    desk.claim(view.id, 1, "Ana")
    assert involves("c1")  # with an advisor
    desk.close(view.id, 1)
    assert involves("c1")  # a rating is awaited
    desk.on_person_message("c1", "4")
    assert not involves("c1")
    open_handoff(desk, "night", now=TUESDAY_10PM)
    assert involves("night")
    desk.on_person_message("night", "Necesito ayuda con mi contrato")
    assert not involves("night")  # the message is left: the assistant answers again


def test_passwords_are_hashed_and_tokens_identify_the_advisor(desk):
    row = desk.store.engine.execute("select password_hash from advisors where username='ana'").scalar()
    assert row.startswith("$argon2") and "una-clave-larga" not in row
    assert desk.store.login("ana", "mala") is None
    token = desk.store.login("ana", "una-clave-larga")
    assert desk.store.advisor_for_token(token) == (1, "Ana")
    assert desk.store.advisor_for_token("forged") is None


def test_the_history_a_record_lacks_is_the_session_before_its_overlap():
    def lines(*texts):
        return [TranscriptLine("person" if t.startswith("p:") else "assistant", t[2:], TUESDAY_10AM) for t in texts]

    session = lines("p:hola", "a:Hola", "p:italia", "a:Para Italia…", "p:asesor")
    record = lines("p:italia", "a:Para Italia…", "p:asesor", "p:sigo esperando")
    assert missing_history(session, record) == lines("p:hola", "a:Hola")
    assert missing_history(session, lines("p:hola", "a:Hola", "p:italia", "a:Para Italia…", "p:asesor")) == []
    assert missing_history(session, []) == session
    assert missing_history(session, lines("p:otra cosa")) == []  # no overlap: nothing is guessed
