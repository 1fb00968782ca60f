"""The patches of `extensions.patches`: installed only on purpose and only where they fit, and each
giving Rasa's own answers, only cheaper (a contract test per patch against Rasa's original)."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys

import jsonschema
import pytest
import rasa
from aiohttp import web
from rasa.core.actions.action import RemoteAction
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import Event, SlotSet, UserUttered
from rasa.shared.utils.common import all_subclasses
from rasa.utils.endpoints import EndpointConfig

from bot.settings import PROJECT_ROOT
from extensions import patches
from extensions.patches import Patch, action_result, endpoint_session


@pytest.fixture
def installed():
    """The patches on for one test, Rasa's own code again after it."""
    yield patches.install({})
    for patch in patches.all_patches():
        patch.uninstall()


def test_importing_the_project_patches_nothing():
    code = (
        "import channels, channels.whatsapp, channels.telegram, channels.advisor, extensions.nlu\n"
        "from extensions import patches\n"
        "assert not any(p.is_installed() for p in patches.all_patches())\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, check=True, timeout=120)


def test_each_patch_was_written_against_this_rasa():
    """Fails on a Rasa upgrade that changed a patched function: re-read it, re-test, re-hash."""
    for patch in patches.all_patches():
        assert patch.fits() is None, patch.name


def test_install_is_idempotent_and_says_what_is_on(caplog):
    caplog.set_level(logging.INFO, logger=patches.__name__)
    try:
        first = patches.install({})
        second = patches.install({})
        assert first == second == ["action_result", "event_lookup", "endpoint_session", "graph_runner", "empty_domain"]
        assert all(patch.is_installed() for patch in patches.all_patches())
        assert caplog.messages[-1] == "Rasa patches on: " + ", ".join(first)
    finally:
        for patch in patches.all_patches():
            patch.uninstall()
    assert not any(patch.is_installed() for patch in patches.all_patches())


def test_a_switch_turns_all_patches_off(caplog):
    caplog.set_level(logging.INFO, logger=patches.__name__)
    assert patches.install({"SOM_RASA_PATCHES": "off"}) == []
    assert not any(patch.is_installed() for patch in patches.all_patches())
    assert "Rasa patches off" in caplog.messages[-1]


def test_a_patch_is_not_installed_on_another_rasa_or_another_source(caplog, monkeypatch):
    class Owner:
        def method(self) -> str:
            return "rasa"

    changed = Patch("changed", Owner, "method", lambda self: "ours", "0" * 64)
    assert "not the source" in changed.fits()
    this_source = Patch("probe", Owner, "method", None, "").source_sha256()
    fitting = Patch("fitting", Owner, "method", lambda self: "ours", this_source)
    assert fitting.fits() is None
    monkeypatch.setattr(rasa, "__version__", "3.7.0")
    assert "3.7.0" in fitting.fits()
    caplog.set_level(logging.INFO, logger=patches.__name__)
    assert patches.install({}) == []
    assert Owner().method() == "rasa" and not any(p.is_installed() for p in patches.all_patches())
    assert any("not installed: Rasa 3.7.0" in message for message in caplog.messages)


VALID_ANSWER = {
    "events": [
        {"event": "slot", "name": "country", "value": "Chile", "timestamp": None},
        {"event": "bot", "text": "hola", "data": {"buttons": [{"title": "Sí", "payload": "/affirm"}]}},
        {"event": "action", "name": "action_listen"},
    ],
    "responses": [{"text": "Para trabajar en Chile…", "buttons": [{"title": "Menú", "payload": "/show_menu"}]}],
}
INVALID_ANSWERS = [
    [],
    {"events": "x"},
    {"events": [{}]},
    {"events": [{"event": 7}]},
    {"events": [{"event": "no_such_event"}]},
    {"events": [{"event": "slot"}]},
    {"events": [{"event": "slot", "name": 3, "value": 1}]},
    {"events": [{"event": "slot", "name": "a", "value": 1, "timestamp": "ayer"}]},
    {"events": [{"event": "user", "parse_data": {"intent": {"name": 3}}}]},
    {"responses": [1]},
]


def rasa_verdict(answer) -> str | None:
    try:
        jsonschema.validate(answer, RemoteAction.action_response_format_spec())
    except jsonschema.ValidationError as error:
        return error.message
    return None


def test_action_answers_are_still_validated_against_rasas_schema(installed):
    assert RemoteAction._validate_action_result is action_result.validate_action_result
    for answer in [VALID_ANSWER, {}, {"events": []}]:
        assert rasa_verdict(answer) is None
        assert RemoteAction("action_answer", None)._validate_action_result(answer) is True
    for answer in INVALID_ANSWERS:
        expected = rasa_verdict(answer)
        assert expected is not None
        with pytest.raises(jsonschema.ValidationError) as raised:
            RemoteAction("action_answer", None)._validate_action_result(answer)
        assert raised.value.message.startswith(expected)


def test_event_classes_are_found_as_rasa_finds_them(installed):
    names = {event_class.type_name for event_class in all_subclasses(Event)}
    for name in names:
        expected = next(c for c in all_subclasses(Event) if c.type_name == name)
        assert Event.resolve_by_type(name) is expected
    assert Event.resolve_by_type("slot") is SlotSet and Event.resolve_by_type("user") is UserUttered
    assert Event.resolve_by_type("topic") is None  # Rasa's backwards compatibility
    assert Event.resolve_by_type("no_such_event", default=SlotSet) is SlotSet
    with pytest.raises(ValueError):
        Event.resolve_by_type("no_such_event")


async def _requests_and_peers(pauses: list[float]) -> tuple[list, list]:
    """Send one request, then one more after each pause; the answers and each request's client port."""
    peers = []

    async def webhook(request: web.Request) -> web.Response:
        peers.append(request.transport.get_extra_info("peername"))
        return web.json_response({"events": [], "responses": []})

    app = web.Application()
    app.router.add_post("/webhook", webhook)
    runner = web.AppRunner(app, keepalive_timeout=5.0)  # what the action server (Sanic) keeps
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    endpoint = EndpointConfig(f"http://127.0.0.1:{port}/webhook")
    try:
        answers = [await endpoint.request(json={"n": 0}, method="post")]
        for n, pause in enumerate(pauses, start=1):
            await asyncio.sleep(pause)
            answers.append(await endpoint.request(json={"n": n}, method="post"))
    finally:
        await runner.cleanup()
    return answers, peers


def test_requests_to_an_endpoint_share_one_connection(installed):
    answers, peers = asyncio.run(_requests_and_peers([0, 0, 0, 0]))
    assert answers == [{"events": [], "responses": []}] * 5
    assert len(set(peers)) == 1  # Rasa alone would open five connections


def test_idle_connections_are_dropped_before_the_server_drops_them(installed):
    """Reusing a connection the server is closing loses the action call ("closing transport")."""
    pause = endpoint_session.IDLE_CONNECTION_SECONDS + 0.5  # still open on the server side
    answers, peers = asyncio.run(_requests_and_peers([pause]))
    assert answers == [{"events": [], "responses": []}] * 2
    assert peers[0] != peers[1]


def test_the_empty_domain_is_still_recognised(installed):
    assert Domain.empty().is_empty()
    assert not Domain.from_dict({"intents": ["greet"]}).is_empty()
