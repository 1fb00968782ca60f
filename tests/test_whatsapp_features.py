"""WhatsApp as people know it (issue 16), in the fast in-process tier: delivery status callbacks,
approved templates after the 24-hour window, WhatsApp's own buttons and lists, the typing
indicator, and a Twilio that fails or answers too late. Every request goes through the real
Twilio SDK to the local stand-in (`TwilioStandIn`); no model.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import urllib.parse

import sqlalchemy as sa
from blueprint_harness import (
    ScriptedAssistant,
    Served,
    SlowAssistant,
    channel_test_marks,
    eventually,
    in_event_loop,
    new_agent,
    served,
)
from production_stores import REDIS_URL
from standins import PUBLIC_URL, TwilioStandIn
from test_channel_blueprints import (
    Console,
    all_channels,
    claimed_case,
    first_message,
    open_handoff,
    post_to_whatsapp,
    signed_in,
    twilio_fields,
    twilio_signature,
    whatsapp_address,
    whatsapp_replies,
)

import integrations.twilio
from bot import services
from bot.handoff import Handoff
from bot.settings import WHATSAPP_STATUS_PATH
from channels.whatsapp import WhatsAppChannel, WhatsAppSender
from integrations.redis_keys import shared_keys

pytestmark = channel_test_marks(90)

TWO_OPTIONS = [
    {"title": "Trabajar afuera", "payload": "/work_abroad"},
    {"title": "Volver al Perú", "payload": "/return_to_peru"},
]
COUNTRIES = [{"title": name, "payload": f'/inform{{"country": "{name}"}}'} for name in ("Chile", "Argentina", "Japón", "España", "Italia")]  # fmt: skip


async def post_status(app: Served, twilio: TwilioStandIn, sid: str, status: str, error: str | None = None) -> int:
    """Twilio's status callback for message `sid`, posted where the message asked (our public URL)."""
    url, fields, signature = twilio.status_callback(sid, status, error)
    assert url == PUBLIC_URL + WHATSAPP_STATUS_PATH
    answer = await app.client.post(
        urllib.parse.urlsplit(url).path,
        content=urllib.parse.urlencode(fields),
        headers={"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature},
    )
    return answer.status_code


def sids_to(twilio: TwilioStandIn, address: str) -> list[str]:
    return [sid for sid, params in twilio.messages.items() if params.get("To") == address]


def age_handoff(handoff_id: int, hours: float) -> None:
    """The person last wrote `hours` ago (WhatsApp's window is 24 hours)."""
    store = services.handoff_desk().store
    then = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - dt.timedelta(hours=hours)
    with store.engine.begin() as connection:
        connection.execute(sa.update(Handoff).where(Handoff.id == handoff_id).values(last_person_message_at=then))


async def claimed_whatsapp_case(app: Served, address: str) -> tuple[Console, int]:
    rosa, handoff = await claimed_case(app, address, "whatsapp")
    return rosa, handoff.id


# --- delivery status ------------------------------------------------------------------------


@in_event_loop
async def test_every_message_asks_for_status_callbacks_and_an_advisor_reply_shows_its_status(
    environment, twilio_standin
):
    address = whatsapp_address()
    async with served(all_channels(environment.settings())) as app:
        await post_to_whatsapp(app, twilio_fields(address, "hola"))
        await whatsapp_replies(twilio_standin, address, 1)
        rosa, handoff_id = await claimed_whatsapp_case(app, address)
        await rosa.call("POST", f"/handoffs/{handoff_id}/messages", {"text": "Necesito su DNI."}, expect=201)
        assistant_answer, greeting, reply = sids_to(twilio_standin, address)
        assert all(
            params.get("StatusCallback") == PUBLIC_URL + WHATSAPP_STATUS_PATH
            for params in twilio_standin.messages.values()
            if params.get("To") == address
        )

        async def statuses() -> list[str | None]:
            transcript = (await rosa.call("GET", f"/handoffs/{handoff_id}"))["transcript"]
            return [(line["delivery"] or {}).get("status") for line in transcript]

        assert await statuses() == [None, "queued", "queued"], "the person's line has none; no callback yet"
        for status in ("sent", "read", "delivered", "sent"):  # late and repeated callbacks
            assert await post_status(app, twilio_standin, reply, status) == 204
        assert await post_status(app, twilio_standin, greeting, "delivered") == 204
        assert await post_status(app, twilio_standin, assistant_answer, "read") == 204  # kept, shown nowhere
        assert await statuses() == [None, "delivered", "read"]
        transcript = (await rosa.call("GET", f"/handoffs/{handoff_id}"))["transcript"]
    assert transcript[2]["text"] == "Necesito su DNI."
    assert transcript[2]["delivery"] == {"status": "read", "failed": False, "error_code": None, "template": False}
    assert services.handoff_desk().store.note_delivery(assistant_answer, "delivered") == "read"


@in_event_loop
async def test_a_failed_advisor_reply_is_flagged_and_forged_status_callbacks_are_refused(environment, twilio_standin):
    address = whatsapp_address()
    async with served(all_channels(environment.settings())) as app:
        rosa, handoff_id = await claimed_whatsapp_case(app, address)
        await rosa.call("POST", f"/handoffs/{handoff_id}/messages", {"text": "¿Sigue en Lima?"}, expect=201)
        reply = sids_to(twilio_standin, address)[-1]

        url, fields, signature = twilio_standin.status_callback(reply, "read")
        forgeries = {
            "no signature": (fields, None),
            "garbage": (fields, "forged"),
            "status changed after signing": (dict(fields, MessageStatus="failed"), signature),
            "signed for the inbound webhook": (fields, twilio_signature(fields)),
        }
        for case, (form, forged) in forgeries.items():
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
            if forged:
                headers["X-Twilio-Signature"] = forged
            path = urllib.parse.urlsplit(url).path
            answer = await app.client.post(path, content=urllib.parse.urlencode(form), headers=headers)
            assert answer.status_code == 403, case
        assert await post_status(app, twilio_standin, reply, "sent") == 204
        assert await post_status(app, twilio_standin, reply, "undelivered", "63016") == 204
        assert await post_status(app, twilio_standin, reply, "sent") == 204  # never back from a failure
        (_, _, line) = (await rosa.call("GET", f"/handoffs/{handoff_id}"))["transcript"]
    assert line["text"] == "¿Sigue en Lima?"
    assert line["delivery"] == {"status": "undelivered", "failed": True, "error_code": "63016", "template": False}


# --- after 24 hours -------------------------------------------------------------------------


@in_event_loop
async def test_after_24_hours_an_advisor_reply_goes_as_the_approved_template_or_is_refused(environment, twilio_standin):
    address = whatsapp_address()
    async with served(all_channels(environment.settings())) as app:
        rosa, handoff_id = await claimed_whatsapp_case(app, address)
        age_handoff(handoff_id, hours=30)
        refused = await rosa.call("POST", f"/handoffs/{handoff_id}/messages", {"text": "Hola"}, expect=409)
        assert "24 horas" in refused["error"]
    assert len(twilio_standin.accepted(address)) == 1, "only the greeting, within the window"

    template = twilio_standin.approve("Su asesor del SOM le responde: {{1}}")
    environment.set(TWILIO_TEMPLATE_SID_ADVISOR_REPLY=template)
    address = whatsapp_address()
    async with served(all_channels(environment.settings())) as app:
        rosa, handoff_id = await claimed_whatsapp_case(app, address)
        age_handoff(handoff_id, hours=30)
        text = "Ya tenemos su constancia.\n\nPuede recogerla el lunes."
        sent = await rosa.call("POST", f"/handoffs/{handoff_id}/messages", {"text": text}, expect=201)
        assert sent["template"] is True and sent["delivered"] is True
        transcript = (await rosa.call("GET", f"/handoffs/{handoff_id}"))["transcript"]
    last = twilio_standin.accepted(address)[-1].params
    assert last["ContentSid"] == template and "Body" not in last
    assert json.loads(last["ContentVariables"]) == {"1": "Ya tenemos su constancia. Puede recogerla el lunes."}
    assert (
        twilio_standin.bodies(address)[-1]
        == "Su asesor del SOM le responde: Ya tenemos su constancia. Puede recogerla el lunes."
    )
    assert (transcript[-1]["text"], transcript[-1]["delivery"]["template"]) == (text, True)


@in_event_loop
async def test_after_24_hours_the_satisfaction_question_goes_as_its_template(environment, twilio_standin, kb):
    rating = twilio_standin.approve("¿Cómo calificaría la atención del SOM? Responda del 1 al 5.")
    environment.set(TWILIO_TEMPLATE_SID_RATING=rating)
    address = whatsapp_address()
    async with served(all_channels(environment.settings())) as app:
        rosa, handoff_id = await claimed_whatsapp_case(app, address)
        age_handoff(handoff_id, hours=25)
        closed = await rosa.call("POST", f"/handoffs/{handoff_id}/close")
    assert closed["template"] is True and closed["delivered"] is True and closed["total"] == 1
    last = twilio_standin.accepted(address)[-1].params
    assert last["ContentSid"] == rating and "ContentVariables" not in last

    address = whatsapp_address()  # within the window: the usual goodbye and question, as text
    async with served(all_channels(environment.settings())) as app:
        rosa, handoff_id = await claimed_whatsapp_case(app, address)
        closed = await rosa.call("POST", f"/handoffs/{handoff_id}/close")
    assert closed["template"] is False
    assert twilio_standin.bodies(address)[1:] == list(kb.entry("handoff.closed").messages)


# --- WhatsApp's own buttons and lists -------------------------------------------------------


@in_event_loop
async def test_native_buttons_and_lists_are_created_once_and_a_tap_is_the_payload(environment, twilio_standin):
    environment.set(TWILIO_CONTENT_ENABLED="1")
    address = whatsapp_address()
    assistant = ScriptedAssistant(new_agent())
    assistant.answer("hola", {"text": "¿Sobre qué desea orientación?", "buttons": TWO_OPTIONS})
    assistant.answer("/work_abroad", {"text": "¿A qué país?", "buttons": COUNTRIES})
    assistant.answer("/return_to_peru", {"text": "Bienvenido de vuelta. ¿Sobre qué desea orientación?", "buttons": TWO_OPTIONS})  # fmt: skip
    created_before = len(twilio_standin.calls(TwilioStandIn.CONTENT))
    async with served([WhatsAppChannel(environment.settings())], assistant) as app:
        await post_to_whatsapp(app, twilio_fields(address, "hola"))
        assert await whatsapp_replies(twilio_standin, address, 1) == ["¿Sobre qué desea orientación?"]
        tap = twilio_fields(address, "Trabajar afuera", ButtonText="Trabajar afuera", ButtonPayload="/work_abroad")
        await post_to_whatsapp(app, tap)
        await whatsapp_replies(twilio_standin, address, 2)
        pick = twilio_fields(address, "Volver al Perú", ButtonText="Volver al Perú", ButtonPayload="/return_to_peru")
        await post_to_whatsapp(app, pick)  # a button of an earlier message still counts
        await whatsapp_replies(twilio_standin, address, 3)
        forged = twilio_fields(address, "Chile", ButtonText="Chile", ButtonPayload='/inform{"entry": "secreto"}')
        await post_to_whatsapp(app, forged)
        await app.idle()
    assert assistant.texts() == ["hola", "/work_abroad", "/return_to_peru", "Chile"], "unknown payload: its text"
    created = twilio_standin.calls(TwilioStandIn.CONTENT)[created_before:]
    kinds = [next(iter(json.loads(r.params["types"]))) for r in created]
    assert kinds == ["twilio/quick-reply", "twilio/list-picker"], "the same button set is created once"
    quick_reply, list_picker = (json.loads(r.params["types"]) for r in created)
    assert quick_reply["twilio/quick-reply"]["actions"] == [
        {"type": "QUICK_REPLY", "title": b["title"], "id": b["payload"]} for b in TWO_OPTIONS
    ]
    assert list_picker["twilio/list-picker"]["button"] == "Ver opciones"
    sent = twilio_standin.accepted(address)
    assert all("ContentSid" in r.params and "Body" not in r.params for r in sent[:3]), "the last answer has no options"
    assert sent[0].params["ContentSid"] == sent[2].params["ContentSid"]

    # Another replica, or the server after a restart, reuses the content kept in the database.
    address = whatsapp_address()
    async with served([WhatsAppChannel(environment.settings())], assistant) as app:
        await post_to_whatsapp(app, twilio_fields(address, "hola"))
        await whatsapp_replies(twilio_standin, address, 1)
    assert len(twilio_standin.calls(TwilioStandIn.CONTENT)) == created_before + 2
    assert twilio_standin.accepted(address)[0].params["ContentSid"] == sent[0].params["ContentSid"]


@in_event_loop
async def test_options_whatsapp_cannot_show_natively_and_a_failing_content_api_fall_back_to_numbered_text(
    environment, twilio_standin, kb
):
    environment.set(TWILIO_CONTENT_ENABLED="1")
    header = first_message(kb, "channels.options_header")
    too_many = [{"title": f"Opción {n}", "payload": f"/option_{n}"} for n in range(11)]
    too_long = [{"title": "Trabajar en el extranjero con contrato " * 2, "payload": "/work_abroad"}, TWO_OPTIONS[1]]
    assistant = ScriptedAssistant(new_agent())
    assistant.answer("muchas", {"text": "Elija una", "buttons": too_many})
    assistant.answer("largas", {"text": "Elija una", "buttons": too_long})
    assistant.answer("hola", {"text": "¿Qué necesita, estimado usuario?", "buttons": TWO_OPTIONS})
    address = whatsapp_address()
    async with served([WhatsAppChannel(environment.settings())], assistant) as app:
        await post_to_whatsapp(app, twilio_fields(address, "muchas"))
        await whatsapp_replies(twilio_standin, address, 1)
        await post_to_whatsapp(app, twilio_fields(address, "largas"))
        await whatsapp_replies(twilio_standin, address, 2)
        twilio_standin.fail_next(
            500, {"code": 20500, "message": "Internal Server Error", "status": 500},
            when=lambda r: r.path == TwilioStandIn.CONTENT,
        )  # fmt: skip
        await post_to_whatsapp(app, twilio_fields(address, "hola"))
        await whatsapp_replies(twilio_standin, address, 3)
        await post_to_whatsapp(app, twilio_fields(address, "2"))  # the numbered text's options still work
        await whatsapp_replies(twilio_standin, address, 4)
    many, long, fallback, _ = twilio_standin.bodies(address)
    assert many.startswith(f"Elija una\n\n{header}\n1. Opción 0") and "11. Opción 10" in many
    assert long.startswith(f"Elija una\n\n{header}\n1. Trabajar en el extranjero con contrato Trabajar")
    assert fallback == f"¿Qué necesita, estimado usuario?\n\n{header}\n1. Trabajar afuera\n2. Volver al Perú"
    assert assistant.texts()[-1] == "/return_to_peru"
    assert all("Body" in r.params for r in twilio_standin.accepted(address))


@in_event_loop
async def test_a_list_shortens_long_titles_keeps_them_whole_below_and_a_picked_item_is_its_payload(
    environment, twilio_standin
):
    environment.set(TWILIO_CONTENT_ENABLED="1")
    twilio_standin.list_descriptions_required = True  # as Twilio's current page reads: created again
    guides = [
        {"title": "Argentina: documentos, costo y plazos", "payload": "/argentina_documents"},
        {"title": "Japón: visa para descendientes nikkei", "payload": "/japan_nikkei"},
        {"title": "Chile", "payload": "/chile"},
        {"title": "Volver al Perú", "payload": "/return_to_peru"},
    ]
    assistant = ScriptedAssistant(new_agent())
    assistant.answer("guías", {"text": "¿Qué guía desea?", "buttons": guides})
    address = whatsapp_address()
    created_before = len(twilio_standin.calls(TwilioStandIn.CONTENT))
    async with served([WhatsAppChannel(environment.settings())], assistant) as app:
        await post_to_whatsapp(app, twilio_fields(address, "guías"))
        await whatsapp_replies(twilio_standin, address, 1)
        # What Twilio posts for a picked list item: its id, and its title as the text.
        picked = twilio_fields(address, "Japón: visa para…", ListId="/japan_nikkei", ListTitle="Japón: visa para…")
        await post_to_whatsapp(app, picked)
        await app.idle()
    refused, created = twilio_standin.calls(TwilioStandIn.CONTENT)[created_before:]
    assert (refused.status, created.status) == (400, 201)
    items = json.loads(created.params["types"])["twilio/list-picker"]["items"]
    assert [(i["item"], i["description"]) for i in items] == [
        ("Argentina: documentos…", "Argentina: documentos, costo y plazos"),
        ("Japón: visa para…", "Japón: visa para descendientes nikkei"),
        ("Chile", "Chile"),
        ("Volver al Perú", "Volver al Perú"),
    ]
    assert all(len(i["item"]) <= 24 for i in items)
    assert "ContentSid" in twilio_standin.accepted(address)[0].params
    assert assistant.texts() == ["guías", "/japan_nikkei"]


@in_event_loop
async def test_numbered_text_stays_the_default_without_content_enabled(environment, twilio_standin):
    address = whatsapp_address()
    assistant = ScriptedAssistant(new_agent())
    assistant.answer("hola", {"text": "¿Sobre qué desea orientación?", "buttons": TWO_OPTIONS})
    created_before = len(twilio_standin.calls(TwilioStandIn.CONTENT))
    async with served([WhatsAppChannel(environment.settings())], assistant) as app:
        await post_to_whatsapp(app, twilio_fields(address, "hola"))
        (numbered,) = await whatsapp_replies(twilio_standin, address, 1)
    assert "1. Trabajar afuera" in numbered
    assert len(twilio_standin.calls(TwilioStandIn.CONTENT)) == created_before


# --- typing indicator -----------------------------------------------------------------------


def typing_for(twilio: TwilioStandIn, message_sid: str) -> list:
    return [r for r in twilio.calls(TwilioStandIn.TYPING) if r.params.get("messageId") == message_sid]


@in_event_loop
async def test_a_slow_answer_shows_typing_for_the_persons_message_and_a_quick_one_does_not(environment, twilio_standin):
    address = whatsapp_address()
    assistant = SlowAssistant(new_agent())
    quick, slow, slow_again = (twilio_fields(address, text) for text in ("hola", "lento 1", "lento 2"))
    async with served([WhatsAppChannel(environment.settings())], assistant) as app:
        await post_to_whatsapp(app, quick)
        await whatsapp_replies(twilio_standin, address, 1)
        await post_to_whatsapp(app, slow)
        await whatsapp_replies(twilio_standin, address, 2)
        twilio_standin.fail_next(
            503, {"code": 20503, "message": "Service Unavailable", "status": 503},
            when=lambda r: r.path == TwilioStandIn.TYPING,
        )  # fmt: skip
        await post_to_whatsapp(app, slow_again)  # the indicator fails: the answer still goes, once
        await whatsapp_replies(twilio_standin, address, 3)
        await app.idle()
    assert typing_for(twilio_standin, quick["MessageSid"]) == []
    (shown,) = typing_for(twilio_standin, slow["MessageSid"])
    assert (shown.status, shown.params["channel"]) == (200, "whatsapp")
    assert [r.status for r in typing_for(twilio_standin, slow_again["MessageSid"])] == [503]
    assert twilio_standin.bodies(address) == ["Respuesta a: hola", "Respuesta a: lento 1", "Respuesta a: lento 2"]


@in_event_loop
async def test_while_an_advisor_writes_the_person_sees_typing_on_their_last_message(environment, twilio_standin):
    address = whatsapp_address()
    async with served(all_channels(environment.settings())) as app:
        rosa, handoff_id = await claimed_whatsapp_case(app, address)
        assert (await rosa.call("POST", f"/handoffs/{handoff_id}/typing"))["shown"] is False, "no message yet"
        written = twilio_fields(address, "¿Me ayuda con mi contrato?")
        await post_to_whatsapp(app, written)
        await app.idle()
        assert (await rosa.call("POST", f"/handoffs/{handoff_id}/typing"))["shown"] is True
        twilio_standin.fail_next(
            500, {"code": 20500, "message": "Internal Server Error", "status": 500},
            when=lambda r: r.path == TwilioStandIn.TYPING,
        )  # fmt: skip
        assert (await rosa.call("POST", f"/handoffs/{handoff_id}/typing"))["shown"] is False, "best effort"

        luis = await signed_in(app, "luis.paredes", "Luis")
        await luis.call("POST", f"/handoffs/{handoff_id}/typing", expect=403)
        rest = open_handoff("rest:pedro", "rest")
        await luis.call("POST", f"/handoffs/{rest.id}/claim")
        assert (await luis.call("POST", f"/handoffs/{rest.id}/typing"))["shown"] is False
    shown = typing_for(twilio_standin, written["MessageSid"])
    assert [r.status for r in shown] == [200, 500]
    assert app.assistant.received == [], "the person talks with the advisor"


@in_event_loop
async def test_typing_reaches_the_person_when_the_advisors_replica_did_not_receive_their_message(
    environment, twilio_standin, redis_prefix
):
    environment.set(REDIS_URL=REDIS_URL, REDIS_KEY_PREFIX=redis_prefix[0])
    settings = environment.settings()
    receiving, advisors = (WhatsAppSender(settings, shared_keys(settings, "whatsapp")) for _ in range(2))
    address = whatsapp_address()
    written = twilio_fields(address, "¿Me ayuda?")
    try:
        assert await advisors.typing_to(address) is False, "no message of theirs anywhere yet"
        receiving.remember_inbound(address, written["MessageSid"])
        assert await advisors.typing_to(address) is True
    finally:
        await asyncio.gather(receiving.close(), advisors.close())
    assert [r.status for r in typing_for(twilio_standin, written["MessageSid"])] == [200]


# --- a Twilio that fails or answers too late ------------------------------------------------


@in_event_loop
async def test_a_5xx_is_retried_and_the_message_goes_once(environment, twilio_standin):
    address = whatsapp_address()
    async with served(all_channels(environment.settings())) as app:
        twilio_standin.fail_next(
            503, {"code": 20503, "message": "Service Unavailable", "status": 503},
            when=lambda r: r.params.get("To") == address, times=2,
        )  # fmt: skip
        await post_to_whatsapp(app, twilio_fields(address, "hola"))
        assert await whatsapp_replies(twilio_standin, address, 1) == ["Respuesta a: hola"]
        await app.idle()
    assert [r.status for r in twilio_standin.attempts(address)] == [503, 503, 201]


@in_event_loop
async def test_a_twilio_that_answers_too_late_is_not_asked_again(environment, twilio_standin, monkeypatch):
    """Twilio may have taken a message it answered too late for: sending it again could say it twice."""
    monkeypatch.setattr(integrations.twilio, "SEND_TIMEOUT_SECONDS", 0.5)
    address = whatsapp_address()
    async with served(all_channels(environment.settings())) as app:
        rosa, handoff_id = await claimed_whatsapp_case(app, address)
        twilio_standin.stall_next(1.5, when=lambda r: r.params.get("To") == address)
        late = await rosa.call("POST", f"/handoffs/{handoff_id}/messages", {"text": "¿Me lee?"}, expect=502)
        assert late["error"]
        await eventually(lambda: len(twilio_standin.attempts(address)) == 2, what="the late answer")
        await asyncio.sleep(0.5)
    assert [r.params.get("Body") for r in twilio_standin.attempts(address)][1:] == ["¿Me lee?"], "asked once"


@in_event_loop
async def test_native_buttons_after_a_5xx_or_a_timeout_go_once_and_never_also_as_numbered_text(
    environment, twilio_standin, monkeypatch
):
    monkeypatch.setattr(integrations.twilio, "SEND_TIMEOUT_SECONDS", 0.5)
    environment.set(TWILIO_CONTENT_ENABLED="1")
    address = whatsapp_address()
    assistant = ScriptedAssistant(new_agent())
    assistant.answer("hola", {"text": "¿Sobre qué desea orientación?", "buttons": TWO_OPTIONS})

    def with_content(request) -> bool:
        return request.params.get("To") == address and "ContentSid" in request.params

    async with served([WhatsAppChannel(environment.settings())], assistant) as app:
        twilio_standin.fail_next(503, {"code": 20503, "message": "Service Unavailable", "status": 503}, with_content)
        await post_to_whatsapp(app, twilio_fields(address, "hola"))
        await whatsapp_replies(twilio_standin, address, 1)
        await app.idle()
        twilio_standin.stall_next(1.5, with_content)  # Twilio takes it, but answers too late
        await post_to_whatsapp(app, twilio_fields(address, "hola"))
        await eventually(lambda: len(twilio_standin.attempts(address)) == 3, what="the late answer")
        await app.idle()
        await asyncio.sleep(0.3)
    assert [(r.status, "ContentSid" in r.params) for r in twilio_standin.attempts(address)] == [
        (503, True),
        (201, True),
        (201, True),
    ], "retried after the 5xx; after the timeout, neither asked again nor sent as numbered text"
