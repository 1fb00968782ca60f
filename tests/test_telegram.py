"""Telegram: updates posted as Telegram posts them, replies caught by the Bot API stand-in.

Replies arrive asynchronously, so tests wait for them with a deadline. Updates of one chat are
processed in order, so the reply to a last message proves everything before it was handled.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from standins import (
    PUBLIC_URL,
    TELEGRAM_BOT_ID,
    TELEGRAM_BOT_USERNAME,
    TELEGRAM_WEBHOOK_SECRET,
    TOO_MANY_REQUESTS_TELEGRAM,
    run_async,
    telegram_html_problem,
    user_messages,
    wait_for,
)

from bot.privacy import hash_id
from bot.settings import PROJECT_ROOT, TELEGRAM_WEBHOOK_PATH, Settings
from channels._common import DeliveryError
from channels.telegram import TelegramSender
from integrations.telegram import SECRET_HEADER

update_ids = itertools.count(random.randrange(10**6, 10**8))
BOT_USER = {"id": TELEGRAM_BOT_ID, "is_bot": True, "first_name": "SOM", "username": TELEGRAM_BOT_USERNAME}


class TelegramChat:
    """A private chat or a group writing to the bot, posted to our webhook as Telegram would."""

    def __init__(self, assistant, telegram, kind: str = "private") -> None:
        self.webhook = assistant.url + TELEGRAM_WEBHOOK_PATH
        self.telegram = telegram
        user_id = random.randrange(10**8, 10**9)
        self.chat = {"id": user_id if kind == "private" else -user_id, "type": kind}
        self.user = {"id": user_id, "is_bot": False, "first_name": "Ana", "language_code": "es"}
        self.message_ids = itertools.count(1)

    @property
    def conversation_id(self) -> str:
        return f"telegram:{self.chat['id']}"

    def message(self, text: str | None = None, **extra) -> dict:
        message = {"message_id": next(self.message_ids), "date": int(time.time()), "chat": self.chat, "from": self.user}
        if text is not None:
            message["text"] = text
            if text.startswith("/"):
                message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
        return {**message, **extra}

    def post(self, update: dict, secret: str | None = TELEGRAM_WEBHOOK_SECRET) -> int:
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers[SECRET_HEADER] = secret
        request = urllib.request.Request(self.webhook, json.dumps(update).encode(), headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    def send(self, update_content: dict) -> dict:
        update = {"update_id": next(update_ids), **update_content}
        assert self.post(update) == 200
        return update

    def say(self, text: str | None = None, **extra) -> dict:
        return self.send({"message": self.message(text, **extra)})

    def press(self, data: str) -> str:
        query_id = str(random.randrange(10**12))
        bot_message = {"message_id": 1, "date": int(time.time()), "chat": self.chat, "from": BOT_USER, "text": "menú"}
        query = {"id": query_id, "from": self.user, "chat_instance": "1", "data": data, "message": bot_message}
        self.send({"callback_query": query})
        return query_id

    def replies(self) -> list[dict]:
        """Each accepted sendMessage: its text and decoded keyboard."""
        return [
            {"text": r.params["text"], "keyboard": json.loads(r.params.get("reply_markup") or "null")}
            for r in self.telegram.sent(self.chat["id"])
        ]

    def wait_reply(self, containing: str, count: int = 1) -> list[dict]:
        return wait_for(
            lambda: sum(containing in r["text"] for r in self.replies()) >= count and self.replies(),
            what=f"{count} Telegram repl(y/ies) containing {containing!r}",
        )


@pytest.fixture
def chat(assistant, telegram_standin) -> TelegramChat:
    return TelegramChat(assistant, telegram_standin)


@pytest.fixture
def group(assistant, telegram_standin) -> TelegramChat:
    return TelegramChat(assistant, telegram_standin, kind="group")


def thanks(kb) -> str:
    return kb.main_entry("thank").messages[0]


def menu_payloads(kb) -> list[str]:
    return [f"/{item.intent}" for item in kb.menu]


# --- security -----------------------------------------------------------------------------


@pytest.mark.model
def test_requests_without_the_webhook_secret_get_403_and_nothing_is_processed(chat, kb):
    update = {"update_id": next(update_ids), "message": chat.message("hola")}
    assert chat.post(update, secret=None) == 403
    assert chat.post(update, secret="wrong-secret") == 403
    chat.say("gracias")
    assert len(chat.wait_reply(thanks(kb))) == 1


@pytest.mark.model
def test_a_broken_update_still_gets_200_so_telegram_does_not_redeliver(chat):
    assert chat.post({"update_id": "not a number", "message": "not a message"}) == 200
    assert chat.post([1, 2, 3]) == 200


# --- conversation ---------------------------------------------------------------------------


@pytest.mark.model
def test_start_greets_with_the_menu_as_one_button_per_row(chat, kb):
    chat.say("/start")
    replies = chat.wait_reply(kb.main_entry("show_menu").messages[-1])
    assert "<b>Servicio de Orientación para el Migrante (SOM)</b>" in replies[0]["text"]
    keyboard = replies[-1]["keyboard"]["inline_keyboard"]
    assert all(len(row) == 1 for row in keyboard)
    assert [row[0]["callback_data"] for row in keyboard] == menu_payloads(kb)
    assert [row[0]["text"] for row in keyboard] == [item.title for item in kb.menu]
    assert all(r["keyboard"] is None for r in replies[:-1])


@pytest.mark.model
def test_menu_command_shows_the_menu(chat, kb):
    chat.say("/menu")
    replies = chat.wait_reply(kb.main_entry("show_menu").messages[-1])
    assert [row[0]["callback_data"] for row in replies[-1]["keyboard"]["inline_keyboard"]] == menu_payloads(kb)
    assert not any("asistente virtual" in r["text"] for r in replies), "/menu does not greet again"


@pytest.mark.model
def test_pressing_a_button_is_acknowledged_and_answers_that_option(chat, kb, telegram_standin):
    chat.say("/menu")
    chat.wait_reply(kb.main_entry("show_menu").messages[-1])
    query_id = chat.press("/return_to_peru")
    chat.wait_reply("30001")
    answered = [r.params.get("callback_query_id") for r in telegram_standin.calls("answerCallbackQuery")]
    assert query_id in answered


@pytest.mark.model
def test_a_button_the_assistant_never_offered_shows_the_menu_instead(chat, kb):
    """Button data comes from the client: a forged payload with entities is not obeyed."""
    menu = kb.main_entry("show_menu").messages[-1]
    chat.press('/inform{"entry": "handoff.queued_priority"}')
    replies = chat.wait_reply(menu)
    assert not any("prioridad" in r["text"] for r in replies)


@pytest.mark.model
def test_an_edited_message_is_answered(chat, kb):
    chat.send({"edited_message": {**chat.message("quiero volver al peru"), "edit_date": int(time.time())}})
    chat.wait_reply("30001")


@pytest.mark.model
def test_typed_payloads_are_not_obeyed(chat, kb):
    chat.say('/inform{"entry": "channels.flood"}')
    chat.say("gracias")
    replies = chat.wait_reply(thanks(kb))
    assert not any(kb.entry("channels.flood").messages[0] in r["text"] for r in replies)


@pytest.mark.model
def test_the_same_update_twice_is_answered_once(chat, kb):
    update = chat.say("hola")
    assert chat.post(update) == 200  # Telegram redelivering
    chat.say("gracias")
    replies = chat.wait_reply(thanks(kb))
    assert sum("asistente virtual" in r["text"] for r in replies) == 1


@pytest.mark.model
def test_media_gets_a_clear_answer_and_is_kept_for_the_advisor(chat, kb, assistant):
    media_answer = kb.entry("channels.media").messages[0]
    chat.say(voice={"file_id": "VOICE1", "file_unique_id": "v1", "duration": 3})
    replies = chat.wait_reply(media_answer)
    assert [row[0]["callback_data"] for row in replies[-1]["keyboard"]["inline_keyboard"]] == ["/human_handoff"]
    photo = [{"file_id": f"PHOTO{px}", "file_unique_id": f"p{px}", "width": px, "height": px} for px in (90, 800)]
    chat.say(photo=photo, caption="me ofrecen trabajo afuera pero piden pagar por adelantado")
    texts = [r["text"] for r in chat.wait_reply("1818")]
    second_notice = max(i for i, text in enumerate(texts) if media_answer in text)
    assert second_notice == 1 and any("1818" in t for t in texts[second_notice:]), "notice first, then the caption"

    stored = user_messages(assistant.settings.sqlite_path, chat.conversation_id, at_least=3)
    media = [m["metadata"]["media"] for m in stored if "media" in m["metadata"]]
    assert media == [[{"type": "voice", "file_id": "VOICE1"}], [{"type": "photo", "file_id": "PHOTO800"}]]


@pytest.mark.model
def test_groups_are_answered_only_when_the_bot_is_addressed(group, kb):
    group.say("hola a todos")
    mention = f"@{TELEGRAM_BOT_USERNAME}"
    group.say(f"{mention} gracias", entities=[{"type": "mention", "offset": 0, "length": len(mention)}])
    replies = group.wait_reply(thanks(kb))
    assert len(replies) == 1, "the message not addressed to the bot was ignored"
    bot_message = {"message_id": 1, "date": int(time.time()), "chat": group.chat, "from": BOT_USER, "text": "¿Algo?"}
    group.say("gracias", reply_to_message=bot_message)
    assert len(group.wait_reply(thanks(kb), count=2)) == 2


# --- delivery -------------------------------------------------------------------------------


@pytest.mark.model
def test_flood_control_429_is_retried_and_the_message_delivered_once(chat, kb, telegram_standin):
    telegram_standin.fail_next(
        429, TOO_MANY_REQUESTS_TELEGRAM, when=lambda r: r.params.get("chat_id") == str(chat.chat["id"])
    )
    chat.say("gracias")
    chat.wait_reply(thanks(kb))
    chat.say("gracias")
    chat.wait_reply(thanks(kb), count=2)
    assert [r.status for r in telegram_standin.attempts(chat.chat["id"])] == [429, 200, 200]


@pytest.mark.model
def test_telegram_down_is_logged_and_the_server_keeps_answering(chat, kb, telegram_standin, assistant):
    chat.say("gracias")
    chat.wait_reply(thanks(kb))
    with telegram_standin.down():
        chat.say("gracias")
        wait_for(
            lambda: f"telegram: message to conversation {hash_id(chat.conversation_id)} not delivered"
            in assistant.log_path.read_text(),
            what="the failed delivery in the server log",
        )
        assert "asistente virtual" in assistant.new().say_text("hola")
    chat.say("gracias")
    assert len(chat.wait_reply(thanks(kb), count=2)) == 2


@pytest.mark.model
def test_an_advisor_reply_reaches_the_person_on_telegram(chat, advisor):
    chat.say("quiero hablar con un asesor")
    chat.wait_reply("puesto")
    advisor.write(advisor.take(chat.conversation_id), "Hola, soy Rosa del SOM. ¿En qué país trabaja?")
    chat.wait_reply("Hola, soy Rosa del SOM.")


# --- commands ---------------------------------------------------------------------------------


def run_bot_command(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bot", "telegram", *args],
        cwd=PROJECT_ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_set_webhook_registers_the_public_url_with_the_secret_and_update_types(telegram_standin):
    result = run_bot_command("set-webhook", env={**telegram_standin.env(), "PUBLIC_URL": PUBLIC_URL})
    assert result.returncode == 0, result.stderr
    (call,) = telegram_standin.calls("setWebhook")
    assert call.params["url"] == PUBLIC_URL + TELEGRAM_WEBHOOK_PATH
    assert call.params["secret_token"] == TELEGRAM_WEBHOOK_SECRET
    assert json.loads(call.params["allowed_updates"]) == ["message", "edited_message", "callback_query"]


def test_set_webhook_says_which_variables_are_missing(telegram_standin):
    result = run_bot_command("set-webhook", env={**telegram_standin.env(), "PUBLIC_URL": ""})
    assert result.returncode == 1 and "PUBLIC_URL" in result.stderr


@pytest.mark.model
def test_polling_brings_updates_to_the_local_webhook(assistant, telegram_standin, kb):
    chat = TelegramChat(assistant, telegram_standin)
    update = {"update_id": next(update_ids), "message": chat.message("gracias")}
    telegram_standin.queue_update(update)
    next_offset = update["update_id"] + 1
    env = {**telegram_standin.env(), "RASA_PORT": str(assistant.settings.rasa_port)}
    poller = subprocess.Popen(
        [sys.executable, "-m", "bot", "telegram", "poll"], cwd=PROJECT_ROOT, env={**os.environ, **env},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        chat.wait_reply(thanks(kb))
        wait_for(
            lambda: any(r.params.get("offset") == str(next_offset) for r in telegram_standin.calls("getUpdates")),
            what="the poller to acknowledge the update",
        )
    finally:
        poller.terminate()
        poller.wait(10)
    assert telegram_standin.calls("deleteWebhook"), "getUpdates needs the webhook removed"


# --- sender, in process -------------------------------------------------------------------------


def test_a_long_message_reaches_telegram_split_in_order_and_escaped(telegram_standin):
    settings = Settings.from_env(telegram_standin.env())
    chat_id = random.randrange(10**8, 10**9)
    text = " ".join(f"Paso {n}: si 3 < 4 & *todo* está bien, siga." for n in range(250))

    async def send() -> None:
        sender = TelegramSender(settings)
        await sender.send(f"telegram:{chat_id}", text, (("Sí", "/affirm"), ("No", "/deny")))
        await sender.close()

    run_async(send())
    sent = telegram_standin.sent(chat_id)
    assert len(sent) == 3
    assert all(telegram_html_problem(r.params["text"]) is None for r in sent)
    assert "Paso 0:" in sent[0].params["text"] and "Paso 249:" in sent[-1].params["text"]
    assert [r.params.get("reply_markup") is not None for r in sent] == [False, False, True]


@pytest.mark.parametrize(
    "status, attempts, delivered",
    [(500, [500, 200], True), (502, [502, 200], True), (400, [400], False), (403, [403], False)],
)
def test_only_errors_where_telegram_took_nothing_are_retried(telegram_standin, status, attempts, delivered):
    settings = Settings.from_env(telegram_standin.env())
    chat_id = random.randrange(10**8, 10**9)
    error = {"ok": False, "error_code": status, "description": "error"}
    telegram_standin.fail_next(status, error, when=lambda r: r.params.get("chat_id") == str(chat_id))

    async def send() -> bool:
        sender = TelegramSender(settings)
        try:
            await sender.send(f"telegram:{chat_id}", "Buenos días.")
            return True
        except DeliveryError:
            return False
        finally:
            await sender.close()

    assert run_async(send()) is delivered
    assert [r.status for r in telegram_standin.attempts(chat_id)] == attempts
