"""The web chat's socket.io channel: session ids, origins, tokens, history and one bubble per message."""

from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid

import jwt
import pytest
import socketio
from rasa.shared.core.events import BotUttered, UserUttered

from channels.socketio import (
    Origins,
    WebChatOutput,
    WebChatSocketIO,
    bound_session,
    client_manager,
    is_session_id,
    transcript,
)


def test_only_canonical_uuid4_is_a_session_id():
    assert is_session_id(str(uuid.uuid4()))
    for other in (None, "", "1234", str(uuid.uuid1()), str(uuid.uuid4()).upper(), uuid.uuid4().hex, 42):
        assert not is_session_id(other)


def test_origins_own_listed_or_any():
    own = ("som.trabajo.gob.pe", "https")
    origins = Origins(["https://www.gob.pe/"])
    assert origins.allows("https://som.trabajo.gob.pe", *own)
    assert origins.allows("https://www.gob.pe", *own)
    assert origins.allows(None, *own)  # not a browser page: curl, a server
    assert not origins.allows("https://otro-sitio.example", *own)
    assert not origins.allows("http://som.trabajo.gob.pe", *own)  # another scheme is another origin
    assert Origins(["*"]).allows("https://otro-sitio.example", *own)
    behind_proxy = {
        "HTTP_HOST": "127.0.0.1:5005",
        "HTTP_X_FORWARDED_HOST": "som.trabajo.gob.pe",
        "wsgi.url_scheme": "https",
    }
    assert Origins([]).allows_socket("https://som.trabajo.gob.pe", behind_proxy)


def test_transcript_shows_what_the_person_saw():
    menu = [{"title": "Quiero trabajar afuera", "payload": "/work_abroad"}]
    events = [
        UserUttered("/greet", timestamp=1.0),
        BotUttered("¡Hola!", {"buttons": menu}, timestamp=2.0),
        UserUttered("/work_abroad", metadata={"shown_text": "Quiero trabajar afuera"}, timestamp=3.0),
        UserUttered("hola", metadata={"received_at": 3.5}, timestamp=4.0),
        BotUttered("Le saluda Rosa", metadata={"author": "advisor:Rosa"}, timestamp=5.0),
        BotUttered("", timestamp=6.0),
    ]
    assert transcript(events) == [
        {"role": "bot", "text": "¡Hola!", "buttons": menu, "advisor": None, "ts": 2.0},
        {"role": "user", "text": "Quiero trabajar afuera", "ts": 3.0},
        {"role": "user", "text": "hola", "ts": 3.5},
        {"role": "bot", "text": "Le saluda Rosa", "buttons": [], "advisor": "Rosa", "ts": 5.0},
    ]  # fmt: skip


def test_redis_manager_only_with_redis_url():
    assert client_manager("", "som") is None
    manager = client_manager("redis://127.0.0.1:6379/0", "som")
    assert isinstance(manager, socketio.AsyncRedisManager) and manager.channel == "som:socketio"


def test_optional_jwt():
    assert WebChatSocketIO().authorised(None)
    channel = WebChatSocketIO(jwt_key="clave-secreta-del-portal-de-32-bytes")
    assert channel.authorised(jwt.encode({"sub": "portal"}, "clave-secreta-del-portal-de-32-bytes"))
    assert not channel.authorised(jwt.encode({"sub": "portal"}, "otra-clave-distinta-de-al-menos-32-bytes"))
    assert not channel.authorised(None)


def test_a_token_with_a_subject_is_bound_to_one_conversation():
    key = "clave-secreta-del-portal-de-32-bytes"
    channel = WebChatSocketIO(jwt_key=key)
    claims = channel.claims(jwt.encode({"sub": "persona-17"}, key))
    assert claims["sub"] == "persona-17"
    assert is_session_id(bound_session("persona-17")) and bound_session("persona-17") == bound_session("persona-17")
    assert bound_session("persona-17") != bound_session("persona-18")
    assert WebChatSocketIO().claims(None) == {}  # JWT off: nothing to bind


def test_one_bubble_per_message_with_what_the_widget_needs():
    class Recorder:
        def __init__(self):
            self.emitted = []

        async def emit(self, event, data, room):
            self.emitted.append((event, data, room))

    recorder = Recorder()
    output = WebChatOutput(recorder, "bot_uttered", kept=False)
    buttons = [{"title": "Sí", "payload": "/affirm"}]
    asyncio.run(output.send_text_with_buttons("sesion", "Uno.\n\nDos.", buttons, timestamp=7.0))
    assert recorder.emitted == [
        (
            "bot_uttered",
            {
                "text": "Uno.\n\nDos.",
                "metadata": {"ts": 7.0, "kept": False, "advisor": None},
                "quick_replies": [{"content_type": "text", "title": "Sí", "payload": "/affirm"}],
            },
            "sesion",
        )
    ]


@pytest.mark.model
def test_session_ids_are_uuid4_chosen_by_the_server_and_origins_are_checked(assistant):
    async def confirmed_session(requested, origin=assistant.url) -> str:
        client = socketio.AsyncClient()
        confirmed = asyncio.get_running_loop().create_future()
        client.on("session_confirm", lambda session_id: confirmed.set_result(session_id))
        # Long-polling: python-engineio's WebSocket client needs a newer aiohttp than Rasa pins.
        await client.connect(assistant.url, headers={"Origin": origin}, transports=["polling"])
        try:
            assert "error" in await client.call("user_uttered", {"message": "hola"})  # no session yet
            await client.emit("session_request", {"session_id": requested})
            return await asyncio.wait_for(confirmed, 10)
        finally:
            await client.disconnect()

    chosen = str(uuid.uuid4())
    assert asyncio.run(confirmed_session(chosen)) == chosen  # the id the server gave before is kept
    for guessable in (None, "1234", "usuario@correo.pe", str(uuid.uuid1()), chosen.upper()):
        replaced = asyncio.run(confirmed_session(guessable))
        assert is_session_id(replaced) and replaced != guessable
    with pytest.raises(socketio.exceptions.ConnectionError):
        asyncio.run(confirmed_session(None, origin="https://otro-sitio.example"))


@pytest.mark.model
def test_history_is_only_for_web_chat_conversations(assistant):
    rest_conversation = assistant.new()
    rest_conversation.sender = str(uuid.uuid4())  # a REST sender id that happens to be a UUIDv4
    rest_conversation.say("hola")
    for session_id in (rest_conversation.sender, "no-es-un-uuid"):
        with urllib.request.urlopen(f"{assistant.url}/webhooks/socketio/history/{session_id}", timeout=10) as reply:
            assert json.load(reply) == {"messages": []}
