"""Every channel's Sanic blueprint, in-process and without a trained model (the fast tier).

Each test mounts the channels it needs on a fresh Sanic app (`blueprint_harness`), talks to it
through its ASGI interface, and puts a scripted assistant where Rasa's model would answer. The
WhatsApp and Telegram channels still send through their real SDKs, to the local Twilio and
Telegram stand-ins; the advisor console works on a real hand-off store in a temporary SQLite file.
The end-to-end versions of these journeys, with the trained assistant, are the `model` tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import urllib.parse
import uuid
from dataclasses import dataclass
from functools import partial

import jwt
import pytest
import socketio
from blueprint_harness import (
    ScriptedAssistant,
    Served,
    channel_test_marks,
    eventually,
    in_event_loop,
    new_agent,
    served,
)
from rasa.shared.core.events import BotUttered, UserUttered
from standins import (
    TELEGRAM_BOT_ID,
    TELEGRAM_BOT_USERNAME,
    TELEGRAM_WEBHOOK_SECRET,
    TWILIO_ACCOUNT_SID,
    TWILIO_AUTH_TOKEN,
    TWILIO_WHATSAPP_FROM,
    WHATSAPP_SIGNED_URL,
    TelegramStandIn,
    TwilioStandIn,
)
from twilio.request_validator import RequestValidator

from bot import services
from bot.handoff import Conflict, HandoffView
from bot.knowledge import KnowledgeBase
from bot.settings import TELEGRAM_WEBHOOK_PATH, WHATSAPP_WEBHOOK_PATH, Settings
from bot.text import fill
from channels._common import MEDIA_PAYLOAD, InboundPath
from channels.advisor import AdvisorConsole
from channels.rest import MAX_SENDER_CHARS, RestChannel
from channels.socketio import WebChatSocketIO, bound_session, is_session_id
from channels.telegram import TelegramChannel
from channels.webchat import WebChatPage
from channels.whatsapp import WhatsAppChannel
from integrations.telegram import SECRET_HEADER

pytestmark = channel_test_marks(90)

REST_WEBHOOK = "/webhooks/rest/webhook"
ADVISOR_API = "/advisor/api"
ADVISOR_PASSWORD = "clave-de-prueba-456"
_telegram_chats = itertools.count(random.randrange(10**6, 10**7) * 1000)
_update_ids = itertools.count(random.randrange(10**8))


def first_message(kb: KnowledgeBase, entry_id: str, **values: str) -> str:
    return fill(kb.entry(entry_id).messages[0], values)


# --- REST -----------------------------------------------------------------------------------


@in_event_loop
async def test_rest_refuses_malformed_bodies_with_400_and_never_reaches_the_assistant(environment):
    malformed = {
        "not JSON": b"hola",
        "a JSON list": json.dumps(["hola"]).encode(),
        "no sender": json.dumps({"message": "hola"}).encode(),
        "blank sender": json.dumps({"sender": "  ", "message": "hola"}).encode(),
        "sender not a string": json.dumps({"sender": 51, "message": "hola"}).encode(),
        "sender too long": json.dumps({"sender": "x" * (MAX_SENDER_CHARS + 1), "message": "hola"}).encode(),
        "message not a string": json.dumps({"sender": "ana", "message": ["hola"]}).encode(),
        "no message": json.dumps({"sender": "ana"}).encode(),
    }
    async with served([RestChannel()]) as app:
        for case, body in malformed.items():
            answer = await app.client.post(REST_WEBHOOK, content=body, headers={"Content-Type": "application/json"})
            assert answer.status_code == 400, case
            assert answer.json()["error"], case
        assert app.assistant.received == []


@in_event_loop
async def test_rest_answers_with_the_assistants_messages_whole_and_with_buttons(environment):
    assistant = ScriptedAssistant(new_agent())
    buttons = [{"title": "Trabajar afuera", "payload": "/work_abroad"}, {"title": "Volver", "payload": "/return"}]
    assistant.answer(
        "hola", {"text": "Primer párrafo.\n\nSegundo párrafo."}, {"text": "¿Qué desea?", "buttons": buttons}
    )
    async with served([RestChannel()], assistant) as app:
        assert (await app.client.get("/webhooks/rest/")).json() == {"status": "ok"}
        answer = await app.client.post(REST_WEBHOOK, json={"sender": "ana", "message": "hola"})

    assert answer.status_code == 200
    assert answer.json() == [
        {"recipient_id": "rest:ana", "text": "Primer párrafo.\n\nSegundo párrafo."},
        {"recipient_id": "rest:ana", "text": "¿Qué desea?", "buttons": buttons},
    ], "one bubble per message, never split on blank lines; REST conversations in their own namespace"
    (message,) = assistant.received
    assert (message.sender_id, message.text, message.input_channel) == ("rest:ana", "hola", "rest")
    assert isinstance(message.metadata["received_at"], float)


@in_event_loop
async def test_rest_with_a_token_refuses_requests_without_it(environment):
    environment.set(REST_TOKEN="token-de-la-integracion-rest-32")
    body = {"sender": "ana", "message": "hola"}
    async with served([RestChannel()]) as app:
        for headers in ({}, {"Authorization": "Bearer otro-token-cualquiera-largo"}, {"Authorization": "Basic x"}):
            assert (await app.client.post("/webhooks/rest/webhook", json=body, headers=headers)).status_code == 401
        assert app.assistant.received == []
        good = {"Authorization": "Bearer token-de-la-integracion-rest-32"}
        answer = await app.client.post("/webhooks/rest/webhook", json=body, headers=good)
        assert answer.status_code == 200 and answer.json()[0]["text"] == "Respuesta a: hola"


@in_event_loop
async def test_rest_cuts_over_long_input_and_limits_floods_per_conversation(environment, kb):
    environment.set(WEB_CONVERSATION_RATE="3")
    async with served([RestChannel()]) as app:
        answer = await app.client.post("/webhooks/rest/webhook", json={"sender": "ana", "message": "palabra " * 400})
        assert answer.json()[0]["text"] == kb.entry("channels.too_long").messages[0]
        assert len(app.assistant.received[0].text) <= 1500
        statuses = [
            (await app.client.post("/webhooks/rest/webhook", json={"sender": "ana", "message": "hola"})).status_code
            for _ in range(3)
        ]
        assert statuses == [200, 200, 429]
        assert len(app.assistant.received) == 3  # the refused message never reached the assistant


@in_event_loop
async def test_rest_tells_the_person_when_the_assistant_fails(environment, kb):
    assistant = ScriptedAssistant(new_agent(), failing=True)
    async with served([RestChannel()], assistant) as app:
        answer = await app.client.post(REST_WEBHOOK, json={"sender": "luis", "message": "hola"})
    assert answer.status_code == 200
    assert [m["text"] for m in answer.json()] == list(kb.entry("service.technical_problem").messages)


@in_event_loop
async def test_rest_person_waiting_for_an_advisor_is_kept_from_the_assistant_until_they_cancel(environment, kb):
    async with served([RestChannel()]) as app:
        store = services.handoff_desk().store
        view = store.open("rest:rosa", "rest", "requested", 0, {}, [("person", "quiero un asesor")])

        waiting = await app.client.post(REST_WEBHOOK, json={"sender": "rosa", "message": "sigo aquí"})
        assert waiting.json() == []
        assert app.assistant.received == []
        assert [line.text for line in store.transcript(view.id)] == ["quiero un asesor", "sigo aquí"]

        cancelled = await app.client.post(REST_WEBHOOK, json={"sender": "rosa", "message": "cancelar"})
    assert cancelled.json()[0]["text"] == first_message(kb, "handoff.cancelled")
    assert app.assistant.texts() == ["/show_menu"], "leaving the queue shows the menu"
    assert store.open_for("rest:rosa") is None


# --- WhatsApp -------------------------------------------------------------------------------


def whatsapp_address() -> str:
    return f"whatsapp:+519{random.randrange(10**8):08d}"


def twilio_fields(address: str, body: str = "", **extra: str) -> dict[str, str]:
    """One incoming message as Twilio posts it (empty fields included: Twilio signs them too)."""
    return {
        "MessageSid": f"SM{uuid.uuid4().hex}",
        "AccountSid": TWILIO_ACCOUNT_SID,
        "From": address,
        "To": TWILIO_WHATSAPP_FROM,
        "Body": body,
        "NumMedia": "0",
        "ProfileName": "Ana",
        **extra,
    }


def twilio_signature(fields: dict[str, str], url: str = WHATSAPP_SIGNED_URL, token: str = TWILIO_AUTH_TOKEN) -> str:
    return RequestValidator(token).compute_signature(url, fields)


async def post_to_whatsapp(app: Served, fields: dict[str, str], signature: str | None = "valid"):
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if signature == "valid":
        signature = twilio_signature(fields)
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    return await app.client.post(WHATSAPP_WEBHOOK_PATH, content=urllib.parse.urlencode(fields), headers=headers)


async def whatsapp_replies(twilio: TwilioStandIn, address: str, count: int) -> list[str]:
    """What Twilio accepted for `address`, once there are at least `count` messages."""
    return await eventually(
        lambda: len(twilio.bodies(address)) >= count and twilio.bodies(address),
        what=f"{count} WhatsApp message(s) to {address}",
    )


@in_event_loop
async def test_whatsapp_refuses_unsigned_and_forged_requests_with_403(environment, twilio_standin):
    address = whatsapp_address()
    fields = twilio_fields(address, "hola")
    async with served([WhatsAppChannel(environment.settings())]) as app:
        forgeries = {
            "no signature": None,
            "garbage": "forged",
            "another account's token": twilio_signature(fields, token="not-the-auth-token"),
            "signed for the local URL, not the public one": twilio_signature(
                fields, url=f"http://testserver{WHATSAPP_WEBHOOK_PATH}"
            ),
            "body changed after signing": twilio_signature(fields),
        }
        for case, signature in forgeries.items():
            posted = dict(fields, Body="quiero un asesor") if case == "body changed after signing" else fields
            answer = await post_to_whatsapp(app, posted, signature)
            assert answer.status_code == 403, case
        await app.idle()
        assert app.assistant.received == []
        assert twilio_standin.attempts(address) == []


@in_event_loop
async def test_whatsapp_answers_twilio_with_empty_twiml_and_sends_the_answer_through_twilio(
    environment, twilio_standin
):
    address = whatsapp_address()
    async with served([WhatsAppChannel(environment.settings())]) as app:
        answer = await post_to_whatsapp(app, twilio_fields(address, "hola"))
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/xml")
        assert "<Response" in answer.text and "<Message" not in answer.text, "the answer goes through the API"

        assert await whatsapp_replies(twilio_standin, address, 1) == ["Respuesta a: hola"]
    (message,) = app.assistant.received
    assert (message.sender_id, message.text, message.input_channel) == (address, "hola", "whatsapp")
    (sent,) = twilio_standin.attempts(address)
    assert sent.params["From"] == TWILIO_WHATSAPP_FROM and sent.status == 201


@in_event_loop
async def test_whatsapp_a_redelivered_message_sid_is_answered_once(environment, twilio_standin):
    address = whatsapp_address()
    first = twilio_fields(address, "hola")
    async with served([WhatsAppChannel(environment.settings())]) as app:
        for _ in range(3):  # Twilio retries when unsure the webhook got it
            assert (await post_to_whatsapp(app, first)).status_code == 200
        assert (await post_to_whatsapp(app, twilio_fields(address, "gracias"))).status_code == 200
        await app.idle()
    assert app.assistant.texts() == ["hola", "gracias"]
    assert twilio_standin.bodies(address) == ["Respuesta a: hola", "Respuesta a: gracias"]


@in_event_loop
async def test_whatsapp_buttons_are_one_numbered_message_and_a_number_or_words_pick_the_payload(
    environment, twilio_standin, kb
):
    address = whatsapp_address()
    menu = {
        "text": "¿Sobre qué desea orientación?",
        "buttons": [
            {"title": "Trabajar en el extranjero", "payload": "/work_abroad"},
            {"title": "Volver al Perú", "payload": "/return_to_peru"},
        ],
    }
    assistant = ScriptedAssistant(new_agent())
    assistant.answer("hola", menu)
    assistant.answer("/work_abroad", menu)
    async with served([WhatsAppChannel(environment.settings())], assistant) as app:
        await post_to_whatsapp(app, twilio_fields(address, "hola"))
        (numbered,) = await whatsapp_replies(twilio_standin, address, 1)
        header = first_message(kb, "channels.options_header")
        assert numbered == f"{menu['text']}\n\n{header}\n1. Trabajar en el extranjero\n2. Volver al Perú"

        await post_to_whatsapp(app, twilio_fields(address, "1"))
        await whatsapp_replies(twilio_standin, address, 2)
        await post_to_whatsapp(app, twilio_fields(address, "volver al peru"))
        await whatsapp_replies(twilio_standin, address, 3)
        # The last message had no options: a bare number is just a number now.
        await post_to_whatsapp(app, twilio_fields(address, "2"))
        await whatsapp_replies(twilio_standin, address, 4)
    assert assistant.texts() == ["hola", "/work_abroad", "/return_to_peru", "2"]
    assert not any("/work_abroad" in body for body in twilio_standin.bodies(address)), "payloads stay hidden"


@in_event_loop
async def test_whatsapp_media_reaches_the_assistant_as_the_media_payload_with_what_was_sent(environment):
    address = whatsapp_address()
    photo = {"NumMedia": "1", "MediaContentType0": "image/jpeg", "MediaUrl0": "https://api.twilio.com/media/ME1"}
    async with served([WhatsAppChannel(environment.settings())]) as app:
        await post_to_whatsapp(app, twilio_fields(address, "", **photo))
        await app.idle()
    (message,) = app.assistant.received
    assert message.text == MEDIA_PAYLOAD
    assert message.metadata["media"] == [{"type": "image/jpeg", "url": "https://api.twilio.com/media/ME1"}]


@in_event_loop
async def test_whatsapp_a_long_answer_reaches_twilio_split_in_order(environment, twilio_standin):
    address = whatsapp_address()
    sentences = [f"Oración número {n} de una respuesta larga sobre el trámite." for n in range(60)]
    assistant = ScriptedAssistant(new_agent())
    assistant.answer("requisitos", {"text": " ".join(sentences)})
    async with served([WhatsAppChannel(environment.settings())], assistant) as app:
        await post_to_whatsapp(app, twilio_fields(address, "requisitos"))
        await app.idle()
    bodies = twilio_standin.bodies(address)
    assert len(bodies) >= 2 and all(len(b) <= 1600 for b in bodies)
    assert " ".join(bodies) == " ".join(sentences)


# --- Telegram -------------------------------------------------------------------------------


@dataclass
class TelegramChat:
    id: int
    type: str = "private"

    def as_json(self) -> dict:
        return {"id": self.id, "type": self.type} | ({"title": "Migrantes"} if self.type != "private" else {})


def new_chat(kind: str = "private") -> TelegramChat:
    chat_id = next(_telegram_chats)
    return TelegramChat(-chat_id if kind != "private" else chat_id, kind)


def text_update(chat: TelegramChat, text: str, **message: object) -> dict:
    person = {"id": abs(chat.id) + 1, "is_bot": False, "first_name": "Ana"}
    return {
        "update_id": next(_update_ids),
        "message": {
            "message_id": random.randrange(1, 10**6),
            "date": 1_700_000_000,
            "chat": chat.as_json(),
            "from": person,
            "text": text,
            **message,
        },
    }


def button_press(chat: TelegramChat, data: str) -> dict:
    bot = {"id": TELEGRAM_BOT_ID, "is_bot": True, "first_name": "SOM", "username": TELEGRAM_BOT_USERNAME}
    return {
        "update_id": next(_update_ids),
        "callback_query": {
            "id": f"cb{uuid.uuid4().hex[:10]}",
            "from": {"id": chat.id, "is_bot": False, "first_name": "Ana"},
            "chat_instance": "instance-1",
            "data": data,
            "message": {"message_id": 7, "date": 1_700_000_000, "chat": chat.as_json(), "from": bot, "text": "menú"},
        },
    }


async def post_to_telegram(app: Served, update: dict | bytes, secret: str | None = TELEGRAM_WEBHOOK_SECRET):
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers[SECRET_HEADER] = secret
    body = update if isinstance(update, bytes) else json.dumps(update).encode()
    return await app.client.post(TELEGRAM_WEBHOOK_PATH, content=body, headers=headers)


async def telegram_sent(telegram: TelegramStandIn, chat: TelegramChat, count: int):
    return await eventually(
        lambda: len(telegram.sent(chat.id)) >= count and telegram.sent(chat.id),
        what=f"{count} Telegram message(s) to chat {chat.id}",
    )


@in_event_loop
async def test_telegram_refuses_requests_without_the_webhook_secret(environment, telegram_standin):
    chat = new_chat()
    async with served([TelegramChannel(environment.settings())]) as app:
        for secret in (None, "", "not-the-secret", TELEGRAM_WEBHOOK_SECRET + "x"):
            answer = await post_to_telegram(app, text_update(chat, "hola"), secret)
            assert answer.status_code in (401, 403), secret
        await app.idle()
    assert app.assistant.received == []
    assert telegram_standin.attempts(chat.id) == []


@in_event_loop
async def test_telegram_answer_reaches_telegram_as_escaped_html(environment, telegram_standin):
    chat = new_chat()
    assistant = ScriptedAssistant(new_agent())
    assistant.answer("hola", {"text": "Lleve su *pasaporte* & copias <originales>"})
    async with served([TelegramChannel(environment.settings())], assistant) as app:
        answer = await post_to_telegram(app, text_update(chat, "hola"))
        assert (answer.status_code, answer.text) == (200, "ok")
        (sent,) = await telegram_sent(telegram_standin, chat, 1)
    assert sent.params["text"] == "Lleve su <b>pasaporte</b> &amp; copias &lt;originales&gt;"
    assert sent.params["parse_mode"] == "HTML"
    (message,) = assistant.received
    assert (message.sender_id, message.text, message.input_channel) == (f"telegram:{chat.id}", "hola", "telegram")


@in_event_loop
async def test_telegram_buttons_are_one_per_row_and_a_press_is_acknowledged_and_sends_its_payload(
    environment, telegram_standin
):
    chat = new_chat()
    long_payload = '/inform{"entry": "dest.spain.documents", "topic": "work_abroad", "country": "España"}'
    assistant = ScriptedAssistant(new_agent())
    buttons = [{"title": "Trabajar afuera", "payload": "/work_abroad"}, {"title": "España", "payload": long_payload}]
    assistant.answer("hola", {"text": "¿Qué desea?", "buttons": buttons})
    async with served([TelegramChannel(environment.settings())], assistant) as app:
        await post_to_telegram(app, text_update(chat, "hola"))
        (menu,) = await telegram_sent(telegram_standin, chat, 1)
        rows = json.loads(menu.params["reply_markup"])["inline_keyboard"]
        assert [[button["text"] for button in row] for row in rows] == [["Trabajar afuera"], ["España"]]
        data = [row[0]["callback_data"] for row in rows]
        assert all(len(d.encode()) <= 64 for d in data), "Telegram takes at most 64 bytes of button data"

        for pressed in data:
            press = button_press(chat, pressed)
            await post_to_telegram(app, press)
            await eventually(
                lambda press=press: any(
                    c.params.get("callback_query_id") == press["callback_query"]["id"]
                    for c in telegram_standin.calls("answerCallbackQuery")
                ),
                what="the button press acknowledged",
            )
        # Button data comes from the client: a payload the assistant never offered here shows the menu.
        await post_to_telegram(app, button_press(chat, '/inform{"entry": "handoff.claimed"}'))
        await app.idle()
    assert assistant.texts() == ["hola", "/work_abroad", long_payload, "/show_menu"]


@in_event_loop
async def test_telegram_a_redelivered_update_is_answered_once_and_a_broken_one_still_gets_200(
    environment, telegram_standin
):
    chat = new_chat()
    update = text_update(chat, "hola")
    async with served([TelegramChannel(environment.settings())]) as app:
        for _ in range(2):
            assert (await post_to_telegram(app, update)).status_code == 200
        for broken in (b"{not json", json.dumps({"update_id": "x", "message": 5}).encode()):
            assert (await post_to_telegram(app, broken)).status_code == 200, "Telegram redelivers anything else"
        await app.idle()
    assert app.assistant.texts() == ["hola"]
    assert [r.params["text"] for r in telegram_standin.sent(chat.id)] == ["Respuesta a: hola"]


@in_event_loop
async def test_telegram_start_greets_and_groups_are_answered_only_when_the_bot_is_addressed(environment):
    private, group = new_chat(), new_chat("group")
    mention = f"@{TELEGRAM_BOT_USERNAME}"
    async with served([TelegramChannel(environment.settings())]) as app:
        await post_to_telegram(
            app, text_update(private, "/start", entities=[{"type": "bot_command", "offset": 0, "length": 6}])
        )
        await post_to_telegram(app, text_update(group, "hola a todos"))
        await post_to_telegram(
            app,
            text_update(
                group, f"{mention} ¿qué es el SOM?", entities=[{"type": "mention", "offset": 0, "length": len(mention)}]
            ),
        )
        await app.idle()
    by_conversation = {(m.sender_id, m.text) for m in app.assistant.received}
    assert by_conversation == {(f"telegram:{private.id}", "/greet"), (f"telegram:{group.id}", "¿qué es el SOM?")}


# --- web chat (socket.io channel's HTTP routes, and the widget's files) -------------------


def webchat_channel() -> WebChatSocketIO:
    return WebChatSocketIO.from_credentials(None)


async def save_conversation(app: Served, conversation_id: str, channel: str) -> None:
    tracker = await app.agent.tracker_store.get_or_create_tracker(conversation_id)
    for event in (
        UserUttered("/greet", input_channel=channel, metadata={"received_at": 1_700_000_000.0}),
        BotUttered(
            "Hola, soy el asistente del SOM.", {"buttons": [{"title": "Trabajar afuera", "payload": "/work_abroad"}]}
        ),
        UserUttered("/work_abroad", input_channel=channel, metadata={"shown_text": "Trabajar afuera"}),
        BotUttered("Para trabajar afuera…", {}, metadata={"author": "advisor:Rosa"}),
    ):
        tracker.update(event)
    await app.agent.tracker_store.save(tracker)


def history_url(conversation_id: str) -> str:
    return f"/webhooks/socketio/history/{conversation_id}"


@in_event_loop
async def test_webchat_history_is_the_web_chat_conversation_as_the_person_saw_it(environment):
    webchat_id, rest_id = str(uuid.uuid4()), str(uuid.uuid4())
    async with served([webchat_channel()]) as app:
        await save_conversation(app, webchat_id, "socketio")
        await save_conversation(app, rest_id, "rest")
        await save_conversation(app, "not-a-uuid", "socketio")
        history = (await app.client.get(history_url(webchat_id))).json()["messages"]
        other_channel = (await app.client.get(history_url(rest_id))).json()
        guessable = (await app.client.get(history_url("not-a-uuid"))).json()
        unknown = (await app.client.get(history_url(str(uuid.uuid4())))).json()

    assert [(m["role"], m["text"]) for m in history] == [
        ("bot", "Hola, soy el asistente del SOM."),
        ("user", "Trabajar afuera"),
        ("bot", "Para trabajar afuera…"),
    ], "the greeting payload is hidden, a pressed button shows its title"
    assert history[0]["buttons"] == [{"title": "Trabajar afuera", "payload": "/work_abroad"}]
    assert history[2]["advisor"] == "Rosa"
    assert other_channel == guessable == unknown == {"messages": []}


@in_event_loop
async def test_webchat_history_answers_only_its_own_and_the_configured_origins(environment):
    environment.set(WEBCHAT_ALLOWED_ORIGINS="https://www.gob.pe, https://intranet.trabajo.gob.pe/")
    conversation = str(uuid.uuid4())
    async with served([webchat_channel()]) as app:
        refused = await app.client.get(history_url(conversation), headers={"Origin": "https://evil.example"})
        no_browser = await app.client.get(history_url(conversation))
        own = await app.client.get(history_url(conversation), headers={"Origin": "http://testserver"})
        listed = await app.client.get(history_url(conversation), headers={"Origin": "https://intranet.trabajo.gob.pe"})
        preflight = await app.client.options(history_url(conversation), headers={"Origin": "https://www.gob.pe"})
        proxied = await app.client.get(
            history_url(conversation),
            headers={
                "Origin": "https://som.example.pe",
                "X-Forwarded-Host": "som.example.pe",
                "X-Forwarded-Proto": "https",
            },
        )

    assert refused.status_code == 403 and "access-control-allow-origin" not in refused.headers
    assert no_browser.status_code == 200 and "access-control-allow-origin" not in no_browser.headers
    assert own.status_code == 200 and own.headers["access-control-allow-origin"] == "http://testserver"
    assert (
        listed.status_code == 200 and listed.headers["access-control-allow-origin"] == "https://intranet.trabajo.gob.pe"
    )
    assert preflight.status_code == 204 and "Authorization" in preflight.headers["access-control-allow-headers"]
    assert proxied.status_code == 200, "behind a proxy the public host is the page's own origin"


@in_event_loop
async def test_webchat_history_needs_a_signed_token_when_a_jwt_key_is_configured(environment):
    key = "una-clave-jwt-de-prueba-suficientemente-larga"
    environment.set(WEBCHAT_JWT_KEY=key)
    anyone, mine = str(uuid.uuid4()), bound_session("persona-42")
    portal = jwt.encode({"iss": "portal"}, key, algorithm="HS256")
    personal = jwt.encode({"sub": "persona-42"}, key, algorithm="HS256")
    forged = jwt.encode({"iss": "portal"}, "otra-clave-cualquiera-de-prueba-larga", algorithm="HS256")
    async with served([webchat_channel()]) as app:
        await save_conversation(app, mine, "socketio")

        async def status(conversation: str, token: str | None) -> int:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            return (await app.client.get(history_url(conversation), headers=headers)).status_code

        assert [await status(anyone, token) for token in (None, forged, portal)] == [401, 401, 200]
        assert await status(anyone, personal) == 403, "a personal token opens its own conversation only"
        own = await app.client.get(history_url(mine), headers={"Authorization": f"Bearer {personal}"})
    assert own.status_code == 200 and len(own.json()["messages"]) == 3


@in_event_loop
async def test_webchat_page_serves_the_widget_and_nothing_else(environment):
    async with served([WebChatPage()]) as app:
        page = await app.client.get("/webchat/")
        widget = await app.client.get("/webchat/widget.js")
        private = [
            (await app.client.get(f"/webchat/{name}")).status_code for name in ("package.json", "index.html.bak")
        ]
        bare = await app.client.get("/webchat")
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    assert widget.status_code == 200 and widget.headers["x-content-type-options"] == "nosniff"
    assert private == [404, 404]
    assert bare.status_code in (301, 302) and bare.headers["location"] == "webchat/"


class WidgetSocket:
    """The widget's side of socket.io: python-socketio's client on a real connection."""

    def __init__(self, url: str, **connect: object) -> None:
        self.url, self.connect_options = url, connect
        self.client = socketio.AsyncClient(reconnection=False)
        self.session_id: str | None = None
        self.messages: list[dict] = []
        self.client.on("session_confirm", self._confirmed)
        self.client.on("bot_uttered", self.messages.append)

    def _confirmed(self, session_id: str) -> None:
        self.session_id = session_id

    async def open(self, session_id: str | None = None) -> str:
        # Long-polling only: python-engineio's websocket client needs a newer aiohttp than Rasa 3.6 pins.
        await self.client.connect(
            self.url, socketio_path="/socket.io", transports=["polling"], wait_timeout=5, **self.connect_options
        )
        await self.client.emit("session_request", {"session_id": session_id})
        return await eventually(lambda: self.session_id, what="the session confirmation")

    async def say(self, text: str, message_id: str | None = None, **extra: object) -> dict:
        data = {"message": text, "id": message_id or uuid.uuid4().hex, **extra}
        return await self.client.call("user_uttered", data, timeout=10)

    async def close(self) -> None:
        """Leave as a closed tab does, without waiting for the pending long-poll to come back."""
        await self.client.eio.disconnect(abort=True)


@in_event_loop
async def test_webchat_socket_session_answers_and_redelivery(environment):
    channel = webchat_channel()
    assistant = ScriptedAssistant(new_agent())
    menu = [{"title": "Trabajar afuera", "payload": "/work_abroad"}]
    assistant.answer("/greet", {"text": "Hola, soy el asistente del SOM.", "buttons": menu})
    async with served([channel], assistant, real_port=True) as app:
        widget = WidgetSocket(app.url)
        proposed = "no-es-un-uuid"
        session_id = await widget.open(proposed)
        assert session_id != proposed and is_session_id(session_id), "the server picks an unguessable id"

        greeting_ack = await widget.say("/greet")
        assert greeting_ack.get("kept") is True, greeting_ack
        await eventually(lambda: widget.messages, what="the greeting on the socket")
        assert widget.messages[0]["text"] == "Hola, soy el asistente del SOM."
        assert widget.messages[0]["quick_replies"] == [
            {"content_type": "text", "title": "Trabajar afuera", "payload": "/work_abroad"}
        ]

        first = await widget.say("/work_abroad", message_id="m-1", title="Trabajar afuera")
        again = await widget.say("/work_abroad", message_id="m-1", title="Trabajar afuera")
        assert again == first, "a message sent again after a reconnection is acknowledged, not handled twice"
        forged = await widget.say('/inform{"entry": "dest.spain.documents"}')
        assert "error" not in forged
        await eventually(lambda: len(widget.messages) >= 3, what="three answers on the socket")
        await widget.close()
        await channel.sio.shutdown()

    assert [(m.sender_id, m.text) for m in assistant.received] == [
        (session_id, "/greet"),
        (session_id, "/work_abroad"),
        (session_id, 'inform{"entry": "dest.spain.documents"}'),
    ], "a payload the assistant never offered is read as words"
    assert assistant.received[1].metadata["shown_text"] == "Trabajar afuera"


@in_event_loop
async def test_webchat_socket_refuses_foreign_origins(environment):
    channel = webchat_channel()
    async with served([channel], real_port=True) as app:
        foreign = WidgetSocket(app.url, headers={"Origin": "https://evil.example"})
        with pytest.raises(socketio.exceptions.ConnectionError):
            await foreign.open()
        own = WidgetSocket(app.url, headers={"Origin": app.url})
        assert is_session_id(await own.open())
        await own.close()
        await channel.sio.shutdown()


# --- advisor console ----------------------------------------------------------------------


class Console:
    """An advisor using the console's API through the app's client."""

    def __init__(self, app: Served) -> None:
        self.app = app
        self.token: str | None = None

    async def call(self, method: str, path: str, body: dict | None = None, expect: int | None = 200) -> dict:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        answer = await self.app.client.request(method, ADVISOR_API + path, json=body, headers=headers)
        if expect is not None:
            assert answer.status_code == expect, (method, path, answer.status_code, answer.text)
        return answer.json()

    async def log_in(self, username: str, password: str = ADVISOR_PASSWORD) -> Console:
        self.token = (await self.call("POST", "/login", {"username": username, "password": password}))["token"]
        return self

    async def queue(self, state: str = "waiting") -> list[dict]:
        return (await self.call("GET", f"/handoffs?status={state}"))["handoffs"]


def add_advisor(username: str, name: str) -> None:
    services.handoff_desk().store.add_advisor(username, ADVISOR_PASSWORD, name)


def open_handoff(conversation_id: str, channel: str) -> HandoffView:
    """A live hand-off, as the assistant opens it (opened on the store: no office-hours check)."""
    return services.handoff_desk().store.open(
        conversation_id, channel, "requested", 0, {"país": "Chile"}, [("person", "quiero hablar con un asesor")]
    )


async def signed_in(app: Served, username: str, name: str) -> Console:
    """The advisor `username` on the console, added first unless an earlier app of the test did."""
    with contextlib.suppress(Conflict):
        add_advisor(username, name)
    return await Console(app).log_in(username)


async def claimed_case(
    app: Served, conversation_id: str, channel: str, username: str = "rosa.canales", name: str = "Rosa"
) -> tuple[Console, HandoffView]:
    """A hand-off of `conversation_id`, claimed by the advisor `username` on the console."""
    advisor = await signed_in(app, username, name)
    handoff = open_handoff(conversation_id, channel)
    await advisor.call("POST", f"/handoffs/{handoff.id}/claim")
    return advisor, handoff


def all_channels(settings: Settings) -> list:
    """The channels of the real server (credentials.yml) that matter to advisors."""
    return [RestChannel(), WhatsAppChannel(settings), TelegramChannel(settings), AdvisorConsole()]


@in_event_loop
async def test_advisor_login_is_refused_with_a_wrong_password_and_the_api_needs_a_token(environment):
    async with served([AdvisorConsole()]) as app:
        add_advisor("rosa.canales", "Rosa")
        console = Console(app)
        assert (await console.call("GET", "/handoffs", expect=401))["error"]
        wrong = {"username": "rosa.canales", "password": "no-es-la-clave"}
        assert (await console.call("POST", "/login", wrong, expect=401))["error"]
        assert await console.call("POST", "/login", {"username": "nadie", "password": ADVISOR_PASSWORD}, expect=401)
        assert await console.call("POST", "/login", {"username": "rosa.canales"}, expect=400)
        console.token = "a-made-up-token"
        await console.call("GET", "/handoffs", expect=401)

        signed_in = await console.call("POST", "/login", {"username": "rosa.canales", "password": ADVISOR_PASSWORD})
        assert signed_in["advisor"] == "Rosa"
        console.token = signed_in["token"]
        assert await console.queue() == []
        await console.call("GET", "/handoffs?status=everything", expect=400)
    audit = [action for _, action, _ in services.handoff_desk().store.audit_log()]
    assert audit.count("login_failed") == 2 and audit.count("login") == 1


@in_event_loop
async def test_advisor_takes_a_whatsapp_conversation_replies_and_closes(environment, twilio_standin, kb):
    address = whatsapp_address()
    async with served(all_channels(environment.settings())) as app:
        add_advisor("rosa.canales", "Rosa")
        rosa = await Console(app).log_in("rosa.canales")
        handoff = open_handoff(address, "whatsapp")
        (queued,) = await rosa.queue()
        assert (queued["id"], queued["conversation_id"], queued["channel"]) == (handoff.id, address, "whatsapp")

        claimed = await rosa.call("POST", f"/handoffs/{handoff.id}/claim")
        assert claimed["delivered"] and claimed["handoff"]["state"] == "active"
        greeting = first_message(kb, "handoff.claimed", advisor="Rosa")
        assert await whatsapp_replies(twilio_standin, address, 1) == [greeting]

        sent = await rosa.call(
            "POST", f"/handoffs/{handoff.id}/messages", {"text": "Necesito su número de DNI."}, expect=201
        )
        assert sent["delivered"] is True
        assert (await whatsapp_replies(twilio_standin, address, 2))[1] == "Necesito su número de DNI."

        # The person answers on WhatsApp: the advisor reads it, the assistant stays quiet.
        await post_to_whatsapp(app, twilio_fields(address, "Es 12345678"))
        await app.idle()
        detail = await rosa.call("GET", f"/handoffs/{handoff.id}")
        assert [(line["author"], line["text"]) for line in detail["transcript"]] == [
            ("person", "quiero hablar con un asesor"),
            ("advisor", greeting),
            ("advisor", "Necesito su número de DNI."),
            ("person", "Es 12345678"),
        ]
        assert app.assistant.received == []

        closed = await rosa.call("POST", f"/handoffs/{handoff.id}/close")
        assert closed["handoff"]["state"] == "closed" and closed["delivered"]
        goodbye = list(kb.entry("handoff.closed").messages)
        assert (await whatsapp_replies(twilio_standin, address, 4))[2:] == goodbye
        assert await rosa.queue("closed") and await rosa.queue("active") == []

    said = [
        (e.text, (e.metadata or {}).get("author"))
        for e in await app.tracker_events(address)
        if isinstance(e, BotUttered)
    ]
    assert said[:2] == [(greeting, "advisor:Rosa"), ("Necesito su número de DNI.", "advisor:Rosa")]


@in_event_loop
async def test_advisor_reply_reaches_the_person_on_telegram(environment, telegram_standin, kb):
    chat = new_chat()
    async with served(all_channels(environment.settings())) as app:
        luis, handoff = await claimed_case(app, f"telegram:{chat.id}", "telegram", "luis.paredes", "Luis")
        await luis.call("POST", f"/handoffs/{handoff.id}/messages", {"text": "¿En qué ciudad está?"}, expect=201)
        sent = await telegram_sent(telegram_standin, chat, 2)
    assert [r.params["text"] for r in sent] == [
        first_message(kb, "handoff.claimed", advisor="Luis"),
        "¿En qué ciudad está?",
    ]


@in_event_loop
async def test_advisor_reply_to_a_rest_conversation_is_kept_but_reported_not_delivered(environment):
    async with served(all_channels(environment.settings())) as app:
        add_advisor("rosa.canales", "Rosa")
        rosa = await Console(app).log_in("rosa.canales")
        handoff = open_handoff("rest:pedro", "rest")
        claimed = await rosa.call("POST", f"/handoffs/{handoff.id}/claim")
        reply = await rosa.call("POST", f"/handoffs/{handoff.id}/messages", {"text": "Hola Pedro"}, expect=201)
        transcript = (await rosa.call("GET", f"/handoffs/{handoff.id}"))["transcript"]
    assert (claimed["delivered"], claimed["reachable"]) == (False, False)
    assert (reply["delivered"], reply["reachable"]) == (False, False)
    assert ("advisor", "Hola Pedro") in [(line["author"], line["text"]) for line in transcript]


@in_event_loop
async def test_advisor_a_refused_reply_is_a_502_and_is_not_recorded_as_said(environment, twilio_standin):
    address = whatsapp_address()
    async with served(all_channels(environment.settings())) as app:
        rosa, handoff = await claimed_case(app, address, "whatsapp")
        twilio_standin.fail_next(
            400, {"code": 63016, "message": "Outside the allowed window", "status": 400},
            when=lambda request: request.params.get("To") == address,
        )  # fmt: skip
        refused = await rosa.call("POST", f"/handoffs/{handoff.id}/messages", {"text": "¿Sigue ahí?"}, expect=502)
        transcript = (await rosa.call("GET", f"/handoffs/{handoff.id}"))["transcript"]
    assert refused["error"]
    assert "¿Sigue ahí?" not in [line["text"] for line in transcript]
    assert [r.status for r in twilio_standin.attempts(address)] == [201, 400], "a 400 is not retried"


@in_event_loop
async def test_advisor_only_one_advisor_owns_a_conversation(environment):
    async with served(all_channels(environment.settings())) as app:
        add_advisor("rosa.canales", "Rosa")
        add_advisor("luis.paredes", "Luis")
        rosa = await Console(app).log_in("rosa.canales")
        luis = await Console(app).log_in("luis.paredes")
        handoff = open_handoff("rest:marta", "rest")
        await rosa.call("POST", f"/handoffs/{handoff.id}/claim")
        assert (await luis.call("POST", f"/handoffs/{handoff.id}/claim", expect=409))["error"]
        await luis.call("POST", f"/handoffs/{handoff.id}/messages", {"text": "Hola"}, expect=403)
        await luis.call("POST", f"/handoffs/{handoff.id}/close", expect=403)
        await luis.call("POST", "/handoffs/999999/claim", expect=404)
        await rosa.call("POST", f"/handoffs/{handoff.id}/messages", {"text": "   "}, expect=400)


@in_event_loop
async def test_advisor_sweep_tells_a_person_nobody_claimed_in_time(environment, twilio_standin, kb):
    environment.set(HANDOFF_WAIT_MINUTES="0.001", HANDOFF_SWEEP_SECONDS="0.1")
    address = whatsapp_address()
    async with served(all_channels(environment.settings())):
        open_handoff(address, "whatsapp")
        (notice,) = await whatsapp_replies(twilio_standin, address, 1)
    assert notice == first_message(kb, "handoff.timeout")
    assert services.handoff_desk().store.open_for(address).mode == "message"


@in_event_loop
async def test_advisor_replies_reach_the_web_chat_widget_with_the_advisors_name(environment, kb):
    webchat = webchat_channel()
    async with served([webchat, AdvisorConsole()], real_port=True) as app:
        add_advisor("rosa.canales", "Rosa")
        rosa = await Console(app).log_in("rosa.canales")
        widget = WidgetSocket(app.url)
        session_id = await widget.open()
        handoff = open_handoff(session_id, "socketio")
        await rosa.call("POST", f"/handoffs/{handoff.id}/claim")
        await rosa.call("POST", f"/handoffs/{handoff.id}/messages", {"text": "¿Desde qué país escribe?"}, expect=201)
        await eventually(lambda: len(widget.messages) >= 2, what="the advisor's messages on the socket")
        await widget.close()
        await webchat.sio.shutdown()
    greeting, reply = widget.messages
    assert (greeting["text"], greeting["metadata"]["advisor"]) == (
        first_message(kb, "handoff.claimed", advisor="Rosa"),
        "Rosa",
    )
    assert (reply["text"], reply["metadata"]["advisor"], reply["metadata"]["kept"]) == (
        "¿Desde qué país escribe?",
        "Rosa",
        True,
    )


@in_event_loop
async def test_advisor_console_page_and_its_files_only(environment):
    async with served([AdvisorConsole()]) as app:
        page = await app.client.get("/advisor/")
        script = await app.client.get("/advisor/static/console.js")
        outside = await app.client.get("/advisor/static/..%2F..%2Fadvisor.py")
    assert page.status_code == 200 and "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert script.status_code == 200 and script.headers["cache-control"] == "no-store"
    assert outside.status_code == 404


def test_a_stopping_server_first_lets_acknowledged_messages_finish_in_order():
    """WhatsApp and Telegram were told "received" already: they will not send these again."""

    async def scenario() -> list[str]:
        path = InboundPath("whatsapp", output=None)  # the ordering part needs no output
        finished: list[str] = []

        async def answer(name: str) -> None:
            await asyncio.sleep(0.2)
            finished.append(name)

        path.in_order("whatsapp:+51900000001", partial(answer, "first"))
        path.in_order("whatsapp:+51900000001", partial(answer, "second"))
        path.in_order("whatsapp:+51900000002", partial(answer, "other"))
        await path.drain(timeout=10.0)
        return finished

    finished = asyncio.run(scenario())
    assert sorted(finished) == ["first", "other", "second"]
    assert finished.index("first") < finished.index("second")
