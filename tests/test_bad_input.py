"""Hostile and malformed requests against every public endpoint of a running assistant.

Every case must get a 4xx with a clear error or a sensible 2xx answer; nothing may crash the
server (no 5xx), and it must still answer normally afterwards.
"""

from __future__ import annotations

import http.client
import json
import urllib.parse
import uuid
from collections import Counter
from dataclasses import dataclass

import pytest
from standins import PUBLIC_URL, TELEGRAM_WEBHOOK_SECRET, TWILIO_AUTH_TOKEN
from twilio.request_validator import RequestValidator

from bot.settings import WHATSAPP_WEBHOOK_PATH

pytestmark = pytest.mark.model
JSON = {"Content-Type": "application/json"}
BIG_TEXT = "a" * 100_000
HOSTILE_TEXTS = [
    "", "   ", BIG_TEXT, "\x00\x01\x02 control \x1b[31m", "😀🙏🇵🇪", "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>", "'; DROP TABLE events; --", "1 OR 1=1", "%s%s%s%n", "{{7*7}}",
    "\u202eRTL override", "ñandú ÁÉÍÓÚ", "/restart", '/human_handoff{"x": 1}', "null",
]  # fmt: skip


@dataclass
class Case:
    name: str
    method: str
    path: str
    body: bytes | None
    headers: dict[str, str]


def rest_cases() -> list[Case]:
    cases = [
        Case(f"rest text {i}", "POST", "/webhooks/rest/webhook",
             json.dumps({"sender": f"bad-{uuid.uuid4()}", "message": text}).encode(), JSON)
        for i, text in enumerate(HOSTILE_TEXTS)
    ]  # fmt: skip
    raw = {
        "empty body": b"", "not json": b"hola", "truncated json": b'{"sender": "x", "message": "ho',
        "json array": b"[]", "json number": b"42", "invalid utf-8": b'{"sender": "x", "message": "\xff\xfe"}',
        "missing message": b'{"sender": "x"}', "missing sender": b'{"message": "hola"}',
        "wrong types": b'{"sender": 5, "message": ["a"]}', "huge sender": json.dumps({"sender": "s" * 10_000, "message": "x"}).encode(),
        "huge json": json.dumps({"sender": "x", "message": "y", "pad": ["z" * 1000] * 2000}).encode(),
        "deep json": b'{"sender": "x", "message": "y", "m": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    }  # fmt: skip
    cases += [Case(f"rest {name}", "POST", "/webhooks/rest/webhook", body, JSON) for name, body in raw.items()]
    cases += [
        Case("rest text/plain", "POST", "/webhooks/rest/webhook", b"hola", {"Content-Type": "text/plain"}),
        Case("rest form", "POST", "/webhooks/rest/webhook", b"sender=x&message=hola",
             {"Content-Type": "application/x-www-form-urlencoded"}),
        Case("rest absurd header", "POST", "/webhooks/rest/webhook", b'{"sender":"x","message":"hola"}',
             {**JSON, "X-Absurd": "z" * 7000}),
        Case("rest GET webhook", "GET", "/webhooks/rest/webhook", None, {}),
    ]  # fmt: skip
    return cases


def whatsapp_cases() -> list[Case]:
    url = PUBLIC_URL + WHATSAPP_WEBHOOK_PATH
    form = {"From": "whatsapp:+51900000001", "To": "whatsapp:+14155238886", "NumMedia": "0"}

    def signed(name: str, fields: dict[str, str]) -> Case:
        signature = RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(url, fields)
        body = urllib.parse.urlencode(fields).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature}
        return Case(f"whatsapp {name}", "POST", WHATSAPP_WEBHOOK_PATH, body, headers)

    cases = [
        signed(f"text {i}", {**form, "Body": text, "MessageSid": f"SM{uuid.uuid4().hex}"})
        for i, text in enumerate(HOSTILE_TEXTS)
    ]
    cases += [
        signed("missing From", {"Body": "hola", "MessageSid": f"SM{uuid.uuid4().hex}"}),
        signed("no MessageSid", {**form, "Body": "hola"}),
        signed("absurd media count", {**form, "Body": "", "NumMedia": "9999", "MessageSid": f"SM{uuid.uuid4().hex}"}),
        Case("whatsapp unsigned", "POST", WHATSAPP_WEBHOOK_PATH, b"Body=hola", {"Content-Type": "application/x-www-form-urlencoded"}),
        Case("whatsapp json body", "POST", WHATSAPP_WEBHOOK_PATH, b'{"Body": "hola"}', JSON),
        Case("whatsapp invalid utf-8", "POST", WHATSAPP_WEBHOOK_PATH, b"Body=\xff\xfe",
             {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": "x"}),
    ]  # fmt: skip
    return cases


def telegram_cases() -> list[Case]:
    secret = {**JSON, "X-Telegram-Bot-Api-Secret-Token": TELEGRAM_WEBHOOK_SECRET}
    chat = {"id": 5550001, "type": "private"}

    def update(text: object) -> bytes:
        message = {
            "message_id": 1,
            "date": 1700000000,
            "chat": chat,
            "from": {"id": 5550001, "is_bot": False, "first_name": "A"},
            "text": text,
        }
        return json.dumps({"update_id": int(uuid.uuid4().int % 10**9), "message": message}).encode()

    cases = [
        Case(f"telegram text {i}", "POST", "/webhooks/telegram/webhook", update(t), secret)
        for i, t in enumerate(HOSTILE_TEXTS)
    ]
    cases += [
        Case("telegram no secret", "POST", "/webhooks/telegram/webhook", update("hola"), JSON),
        Case("telegram wrong secret", "POST", "/webhooks/telegram/webhook", update("hola"), {**JSON, "X-Telegram-Bot-Api-Secret-Token": "x"}),
        Case("telegram not json", "POST", "/webhooks/telegram/webhook", b"hola", secret),
        Case("telegram empty object", "POST", "/webhooks/telegram/webhook", b"{}", secret),
        Case("telegram wrong types", "POST", "/webhooks/telegram/webhook", b'{"update_id": "x", "message": 5}', secret),
        Case("telegram text not a string", "POST", "/webhooks/telegram/webhook", update({"a": 1}), secret),
    ]  # fmt: skip
    return cases


def socketio_and_advisor_cases() -> list[Case]:
    return [
        Case("socket.io junk query", "GET", "/socket.io/?EIO=999&transport=nonsense", None, {}),
        Case("socket.io junk post", "POST", "/socket.io/?EIO=4&transport=polling&sid=forged", b"\xff\x00junk", {"Content-Type": "text/plain"}),
        Case("history of a non-uuid", "GET", "/webhooks/socketio/history/..%2F..%2Fetc", None, {}),
        Case("advisor login not json", "POST", "/advisor/api/login", b"user=a", {"Content-Type": "text/plain"}),
        Case("advisor login wrong types", "POST", "/advisor/api/login", b'{"username": 1, "password": null}', JSON),
        Case("advisor login huge", "POST", "/advisor/api/login", json.dumps({"username": "u" * 100_000, "password": "p"}).encode(), JSON),
        Case("advisor api without token", "GET", "/advisor/api/handoffs", None, {}),
        Case("advisor api forged token", "GET", "/advisor/api/handoffs", None, {"Authorization": "Bearer ' OR 1=1 --"}),
        Case("advisor path traversal", "GET", "/advisor/static/..%2F..%2Fbot%2Fsettings.py", None, {}),
        Case("advisor unknown route", "DELETE", "/advisor/api/handoffs/1", None, {}),
    ]  # fmt: skip


def send(base: str, case: Case) -> tuple[int, bytes]:
    host, port = urllib.parse.urlsplit(base).netloc.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=120)
    try:
        connection.request(case.method, case.path, body=case.body, headers=case.headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_every_public_endpoint_survives_bad_input(assistant, capsys):
    cases = rest_cases() + whatsapp_cases() + telegram_cases() + socketio_and_advisor_cases()
    failures, tally = [], Counter()
    for case in cases:
        status, body = send(assistant.url, case)
        tally[f"{status // 100}xx"] += 1
        if status >= 500:
            failures.append(f"{case.name}: {status} {body[:200]!r}")
        elif case.name.startswith("rest text") and status == 200 and not json.loads(body):
            failures.append(f"{case.name}: no answer")  # a valid REST message always gets a reply
        elif (
            status >= 400
            and body
            and "json" in case.headers.get("Content-Type", "")
            and case.path.startswith("/advisor")
        ):
            if "error" not in json.loads(body):
                failures.append(f"{case.name}: {status} without a clear error")
    with capsys.disabled():
        print(
            f"\nbad-input suite: {len(cases)} cases tried against REST, WhatsApp, Telegram, socket.io and the "
            f"advisor API: {dict(sorted(tally.items()))}"
        )
    assert not failures, "\n".join(failures)
    assert len(cases) >= 50
    assert "asistente virtual" in assistant.new().say_text("hola")  # still up and answering
