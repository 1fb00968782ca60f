"""Telegram as people know it (issue 16, points 6 and 7), in the fast in-process tier: "typing…"
while an answer takes a while, the pressed message's buttons taken away, and messages paced to
Telegram's flood limits (one a second per chat, in order; 30 a second in all). Requests go
through python-telegram-bot to the local stand-in (`TelegramStandIn`); the pacer's own rules are
checked on a fake clock, and once in real time against the stand-in. No model.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random

import pytest
from blueprint_harness import (
    ScriptedAssistant,
    SlowAssistant,
    channel_test_marks,
    eventually,
    in_event_loop,
    new_agent,
    served,
)
from standins import TOO_MANY_REQUESTS_TELEGRAM
from telegram.error import RetryAfter
from test_channel_blueprints import (
    all_channels,
    button_press,
    claimed_case,
    first_message,
    new_chat,
    post_to_telegram,
    telegram_sent,
    text_update,
)

import channels.telegram
import integrations.telegram
from bot.settings import Settings
from channels._common import DeliveryError
from channels.telegram import TelegramChannel, TelegramSender
from integrations.telegram import SendPacer

pytestmark = channel_test_marks(90)

TOLERANCE = 0.05  # seconds: the stand-in notes a message a little after the request left


# --- typing indicator -----------------------------------------------------------------------


@in_event_loop
async def test_a_slow_answer_shows_typing_and_a_quick_one_does_not(environment, telegram_standin):
    quick_chat, slow_chat, failing_chat = new_chat(), new_chat(), new_chat()
    async with served([TelegramChannel(environment.settings())], SlowAssistant(new_agent())) as app:
        await post_to_telegram(app, text_update(quick_chat, "hola"))
        await post_to_telegram(app, text_update(slow_chat, "lento 1"))
        telegram_standin.fail_next(
            500,
            {"ok": False, "error_code": 500, "description": "Internal Server Error"},
            when=lambda r: r.path.endswith("/sendChatAction") and r.params.get("chat_id") == str(failing_chat.id),
        )
        await post_to_telegram(app, text_update(failing_chat, "lento 2"))  # no indicator: the answer still goes
        await app.idle()
    assert telegram_standin.chat_actions(quick_chat.id) == []
    (shown,) = telegram_standin.chat_actions(slow_chat.id)
    assert (shown.status, shown.params["action"]) == (200, "typing")
    assert [r.status for r in telegram_standin.chat_actions(failing_chat.id)] == [500]
    assert telegram_standin.texts(slow_chat.id) == ["Respuesta a: lento 1"]
    assert telegram_standin.texts(failing_chat.id) == ["Respuesta a: lento 2"]


@in_event_loop
async def test_typing_is_renewed_while_the_answer_is_prepared_and_stops_once_it_is_out(
    environment, telegram_standin, monkeypatch
):
    monkeypatch.setattr(channels.telegram, "TYPING_AFTER_SECONDS", 0.2)
    monkeypatch.setattr(channels.telegram, "TYPING_EVERY_SECONDS", 0.4)  # 1.0 and 4.0 in service
    chat = new_chat()
    async with served([TelegramChannel(environment.settings())], SlowAssistant(new_agent())) as app:
        await post_to_telegram(app, text_update(chat, "lento"))
        await app.idle()
    shown = len(telegram_standin.chat_actions(chat.id))
    assert shown >= 3, "shown at 0.2 s, then every 0.4 s while the 1.6 s answer is prepared"
    await asyncio.sleep(0.6)
    assert len(telegram_standin.chat_actions(chat.id)) == shown, "none once the answer is out"
    assert all(r.params["action"] == "typing" for r in telegram_standin.chat_actions(chat.id))
    assert telegram_standin.texts(chat.id) == ["Respuesta a: lento"]


# --- buttons taken away after a press ---------------------------------------------------------


@in_event_loop
async def test_a_pressed_messages_buttons_are_taken_away_and_a_failure_there_only_logged(environment, telegram_standin):
    chat = new_chat()
    assistant = ScriptedAssistant(new_agent())
    options = [{"title": "Trabajar afuera", "payload": "/work_abroad"}, {"title": "Volver", "payload": "/return"}]
    assistant.answer("hola", {"text": "¿Qué desea?", "buttons": options})
    async with served([TelegramChannel(environment.settings())], assistant) as app:
        await post_to_telegram(app, text_update(chat, "hola"))
        (menu,) = await telegram_sent(telegram_standin, chat, 1)
        data = [row[0]["callback_data"] for row in json.loads(menu.params["reply_markup"])["inline_keyboard"]]

        await post_to_telegram(app, button_press(chat, data[0]))
        await telegram_sent(telegram_standin, chat, 2)
        (removed,) = telegram_standin.keyboards_removed(chat.id)
        assert removed.params["message_id"] == "7" and removed.status == 200  # the pressed message

        telegram_standin.fail_next(
            400,
            {"ok": False, "error_code": 400, "description": "Bad Request: message is not modified"},
            when=lambda r: r.path.endswith("/editMessageReplyMarkup"),
        )
        await post_to_telegram(app, button_press(chat, data[1]))  # pressed again before the edit showed
        await telegram_sent(telegram_standin, chat, 3)

        inaccessible = button_press(chat, data[0])
        inaccessible["callback_query"]["message"]["date"] = 0  # Telegram: the message is too old to edit
        await post_to_telegram(app, inaccessible)
        await telegram_sent(telegram_standin, chat, 4)
        await app.idle()
    assert assistant.texts() == ["hola", "/work_abroad", "/return", "/work_abroad"]
    edits = [r.status for r in telegram_standin.calls("editMessageReplyMarkup") if r.params["chat_id"] == str(chat.id)]
    assert edits == [200, 400], "no edit is asked for a message Telegram no longer lets us edit"


# --- flood limits: the pacer on a fake clock ------------------------------------------------


class FakeClock:
    """Time that passes only when someone sleeps (one sleeper at a time: the pacer's locks see to it)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        target = self.now + seconds
        await asyncio.sleep(0)
        self.now = max(self.now, target)


def fake_pacer(**limits: float) -> tuple[SendPacer, FakeClock]:
    clock = FakeClock()
    return SendPacer(clock=clock, sleep=clock.sleep, **limits), clock


@in_event_loop
async def test_pacer_sends_to_one_chat_one_a_second_in_order_and_other_chats_do_not_wait():
    pacer, clock = fake_pacer()
    sent: list[tuple[float, int, str]] = []

    async def send(chat_id: int, text: str) -> None:
        async with pacer.message(chat_id):
            sent.append((clock(), chat_id, text))

    burst = [asyncio.create_task(send(1, f"respuesta {n}")) for n in range(3)]
    other = asyncio.create_task(send(2, "otra persona"))
    await asyncio.gather(*burst, other)
    to_first = [(at - 1000.0, text) for at, chat, text in sent if chat == 1]
    assert to_first == [(0.0, "respuesta 0"), (1.0, "respuesta 1"), (2.0, "respuesta 2")]
    assert [(at - 1000.0, chat) for at, chat, _ in sent if chat == 2] == [(0.0, 2)]
    clock.now += 5  # later on, a chat that has been quiet goes at once
    await send(1, "más tarde")
    assert sent[-1] == (1005.0 + 2.0, 1, "más tarde") and clock.slept == [1.0, 1.0]


@in_event_loop
async def test_pacer_lets_at_most_30_requests_a_second_across_chats_first_come_first_served():
    pacer, clock = fake_pacer()
    started: list[tuple[float, int]] = []

    async def send(chat_id: int) -> None:
        async with pacer.message(chat_id):
            started.append((clock() - 1000.0, chat_id))

    await asyncio.gather(*(send(chat_id) for chat_id in range(65)))
    assert [chat for _, chat in started] == list(range(65)), "in the order they asked"
    assert [at for at, _ in started] == [0.0] * 30 + [1.0] * 30 + [2.0] * 5
    for at, _ in started:
        assert sum(at <= other < at + 1.0 for other, _ in started) <= 30


@in_event_loop
async def test_pacer_holds_a_chat_back_as_long_as_telegrams_retry_after_says():
    pacer, clock = fake_pacer()
    with pytest.raises(RetryAfter):
        async with pacer.message(7):
            raise RetryAfter(5)
    async with pacer.message(7):
        assert clock() == 1005.0
    async with pacer.message(8):
        assert clock() == 1005.0, "another chat is not held back"


@in_event_loop
async def test_a_message_being_retried_is_not_overtaken_by_a_later_one_to_the_same_chat():
    pacer, clock = fake_pacer()
    sent: list[tuple[float, str]] = []

    async def deliver(text: str, refusals: int = 0) -> None:
        async with pacer.turn(1):  # as TelegramSender.send holds it, around with_retries
            for _ in range(refusals):
                with contextlib.suppress(RetryAfter):
                    async with pacer.message(1):
                        raise RetryAfter(3)
                await clock.sleep(3)  # what retry_wait asks of with_retries
            async with pacer.message(1):
                sent.append((clock() - 1000.0, text))

    await asyncio.gather(deliver("primero", refusals=1), deliver("segundo"))
    assert sent == [(3.0, "primero"), (4.0, "segundo")]


@in_event_loop
async def test_pacer_forgets_quiet_chats_but_never_one_still_paused():
    pacer, clock = fake_pacer()
    pacer.KEPT_CHATS = 3
    for chat_id in (1, 2, 3):
        async with pacer.message(chat_id):
            pass
    async with pacer.message(4):  # 1, 2 and 3 are still paused: kept
        pass
    assert sorted(pacer._chats) == [1, 2, 3, 4]
    clock.now += 1.0
    async with pacer.message(5):
        pass
    assert sorted(pacer._chats) == [5]


# --- flood limits: in real time, through the SDK to the stand-in ----------------------------


@in_event_loop
async def test_an_advisors_burst_reaches_telegram_a_second_apart_in_order(telegram_standin):
    sender = TelegramSender(Settings.from_env(telegram_standin.env()))
    chat_id, other_id = (random.randrange(10**8, 10**9) for _ in range(2))
    texts = ["Hola, soy Rosa.", "Necesito su DNI.", "Gracias, lo reviso."]
    try:
        sends = [asyncio.create_task(sender.send(f"telegram:{chat_id}", text)) for text in texts]
        await asyncio.sleep(0)
        await sender.send(f"telegram:{other_id}", "Buenos días.")
        await asyncio.gather(*sends)
    finally:
        await sender.close()
    accepted = telegram_standin.accepted_at(chat_id)
    assert [text for _, text in accepted] == texts
    times = [at for at, _ in accepted]
    assert all(later - earlier >= 1.0 - TOLERANCE for earlier, later in zip(times, times[1:])), times
    assert times[-1] - times[0] < 2.0 + 5.0, "paced, not stalled (a generous bound: machines are shared)"
    ((other_at, _),) = telegram_standin.accepted_at(other_id)
    assert other_at < times[1], "another chat does not wait for this one's pace"


@in_event_loop
async def test_telegrams_retry_after_is_honoured_and_the_refused_message_goes_once_before_the_next(
    telegram_standin,
):
    sender = TelegramSender(Settings.from_env(telegram_standin.env()))
    chat_id = random.randrange(10**8, 10**9)
    telegram_standin.fail_next(429, TOO_MANY_REQUESTS_TELEGRAM, when=lambda r: r.params.get("chat_id") == str(chat_id))
    texts = ["Primero.", "Segundo."]
    try:
        await asyncio.gather(*(sender.send(f"telegram:{chat_id}", text) for text in texts))
    finally:
        await sender.close()
    assert [r.status for r in telegram_standin.attempts(chat_id)] == [429, 200, 200]
    assert [r.params["text"] for r in telegram_standin.attempts(chat_id)] == ["Primero.", "Primero.", "Segundo."]
    (first, _), (second, _) = telegram_standin.accepted_at(chat_id)
    assert second - first >= 1.0 - TOLERANCE


@in_event_loop
async def test_a_telegram_that_answers_too_late_is_not_asked_again_and_the_next_message_goes(
    telegram_standin, monkeypatch
):
    """Telegram may have taken a message it answered too late for: sending it again could say it twice."""
    monkeypatch.setattr(integrations.telegram, "READ_TIMEOUT_SECONDS", 0.5)
    sender = TelegramSender(Settings.from_env(telegram_standin.env()))
    chat_id = random.randrange(10**8, 10**9)
    telegram_standin.stall_next(1.5, when=lambda r: r.params.get("chat_id") == str(chat_id))
    try:
        with pytest.raises(DeliveryError):
            await sender.send(f"telegram:{chat_id}", "¿Me lee?")
        await sender.send(f"telegram:{chat_id}", "Le escribo de nuevo.")
        await eventually(lambda: len(telegram_standin.attempts(chat_id)) == 2, what="the late answer")
    finally:
        await sender.close()
    texts = sorted(r.params["text"] for r in telegram_standin.attempts(chat_id))
    assert texts == ["Le escribo de nuevo.", "¿Me lee?"], "each asked once"


@in_event_loop
async def test_an_advisor_writing_shows_typing_and_their_replies_arrive_paced_and_in_order(
    environment, telegram_standin, kb
):
    chat = new_chat()
    replies = ["Hola, soy Rosa.", "Necesito su DNI.", "Gracias, lo reviso."]
    async with served(all_channels(environment.settings())) as app:
        rosa, handoff = await claimed_case(app, f"telegram:{chat.id}", "telegram")
        assert (await rosa.call("POST", f"/handoffs/{handoff.id}/typing"))["shown"] is True
        for reply in replies:
            await rosa.call("POST", f"/handoffs/{handoff.id}/messages", {"text": reply}, expect=201)
        await telegram_sent(telegram_standin, chat, 4)
    accepted = telegram_standin.accepted_at(chat.id)
    assert [text for _, text in accepted] == [first_message(kb, "handoff.claimed", advisor="Rosa"), *replies]
    times = [at for at, _ in accepted]
    assert all(later - earlier >= 1.0 - TOLERANCE for earlier, later in zip(times, times[1:])), times
    (typing,) = telegram_standin.chat_actions(chat.id)
    assert (typing.status, typing.params["action"]) == (200, "typing")
