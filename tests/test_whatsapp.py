"""WhatsApp through Twilio: webhooks signed as Twilio signs them, replies caught by the Twilio stand-in.

Replies arrive asynchronously (the channel answers Twilio at once and works in the background), so
tests wait for them with a deadline. Messages of one person are processed in order, so a last
message's reply proves that everything sent before it has been handled ("barrier").
"""

from __future__ import annotations

import datetime
import json
import random
import urllib.error

import pytest
from standins import (
    PUBLIC_URL,
    TOO_MANY_REQUESTS_TWILIO,
    TWILIO_AUTH_TOKEN,
    WHATSAPP_SIGNED_URL,
    WhatsAppPerson,
    run_async,
    user_messages,
    wait_for,
)
from twilio.request_validator import RequestValidator

from bot.handoff import HandoffStore
from bot.privacy import hash_id
from bot.settings import Settings
from channels._common import DeliveryError
from channels.whatsapp import WhatsAppSender


@pytest.fixture
def person(assistant, twilio_standin) -> WhatsAppPerson:
    return WhatsAppPerson(assistant.url, twilio_standin)


def thanks_reply(kb) -> str:
    return kb.main_entry("thank").messages[0]


# --- security ---------------------------------------------------------------------------


@pytest.mark.model
def test_unsigned_or_forged_requests_get_403_and_nothing_is_processed(person, kb):
    fields = person.fields("hola")
    assert person.post(fields, signature=None)[0] == 403
    assert person.post(fields, signature="forged")[0] == 403
    forged = RequestValidator("not-the-auth-token").compute_signature(WHATSAPP_SIGNED_URL, fields)
    assert person.post(fields, signature=forged)[0] == 403
    local_url = RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(person.webhook, fields)
    assert person.post(fields, signature=local_url)[0] == 403, "the signature covers the public URL"
    signed_original = RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(WHATSAPP_SIGNED_URL, fields)
    assert person.post(dict(fields, Body="quiero hablar con un asesor"), signature=signed_original)[0] == 403

    person.send("gracias")
    replies = person.wait_reply(thanks_reply(kb))
    assert len(replies) == 1, replies


# --- conversation -----------------------------------------------------------------------


@pytest.mark.model
def test_twilio_gets_empty_twiml_and_the_greeting_arrives_with_a_numbered_menu(person, kb):
    status, twiml = person.post(person.fields("hola"))
    assert status == 200 and "<Response" in twiml and "<Message" not in twiml
    replies = person.wait_reply("Responda con el número:")
    assert "asistente virtual" in replies[0]
    menu = replies[-1]
    for number, item in enumerate(kb.menu, 1):
        assert f"\n{number}. {item.title}" in menu
    assert not any("/work_abroad" in r or "payload" in r for r in replies), "payloads never reach the person"
    assert all(len(r) <= 1600 for r in replies)


@pytest.mark.model
def test_a_number_a_number_word_or_the_words_pick_a_menu_option(person, kb):
    person.send("hola")
    person.wait_reply("Responda con el número:")
    work_abroad = kb.main_entry("work_abroad").messages[0]
    person.send("1")
    person.wait_reply(work_abroad)
    person.send("hola")
    person.wait_reply("Responda con el número:", count=2)
    person.send("uno")
    person.wait_reply(work_abroad, count=2)
    person.send("hola")
    person.wait_reply("Responda con el número:", count=3)
    person.send("Quiero volver al Perú")
    person.wait_reply(kb.main_entry("return_to_peru").messages[0])


@pytest.mark.model
def test_the_same_message_sid_twice_is_answered_once(person, kb):
    fields = person.fields("hola")
    assert person.post(fields)[0] == 200
    assert person.post(fields)[0] == 200  # Twilio retrying
    person.send("gracias")
    replies = person.wait_reply(thanks_reply(kb))
    assert sum("asistente virtual" in r for r in replies) == 1, replies


@pytest.mark.model
def test_media_gets_a_clear_answer_and_is_kept_for_the_advisor(person, kb, assistant):
    media_answer = kb.entry("channels.media").messages[0]
    person.send("", NumMedia="1", MediaContentType0="audio/ogg", MediaUrl0="https://api.twilio.com/media/ME1")
    replies = person.wait_reply(media_answer)
    assert "1. Hablar con un asesor" in replies[-1]
    person.send("", Latitude="-12.0464", Longitude="-77.0428")
    person.wait_reply(media_answer, count=2)

    recorded = [m["metadata"] for m in user_messages(assistant.settings.sqlite_path, person.address, at_least=2)]
    media = [m["media"] for m in recorded if "media" in m]
    assert media[0] == [{"type": "audio/ogg", "url": "https://api.twilio.com/media/ME1"}]
    assert media[1] == [{"type": "location", "latitude": "-12.0464", "longitude": "-77.0428"}]
    assert all("received_at" in m for m in recorded)


@pytest.mark.model
def test_an_over_long_message_is_cut_and_the_person_told(person, kb, assistant):
    person.send("quiero trabajar en españa, que necesito? " * 60)
    replies = person.wait_reply(kb.entry("dest.spain.overview").messages[0])
    assert replies[0] == kb.entry("channels.too_long").messages[0]
    (stored,) = user_messages(assistant.settings.sqlite_path, person.address, at_least=1)
    assert 1000 < len(stored["text"]) <= 1500


@pytest.mark.model
def test_a_person_flooding_gets_one_polite_notice(person, kb):
    for _ in range(12):
        person.send("gracias")
    notice = kb.entry("channels.flood").messages[0]
    replies = person.wait_reply(notice)
    assert replies.count(notice) == 1
    assert sum(thanks_reply(kb) in r for r in replies) == 10


# --- delivery -----------------------------------------------------------------------------


@pytest.mark.model
def test_a_429_is_retried_and_the_message_delivered_once(person, twilio_standin, kb):
    twilio_standin.fail_next(429, TOO_MANY_REQUESTS_TWILIO, when=lambda r: r.params.get("To") == person.address)
    person.send("gracias")
    person.wait_reply(thanks_reply(kb))
    person.send("gracias")
    person.wait_reply(thanks_reply(kb), count=2)
    statuses = [r.status for r in twilio_standin.attempts(person.address)]
    assert statuses == [429, 201, 201]


@pytest.mark.model
def test_twilio_down_is_logged_and_the_server_keeps_answering(person, twilio_standin, assistant, kb):
    with twilio_standin.down():
        person.send("gracias")  # acknowledged although Twilio is unreachable
        wait_for(
            lambda: f"whatsapp: message to conversation {hash_id(person.address)} not delivered"
            in assistant.log_path.read_text(),
            what="the failed delivery in the server log",
        )
        assert "asistente virtual" in assistant.new().say_text("hola")
    person.send("gracias")
    assert len(person.wait_reply(thanks_reply(kb))) == 1, "back up: new messages arrive, the lost one is not resent"


@pytest.mark.model
def test_an_advisor_reply_reaches_the_person_on_whatsapp(person, advisor):
    person.send("quiero hablar con un asesor")
    person.wait_reply("puesto")
    advisor.write(advisor.take(person.address), "Hola, soy Rosa del SOM. ¿En qué país trabaja?")
    person.wait_reply("Hola, soy Rosa del SOM.")


@pytest.mark.model
def test_advisor_free_text_is_refused_after_whatsapps_24_hour_window(person, advisor, assistant, twilio_standin):
    person.send("quiero hablar con un asesor")
    person.wait_reply("puesto")
    handoff = advisor.take(person.address)
    store = HandoffStore(assistant.settings.handoff_database_url)
    with store.engine.begin() as connection:
        connection.execute(
            "update handoffs set last_person_message_at = :then where id = :id",
            {"then": datetime.datetime.utcnow() - datetime.timedelta(hours=25), "id": handoff},
        )
    sent_before = len(twilio_standin.bodies(person.address))
    with pytest.raises(urllib.error.HTTPError) as refused:
        advisor.write(handoff, "Hola, ¿sigue ahí?")
    assert refused.value.code == 409 and "24 horas" in json.loads(refused.value.read())["error"]
    assert len(twilio_standin.bodies(person.address)) == sent_before  # nothing went out


@pytest.mark.model
def test_after_a_message_without_options_a_number_is_just_a_number(person, advisor, kb):
    """The rating question after a hand-off has no options: "4" is the rating, not menu option 4."""
    person.send("hola")
    person.wait_reply("Responda con el número:")
    person.send("quiero hablar con un asesor")
    person.wait_reply("puesto")
    handoff = advisor.take(person.address)
    advisor.close(handoff)
    person.wait_reply("calificaría")
    person.send("4")
    replies = person.wait_reply(kb.entry("handoff.rating_thanks").messages[0])
    assert not any(kb.main_entry("returned_migrant").messages[0] in r for r in replies)


# --- sender, in process -----------------------------------------------------------------


def test_a_long_message_reaches_twilio_split_in_order(twilio_standin):
    settings = Settings.from_env({**twilio_standin.env(), "PUBLIC_URL": PUBLIC_URL})
    address = f"whatsapp:+519{random.randrange(10**8):08d}"
    text = " ".join(f"Paso {n}: presente el documento {n} en la ventanilla." for n in range(80))

    async def send() -> None:
        sender = WhatsAppSender(settings)
        await sender.send(address, text, (("Sí", "/affirm"), ("No", "/deny")))
        await sender.close()

    run_async(send())
    bodies = twilio_standin.bodies(address)
    assert len(bodies) == 3 and all(len(b) <= 1600 for b in bodies)
    assert " ".join(bodies).startswith(text)
    assert bodies[-1].endswith("Responda con el número:\n1. Sí\n2. No")


@pytest.mark.parametrize(
    "status, attempts, delivered",
    [(500, [500, 201], True), (503, [503, 201], True), (400, [400], False), (401, [401], False)],
)
def test_only_errors_where_twilio_took_nothing_are_retried(twilio_standin, status, attempts, delivered):
    settings = Settings.from_env({**twilio_standin.env(), "PUBLIC_URL": PUBLIC_URL})
    address = f"whatsapp:+519{random.randrange(10**8):08d}"
    error = {"code": 20000 + status, "message": "error", "status": status}
    twilio_standin.fail_next(status, error, when=lambda r: r.params.get("To") == address)

    async def send() -> bool:
        sender = WhatsAppSender(settings)
        try:
            await sender.send(address, "Buenos días.")
            return True
        except DeliveryError:
            return False
        finally:
            await sender.close()

    assert run_async(send()) is delivered
    assert [r.status for r in twilio_standin.attempts(address)] == attempts
