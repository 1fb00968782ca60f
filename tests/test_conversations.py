"""End-to-end conversations through the REST channel of a real Rasa server and action server."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from bot.privacy import hash_id

pytestmark = pytest.mark.model


def test_hola_greets_with_the_menu_of_seven_audiences(assistant):
    messages = assistant.new().say("hola")
    assert "asistente virtual" in messages[0]["text"]
    menu = [b for m in messages for b in m.get("buttons") or []]
    assert len(menu) == 7 and menu[0]["payload"] == "/work_abroad"


def test_menu_button_payload_answers_that_audience(assistant):
    conversation = assistant.new()
    conversation.say("hola")
    assert "30001" in conversation.say_text("/return_to_peru")


@pytest.mark.parametrize(
    "message, facts",
    [
        ("soy boliviano y tengo contrato para trabajar en una empresa de lima", ["SIVITMA", "empleador"]),
        ("cual es el numero de telefono para llamar al som", ["0800-16872"]),
        ("aporte 10 años en españa, eso me sirve para jubilarme en peru?", ["España", "2003"]),
        (
            "quiero regresar al peru el proximo año despues de 8 años afuera, q beneficios hay",
            ["30001", "Tarjeta del Migrante Retornado"],
        ),
        ("me ofrecen chamba en japon pero la agencia me pide pagar 2000 dolares por adelantado", ["no se compra"]),
        ("me ofrecen chamba afuera pero la agencia me pide pagar 2000 dolares por adelantado", ["1818"]),
        ("quiero irme a trabajar a italia, que necesito", ["visa"]),
        ("estoy en argentina y mi jefe no me paga hace dos meses", ["consulado"]),
        ("mi hijo trabaja en chile y no le quieren pagar, como lo ayudo", ["Dirección del Trabajo", "Consulado"]),
        ("regrese de italia hace un mes y busco chamba", ["Centros de Empleo"]),
        ("soy venezolano, puedo trabajar en peru?", ["no es miembro de la Comunidad Andina"]),
        ("que es el servicio de orientacion al migrante", ["gratuit"]),
        ("eres un robot?", ["asistente virtual"]),
    ],
)
def test_each_audience_gets_its_key_facts(assistant, message, facts):
    text = assistant.new().say_text(message)
    for fact in facts:
        assert fact in text, f"{fact!r} missing from the answer to {message!r}:\n{text}"


def test_follow_up_keeps_the_topic_and_answers_for_the_new_country(assistant):
    conversation = assistant.new()
    first = conversation.say_text("mis aportes de afuera me sirven para la pension?")
    assert "¿De qué país" in first
    follow_up = conversation.say_text("y con chile?")
    assert "Perú y Chile" in follow_up


def test_gibberish_twice_asks_did_you_mean_then_offers_an_advisor(assistant):
    conversation = assistant.new()
    assert "¿Quiso decir" in conversation.say_text("qwpoe rtuy")
    second = conversation.say("lkjh gfds mnbv")
    payloads = [b["payload"] for m in second for b in m.get("buttons") or []]
    assert "/human_handoff" in payloads


def test_turn_log_has_one_line_per_message_without_personal_data(assistant):
    conversation = assistant.new()
    conversation.say("hola")
    conversation.say("mi telefono es 987654321, necesito ayuda con mi pension")
    log = assistant.log_path.read_text()
    lines = [line for line in log.splitlines() if f"turn conversation={hash_id(conversation.sender)}" in line]
    assert len(lines) == 2
    assert "channel=rest" in lines[1] and "intent=social_security" in lines[1] and "actions=action_answer" in lines[1]
    assert "latency_ms=" in lines[1]
    assert "987654321" not in log and conversation.sender not in log


@pytest.mark.parametrize(
    "body, content_type",
    [
        (b"", "application/json"),
        (b"not json", "application/json"),
        (b"[1, 2]", "application/json"),
        (b'{"message": "hola"}', "application/json"),
        (b'{"sender": "", "message": "hola"}', "application/json"),
        (b'{"sender": "a", "message": 42}', "application/json"),
        (b'{"sender": "a", "message": "hola"', "application/json"),
    ],
)
def test_malformed_rest_requests_get_a_clear_400(assistant, body, content_type):
    request = urllib.request.Request(f"{assistant.url}/webhooks/rest/webhook", body, {"Content-Type": content_type})
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(request, timeout=30)
    assert error.value.code == 400
    assert "error" in json.loads(error.value.read())


@pytest.mark.parametrize("text", ["", "   ", "😀😀😀", "<script>alert(1)</script>"])
def test_odd_but_valid_messages_get_a_sensible_reply(assistant, text):
    messages = assistant.new().say(text)
    assert messages and all(m.get("text") for m in messages)
