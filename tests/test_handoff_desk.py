"""The hand-off workflow on a real SQLite store: queue order, office hours, leaving, rating, races."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from pathlib import Path

import pytest

from bot.handoff import Advisor, Conflict, HandoffStore, NotFound, NotYours, TranscriptLine, missing_history
from bot.handoff_desk import Delivery, HandoffDesk, OutsideReplyWindow
from bot.knowledge import LiveKnowledgeBase
from bot.office_hours import OfficeHours
from bot.ratelimit import RateLimiter
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


ANA, LUIS = Advisor(1, "Ana"), Advisor(2, "Luis")


class ChannelStandIn:
    """The far side of the desk's Outbox: a channel that takes the first `accepts` messages (all when
    None), or cannot send at all, and the conversation's record of what was said."""

    def __init__(self, accepts: int | None = None, reachable: bool = True, window: dt.timedelta | None = None):
        self.accepts, self.reachable, self.window = accepts, reachable, window
        self.sent: list[str] = []
        self.recorded: list[tuple[str, str]] = []

    def reply_window(self, channel: str) -> dt.timedelta | None:
        return self.window

    def has_template(self, channel: str, purpose: str) -> bool:
        return False

    async def send(self, view, messages, template=None) -> Delivery:
        if not self.reachable:
            return Delivery(0, len(messages), reachable=False)
        sent = 0
        for text, _ in messages:
            if self.accepts is not None and len(self.sent) >= self.accepts:
                break
            self.sent.append(text)
            sent += 1
        return Delivery(sent, len(messages))

    async def record(self, view, messages, author: str) -> None:
        self.recorded += [(author, text) for text, _ in messages]


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
    asyncio.run(desk.claim(urgent.id, ANA, ChannelStandIn()))
    assert [desk.store.position(h.id) for h in (urgent, first, second)] == [0, 1, 2]


def test_asking_twice_keeps_one_record(desk):
    first, _ = open_handoff(desk)
    again, _ = open_handoff(desk)
    assert first.id == again.id and len(desk.store.queue("waiting")) == 1


def test_waiting_person_is_not_answered_by_the_assistant_and_can_leave(desk):
    view, _ = open_handoff(desk)
    decision = desk.on_person_message("c1", "sigo esperando, es urgente", "rest")
    assert decision.to_assistant is None and decision.replies == ()
    assert desk.store.transcript(view.id)[-1].text == "sigo esperando, es urgente"
    leave = desk.on_person_message("c1", "Menú", "rest")
    assert leave.to_assistant == "/show_menu" and "salió de la fila" in leave.replies[0][0]
    assert desk.store.get(view.id).state == "cancelled"
    assert desk.on_person_message("c1", "hola", "rest").to_assistant == "hola"


def test_a_handoff_takes_messages_only_from_the_channel_it_was_opened_on(desk):
    view, _ = open_handoff(desk)  # opened on "rest"
    forged = desk.on_person_message("c1", "cancelar", "whatsapp")
    assert forged.to_assistant == "cancelar" and forged.replies == ()
    assert desk.store.get(view.id).state == "waiting"
    assert [line.text for line in desk.store.transcript(view.id)] == ["hola", "Hola"]


def test_out_of_hours_takes_a_message_once_and_advisors_see_it_first(desk):
    live, _ = open_handoff(desk, "day")
    view, said = open_handoff(desk, "night", now=TUESDAY_10PM)
    assert "de lunes a viernes, de 08:30 a 16:30" in said[0][0]
    _, again = open_handoff(desk, "night", now=TUESDAY_10PM)
    assert again[0][0] != said[0][0]  # the full notice is sent once per conversation
    decision = desk.on_person_message("night", "Necesito ayuda con mi contrato, mi correo es x@y.pe", "rest")
    assert "quedó registrado" in decision.replies[0][0]
    assert desk.on_person_message("night", "menu", "rest").to_assistant == "menu"  # back with the assistant
    assert [h.id for h in desk.store.queue("waiting")] == [view.id, live.id]
    _, later = open_handoff(desk, "night", now=TUESDAY_10PM)
    assert later[0][0] == again[0][0]


def test_once_an_advisor_takes_a_left_message_the_persons_replies_reach_the_advisor(desk):
    view, _ = open_handoff(desk, "night", now=TUESDAY_10PM)
    desk.on_person_message("night", "Necesito ayuda con mi contrato", "rest")
    desk.store.clock.now = TUESDAY_10AM + dt.timedelta(days=1)
    asyncio.run(desk.claim(view.id, ANA, ChannelStandIn()))
    decision = desk.on_person_message("night", "Gracias, Ana. Le cuento:", "rest")
    assert decision.to_assistant is None, "the advisor's conversation, not the assistant's"
    assert desk.store.transcript(view.id)[-1].text == "Gracias, Ana. Le cuento:"


def test_unclaimed_hand_off_times_out_once_and_offers_to_leave_a_message(desk):
    view, _ = open_handoff(desk)
    desk.store.clock.now = TUESDAY_10AM + dt.timedelta(minutes=9)
    channel = ChannelStandIn()
    assert asyncio.run(desk.expire_unclaimed(channel)) == 0, "still within the 10-minute wait"
    desk.store.clock.now = TUESDAY_10AM + dt.timedelta(minutes=11)
    assert asyncio.run(desk.expire_unclaimed(channel)) == 1
    assert "ningún asesor" in channel.sent[0] and channel.recorded == [("assistant", channel.sent[0])]
    assert asyncio.run(desk.expire_unclaimed(channel)) == 0 and len(channel.sent) == 1
    assert "quedó registrado" in desk.on_person_message("c1", "mi numero es 999", "rest").replies[0][0]


def test_of_two_advisors_claiming_at_once_exactly_one_wins(desk):
    view, _ = open_handoff(desk)
    outcomes = []

    def claim(advisor):
        try:
            asyncio.run(desk.claim(view.id, advisor, ChannelStandIn()))
            outcomes.append("won")
        except Conflict as error:
            outcomes.append(str(error))

    threads = [threading.Thread(target=claim, args=(advisor,)) for advisor in (ANA, LUIS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["esta conversación ya no está en espera", "won"]


def test_only_the_owner_replies_and_closing_asks_for_a_rating(desk):
    view, _ = open_handoff(desk)
    channel = ChannelStandIn()
    _, greeted = asyncio.run(desk.claim(view.id, ANA, channel))
    assert greeted.delivered and "Ana" in channel.sent[0]
    with pytest.raises(NotYours):
        asyncio.run(desk.reply(view.id, LUIS, "hola", channel))
    assert asyncio.run(desk.reply(view.id, ANA, "Hola, soy Ana", channel)).delivered
    _, farewell = asyncio.run(desk.close(view.id, ANA, channel))
    assert farewell.delivered and "del 1" in channel.sent[-1]
    assert "Gracias por su calificación" in desk.on_person_message("c1", "5", "rest").replies[0][0]
    assert desk.store.get(view.id).rating == 5
    assert [a[1] for a in desk.store.audit_log()] == ["claim", "reply", "close"]
    said = [("advisor:Ana", channel.sent[0]), ("advisor:Ana", "Hola, soy Ana")]
    assert channel.recorded == said + [("assistant", text) for text in channel.sent[2:]]


def test_a_reply_the_channel_refused_is_not_recorded_as_said(desk):
    view, _ = open_handoff(desk)
    channel = ChannelStandIn(accepts=1)  # the greeting goes, then the provider refuses
    asyncio.run(desk.claim(view.id, ANA, channel))
    refused = asyncio.run(desk.reply(view.id, ANA, "¿Sigue ahí?", channel))
    assert (refused.delivered, refused.sent, refused.reachable) == (False, 0, True)
    said = [(line.author, line.text) for line in desk.store.transcript(view.id)]
    assert ("advisor", "¿Sigue ahí?") not in said and ("advisor:Ana", "¿Sigue ahí?") not in channel.recorded
    assert [a[1] for a in desk.store.audit_log()] == ["claim"]


def test_a_reply_on_a_channel_that_cannot_send_is_kept_and_reported_undelivered(desk):
    view, _ = open_handoff(desk)
    channel = ChannelStandIn(reachable=False)
    asyncio.run(desk.claim(view.id, ANA, channel))
    kept = asyncio.run(desk.reply(view.id, ANA, "Le escribo por correo", channel))
    assert not kept.delivered and not kept.reachable and channel.sent == []
    assert ("advisor", "Le escribo por correo") in [(line.author, line.text) for line in desk.store.transcript(view.id)]
    assert ("advisor:Ana", "Le escribo por correo") in channel.recorded


def test_free_text_after_the_reply_window_is_refused_before_anything_is_sent(desk):
    view, _ = open_handoff(desk)
    channel = ChannelStandIn(window=dt.timedelta(hours=24))
    asyncio.run(desk.claim(view.id, ANA, channel))
    desk.store.clock.now = TUESDAY_10AM + dt.timedelta(hours=25)
    with pytest.raises(OutsideReplyWindow):
        asyncio.run(desk.reply(view.id, ANA, "Hola de nuevo", channel))
    assert channel.sent == [channel.sent[0]] and len(desk.store.transcript(view.id)) == 3  # 2 lines + greeting


def test_reading_a_case_is_audited_once_per_stretch_of_polling(desk):
    view, _ = open_handoff(desk)
    for _ in range(3):
        desk.case(view.id, ANA)
    desk.store.clock.now = TUESDAY_10AM + dt.timedelta(minutes=11)
    desk.case(view.id, ANA)
    desk.case(view.id, LUIS)
    assert [(a[0], a[1]) for a in desk.store.audit_log()] == [(1, "read"), (1, "read"), (2, "read")]


def test_every_opening_of_a_case_and_the_queue_listing_are_audited(desk):
    view, _ = open_handoff(desk)
    desk.case(view.id, ANA, opened=True)
    desk.case(view.id, ANA)  # the console's refresh right after
    desk.case(view.id, ANA, opened=True)  # opened again a minute later: a new entry
    for _ in range(3):
        desk.queue("waiting", ANA)
    assert [(a[1], a[2]) for a in desk.store.audit_log()] == [
        ("open", view.id),
        ("read", view.id),
        ("open", view.id),
        ("list_waiting", None),
    ]


def test_the_check_on_every_message_follows_a_hand_off_through_its_life(desk):
    involves = desk.store.involves
    assert not involves("c1")
    view, _ = open_handoff(desk)
    assert involves("c1") and not involves("c2")  # waiting
    asyncio.run(desk.claim(view.id, ANA, ChannelStandIn()))
    assert involves("c1")  # with an advisor
    asyncio.run(desk.close(view.id, ANA, ChannelStandIn()))
    assert involves("c1")  # a rating is awaited
    desk.on_person_message("c1", "4", "rest")
    assert not involves("c1")
    open_handoff(desk, "night", now=TUESDAY_10PM)
    assert involves("night")
    desk.on_person_message("night", "Necesito ayuda con mi contrato", "rest")
    assert not involves("night")  # the message is left: the assistant answers again


def test_passwords_are_hashed_and_tokens_identify_the_advisor(desk):
    row = desk.store.engine.execute("select password_hash from advisors where username='ana'").scalar()
    assert row.startswith("$argon2") and "una-clave-larga" not in row
    assert desk.sign_in("ana", "mala") is None
    token, advisor = desk.sign_in("ana", "una-clave-larga")
    assert advisor == desk.advisor_for(token) == ANA
    assert desk.advisor_for("forged") is None
    assert [a[1] for a in desk.store.audit_log()] == ["login_failed", "login"]


def test_signing_out_ends_one_session_and_revoking_ends_them_all(desk):
    laptop, _ = desk.sign_in("ana", "una-clave-larga")
    phone, _ = desk.sign_in("ana", "una-clave-larga")
    luis, _ = desk.sign_in("luis", "otra-clave-larga")
    desk.sign_out(laptop, ANA)
    assert desk.advisor_for(laptop) is None and desk.advisor_for(phone) == ANA
    laptop_again, _ = desk.sign_in("ana", "una-clave-larga")
    assert desk.revoke("ana") == 2
    assert desk.advisor_for(phone) is None and desk.advisor_for(laptop_again) is None
    assert desk.advisor_for(luis) is not None  # other advisors stay signed in
    assert ("logout" in [a[1] for a in desk.store.audit_log()]) and "sessions_revoked" in [
        a[1] for a in desk.store.audit_log()
    ]
    with pytest.raises(NotFound):
        desk.revoke("nadie")


def test_the_history_a_record_lacks_is_the_session_before_its_overlap():
    def lines(*texts):
        return [TranscriptLine("person" if t.startswith("p:") else "assistant", t[2:], TUESDAY_10AM) for t in texts]

    session = lines("p:hola", "a:Hola", "p:italia", "a:Para Italia…", "p:asesor")
    record = lines("p:italia", "a:Para Italia…", "p:asesor", "p:sigo esperando")
    assert missing_history(session, record) == lines("p:hola", "a:Hola")
    assert missing_history(session, lines("p:hola", "a:Hola", "p:italia", "a:Para Italia…", "p:asesor")) == []
    assert missing_history(session, []) == session
    assert missing_history(session, lines("p:otra cosa")) == []  # no overlap: nothing is guessed


def test_one_web_client_cannot_fill_the_queue_with_new_conversations(desk):
    desk.per_client = RateLimiter(2, 3600.0)

    def ask(conversation: str, client: str):
        return desk.request(conversation, "rest", "sensitive", {}, [("person", "ayuda")], client=client)

    assert ask("rest:a", "client-1")[0] is not None and ask("rest:b", "client-1")[0] is not None
    refused, said = ask("rest:c", "client-1")
    assert refused is None and "no puedo abrir otra" in said[0][0]
    assert desk.store.open_for("rest:c") is None and len(desk.store.queue("waiting")) == 2
    assert ask("rest:d", "client-2")[0] is not None  # other people are not affected
    desk.store.clock.now += dt.timedelta(hours=1, minutes=1)
    assert ask("rest:c", "client-1")[0] is not None  # an hour later the client may ask again


def test_a_case_given_back_goes_first_in_line_never_expires_and_another_advisor_takes_it(desk):
    view, _ = open_handoff(desk)
    sensitive, _ = open_handoff(desk, "c2", reason="sensitive", now=TUESDAY_10AM + dt.timedelta(minutes=1))
    channel = ChannelStandIn()
    asyncio.run(desk.claim(view.id, ANA, channel))
    with pytest.raises(NotYours):
        asyncio.run(desk.release(view.id, LUIS, channel))  # not his, and he is no supervisor
    desk.store.clock.now = TUESDAY_10AM + dt.timedelta(hours=2)
    released, told = asyncio.run(desk.release(view.id, ANA, channel))
    assert (released.state, released.advisor_id, released.given_back) == ("waiting", None, True)
    assert told.delivered and "Otro(a) asesor(a)" in channel.sent[-1]
    assert "quedó registrado" in desk.on_person_message("c1", "¿Sigue mi caso?", "rest").replies[0][0]
    assert [h.id for h in desk.store.queue("waiting")][0] == view.id, "first in line, before newer cases"
    assert sensitive.id in [h.id for h in desk.store.queue("waiting")]
    assert asyncio.run(desk.expire_unclaimed(channel)) == 1, "only the other case: the given-back one waits"
    assert desk.store.get(view.id).state == "waiting"
    asyncio.run(desk.claim(view.id, LUIS, channel))
    assert asyncio.run(desk.reply(view.id, LUIS, "Soy Luis, sigo con su caso", channel)).delivered
    assert desk.on_person_message("c1", "Gracias, Luis", "rest").to_assistant is None
    lines = [(line.author, line.text) for line in desk.store.transcript(view.id)]
    assert ("system", "Devuelta a la fila por Ana.") in lines and ("person", "¿Sigue mi caso?") in lines
    assert lines[-1] == ("person", "Gracias, Luis")
    assert [a[1] for a in desk.store.audit_log() if a[2] == view.id] == ["claim", "release", "claim", "reply"]


def test_a_supervisor_can_give_back_anyones_case_and_a_closed_one_cannot_be_given_back(desk):
    desk.store.add_advisor("sara", "clave-de-supervisora", "Sara")
    desk.store.set_supervisor("sara")
    sara = desk.store.login("sara", "clave-de-supervisora")[1]
    view, _ = open_handoff(desk)
    channel = ChannelStandIn()
    asyncio.run(desk.claim(view.id, ANA, channel))
    assert asyncio.run(desk.release(view.id, sara, channel))[0].state == "waiting"
    asyncio.run(desk.claim(view.id, ANA, channel))
    asyncio.run(desk.close(view.id, ANA, channel))
    with pytest.raises(Conflict):
        asyncio.run(desk.release(view.id, ANA, channel))
