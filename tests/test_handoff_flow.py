"""The whole hand-off through a real Rasa server, action server and the advisor API."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from bot.handoff import HandoffStore

pytestmark = pytest.mark.model


class AdvisorClient:
    def __init__(self, base: str, token: str | None = None) -> None:
        self.base = f"{base}/advisor/api"
        self.token = token

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else (b"{}" if method == "POST" else None)
        request = urllib.request.Request(self.base + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")

    def handoff_of(self, conversation_id: str, status: str = "waiting") -> dict:
        _, body = self.call("GET", f"/handoffs?status={status}")
        return next(h for h in body["handoffs"] if h["conversation_id"] == conversation_id)


@pytest.fixture(scope="module")
def advisors(assistant):
    store = HandoffStore(assistant.settings.handoff_database_url)
    clients = []
    for username, name in (("ana.flujo", "Ana"), ("luis.flujo", "Luis")):
        store.add_advisor(username, "clave-de-prueba-123", name)
        status, body = AdvisorClient(assistant.url).call(
            "POST", "/login", {"username": username, "password": "clave-de-prueba-123"}
        )
        assert status == 200
        clients.append(AdvisorClient(assistant.url, body["token"]))
    return clients


def test_advisors_see_the_whole_conversation_before_a_long_one_is_handed_off(assistant, advisors):
    ana, _ = advisors
    person = assistant.new()
    questions = [
        "hola, soy de arequipa", "quiero trabajar en italia", "y para españa?", "como se si una agencia es formal",
        "estoy en argentina y no me pagan", "y si estoy en chile?", "mis aportes de afuera me sirven?", "gracias",
    ]  # fmt: skip
    for text in questions:
        assert person.say(text)
    person.say("quiero hablar con un asesor")
    _, detail = ana.call("GET", f"/handoffs/{ana.handoff_of(person.sender)['id']}")
    record = [(line["author"], line["text"]) for line in detail["transcript"]]
    everything = [(line["author"], line["text"]) for line in detail["earlier"]] + record
    assert ("person", questions[0]) not in record  # the record keeps the recent turns only
    assert [text for author, text in everything if author == "person"] == questions + ["quiero hablar con un asesor"]


def test_person_to_advisor_and_back(assistant, advisors):
    ana, luis = advisors
    person = assistant.new()
    person.say("hola")
    person.say("tengo aportes en chile")
    queued = person.say_text("quiero hablar con un asesor")
    assert "puesto" in queued

    handoff = ana.handoff_of(person.sender)
    assert handoff["profile"]["país"] == "Chile" and handoff["reason"] == "requested"
    assert person.say("es sobre mi pension de chile") == []  # the assistant stays quiet

    assert ana.call("POST", f"/handoffs/{handoff['id']}/claim")[0] == 200
    assert luis.call("POST", f"/handoffs/{handoff['id']}/messages", {"text": "hola"})[0] == 403
    assert ana.call("POST", f"/handoffs/{handoff['id']}/messages", {"text": "Hola, ¿en qué país aportó?"})[0] == 201
    assert ana.call("POST", f"/handoffs/{handoff['id']}/notes", {"text": "posible caso CMISS"})[0] == 201
    assert person.say("en chile, 5 años") == []

    _, detail = ana.call("GET", f"/handoffs/{handoff['id']}")
    lines = [(line["author"], line["text"]) for line in detail["transcript"]]
    assert ("person", "tengo aportes en chile") in lines  # what happened before the hand-off
    assert ("person", "es sobre mi pension de chile") in lines  # written while waiting
    assert ("advisor", "Hola, ¿en qué país aportó?") in lines and ("note", "posible caso CMISS") in lines
    assert lines[-1] == ("person", "en chile, 5 años")

    assert ana.call("POST", f"/handoffs/{handoff['id']}/close")[0] == 200
    assert "Gracias por su calificación" in person.say_text("4")
    assert ana.call("GET", f"/handoffs/{handoff['id']}")[1]["handoff"]["rating"] == 4
    assert "SIVITMA" in person.say_text("soy boliviano y tengo contrato en lima")  # the assistant is back


def test_cancel_leaves_the_queue_and_shows_the_menu(assistant, advisors):
    person = assistant.new()
    person.say("necesito hablar con una persona")
    messages = person.say("cancelar")
    assert "salió de la fila" in messages[0]["text"]
    assert any(m.get("buttons") for m in messages)  # the menu
    assert all(h["conversation_id"] != person.sender for h in advisors[0].call("GET", "/handoffs")[1]["handoffs"])


def test_two_advisors_claiming_at_once_one_wins(assistant, advisors):
    person = assistant.new()
    person.say("quiero hablar con un asesor")
    handoff = advisors[0].handoff_of(person.sender)
    with ThreadPoolExecutor(2) as pool:
        codes = sorted(pool.map(lambda c: c.call("POST", f"/handoffs/{handoff['id']}/claim")[0], advisors))
    assert codes == [200, 409]


def test_unclaimed_hand_off_times_out_and_takes_a_message(assistant, advisors):
    person = assistant.new()
    person.say("pasame con un asesor por favor")
    deadline = time.monotonic() + assistant.settings.handoff_wait_minutes * 60 + 30
    while time.monotonic() < deadline:
        if advisors[0].handoff_of(person.sender)["mode"] == "message":
            break
        time.sleep(1)
    assert advisors[0].handoff_of(person.sender)["mode"] == "message"
    assert "quedó registrado" in person.say_text("por favor llamenme al correo ana@correo.pe")


@pytest.mark.parametrize(
    "method, path, body",
    [("GET", "/handoffs", None), ("GET", "/handoffs/1", None), ("POST", "/handoffs/1/claim", None),
     ("POST", "/handoffs/1/messages", {"text": "x"}), ("POST", "/handoffs/1/close", None)],
)  # fmt: skip
def test_api_requires_a_valid_token(assistant, method, path, body):
    assert AdvisorClient(assistant.url).call(method, path, body)[0] == 401
    assert AdvisorClient(assistant.url, "forged-token").call(method, path, body)[0] == 401


def test_unknown_hand_off_and_bad_bodies(assistant, advisors):
    assert advisors[0].call("GET", "/handoffs/999999")[0] == 404
    assert advisors[0].call("GET", "/handoffs?status=nope")[0] == 400
    assert advisors[0].call("POST", "/handoffs/999999/messages", {"text": ""})[0] == 400


def test_login_is_rate_limited(assistant):
    client = AdvisorClient(assistant.url)
    codes = [client.call("POST", "/login", {"username": "nadie", "password": "mala"})[0] for _ in range(7)]
    assert codes[:5] == [401] * 5 and codes[-1] == 429
