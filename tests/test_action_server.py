"""The locked doors between the servers, tried with real processes started the way `ops.runner`
starts them: the action server wants the shared token and listens on loopback only, and Rasa's HTTP
API token never appears on a command line."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from unittest import mock

import pytest

from bot.handoff import HandoffStore
from bot.settings import PROJECT_ROOT, Settings
from extensions import serve
from extensions.action_server import TOKEN_HEADER
from ops import runner
from ops.runner import free_port

API_TOKEN = "api-token-for-this-test-0123456789"
# The embedded profile, whatever this machine's environment says; each test sets what it tries.
PROFILE_VARIABLES = (
    "ACTION_TOKEN", "ACTION_HOST", "ACTION_URL", "DATABASE_URL", "REDIS_URL", "AMQP_URL", "RASA_ENABLE_API",
    "RASA_API_TOKEN",
)  # fmt: skip


def _wait_for(url: str, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{url}: the server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"{url} did not answer in {timeout:.0f} s")


def _stack(tmp_path: Path, **env: str) -> runner.Stack:
    """A supervisor on free ports in its own var dir, with no model: Rasa then serves without an agent."""
    (tmp_path / "models").mkdir(exist_ok=True)
    outside = {k: v for k, v in os.environ.items() if k not in PROFILE_VARIABLES}
    settings = Settings.from_env(
        {**outside, "SOM_VAR_DIR": str(tmp_path / "var"), "RASA_PORT": str(free_port()),
         "ACTION_PORT": str(free_port()), **env}
    )  # fmt: skip
    return runner.Stack(settings, tmp_path / "models", log=open(tmp_path / "servers.log", "w"))


@pytest.fixture(scope="module")
def action_server(tmp_path_factory):
    """The action server as `python -m bot run` starts it: ACTION_TOKEN unset, so the supervisor makes one."""
    stack = _stack(tmp_path_factory.mktemp("actions"))
    stack.prepare()
    stack.start_process("actions")
    try:
        _wait_for(f"http://127.0.0.1:{stack.settings.action_port}/health", stack.processes["actions"])
        yield stack
    finally:
        stack.stop()
        stack.log.close()


def _action_call(sender: str) -> dict:
    """What Rasa posts when a person asks for an advisor: `action_answer` then opens a hand-off."""
    return {
        "next_action": "action_answer", "sender_id": sender, "version": "3.6.21", "domain": {},
        "tracker": {
            "sender_id": sender, "slots": {}, "events": [], "paused": False, "followup_action": None,
            "active_loop": {}, "latest_action_name": "action_listen", "latest_input_channel": "rest",
            "latest_message": {"text": "quiero hablar con un asesor", "entities": [], "intent_ranking": [],
                               "intent": {"name": "human_handoff", "confidence": 0.99}},
        },
    }  # fmt: skip


def _post(port: int, body: dict, headers: dict[str, str]) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/webhook", json.dumps(body).encode(), {"Content-Type": "application/json", **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_a_call_without_the_token_or_with_another_is_refused_and_opens_nothing(action_server):
    port, store = action_server.settings.action_port, HandoffStore(action_server.settings.handoff_database_url)
    sender = f"whatsapp:+5199{uuid.uuid4().int % 10**7:07d}"
    assert _post(port, _action_call(sender), {}) == 401
    assert _post(port, _action_call(sender), {TOKEN_HEADER: "not-the-token-0123456789"}) == 403
    assert _post(port, _action_call(sender), {TOKEN_HEADER: action_server.settings.action_token[:-1]}) == 403
    assert store.open_for(sender) is None
    assert _post(port, _action_call(sender), {TOKEN_HEADER: action_server.settings.action_token}) == 200
    assert store.open_for(sender) is not None


def test_health_stays_open_and_the_action_list_does_not(action_server):
    port = action_server.settings.action_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
        assert json.load(response) == {"status": "ok"}
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/actions", timeout=5)
    assert refused.value.code == 401


def test_rasa_client_sends_the_token_from_the_endpoints_file_we_write(action_server):
    """Rasa's own endpoint client (what RemoteAction.run calls), configured from var/endpoints.yml."""
    from rasa.core.utils import AvailableEndpoints
    from rasa.utils.endpoints import ClientResponseError

    _, endpoints_file = runner.write_runtime_config(action_server.settings)
    assert action_server.settings.action_token not in endpoints_file.read_text()

    def call(token: str) -> dict:
        with mock.patch.dict(os.environ, {"ACTION_TOKEN": token}):
            endpoint = AvailableEndpoints.read_endpoints(str(endpoints_file)).action
        return asyncio.run(endpoint.request(json=_action_call(f"rest:{uuid.uuid4()}"), method="post", timeout=30))

    assert call(action_server.settings.action_token)["responses"]
    with pytest.raises(ClientResponseError) as refused:
        call("a-token-from-another-start-0123")
    assert refused.value.status == 403


def test_it_listens_on_loopback_only_by_default(action_server):
    """127.0.0.2 is this machine too, but not the interface the server bound."""
    port = action_server.settings.action_port
    socket.create_connection(("127.0.0.1", port), timeout=2).close()
    for address in _other_addresses():
        with pytest.raises(OSError):
            socket.create_connection((address, port), timeout=2).close()


def _other_addresses() -> list[str]:
    """Addresses of this machine that are not 127.0.0.1."""
    addresses = {"127.0.0.2"}
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
            addresses.add(probe.getsockname()[0])
    except OSError:
        pass
    return sorted(addresses - {"127.0.0.1", "0.0.0.0"})


def test_the_command_lines_hold_no_secret(action_server):
    """What any user of the machine sees in `ps`: the running children's real command lines."""
    cmdline = Path(f"/proc/{action_server.processes['actions'].pid}/cmdline").read_bytes().decode()
    assert "extensions.action_server" in cmdline
    assert action_server.settings.action_token not in cmdline


def _entry_point(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in runner.child_env().items() if not k.startswith("ACTION_")}
    return subprocess.run(
        [sys.executable, "-m", "extensions.action_server", "--port", str(free_port()), *args],
        cwd=PROJECT_ROOT, env={**base, **env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_the_entry_point_refuses_to_start_unlocked():
    missing = _entry_point({})
    assert missing.returncode == 2 and "ACTION_TOKEN" in missing.stderr
    short_outside = _entry_point({"ACTION_TOKEN": "short-token", "ACTION_HOST": "0.0.0.0"})
    assert short_outside.returncode == 2 and "16" in short_outside.stderr
    with_dollar = _entry_point({"ACTION_TOKEN": "tok$HOME-0123456789"})
    assert with_dollar.returncode == 2


def test_on_all_interfaces_with_a_long_token_it_is_reachable_and_still_locked(tmp_path):
    """The container profile (ACTION_HOST=0.0.0.0): the control for the loopback test above."""
    stack = _stack(tmp_path, ACTION_HOST="0.0.0.0", ACTION_TOKEN="container-token-0123456789")
    stack.prepare()
    stack.start_process("actions")
    try:
        port = stack.settings.action_port
        _wait_for(f"http://127.0.0.1:{port}/health", stack.processes["actions"])
        socket.create_connection(("127.0.0.2", port), timeout=2).close()
        assert _post(port, _action_call(f"rest:{uuid.uuid4()}"), {}) == 401
    finally:
        stack.stop()
        stack.log.close()


def test_rasa_api_token_reaches_rasa_without_the_command_line(tmp_path):
    """`RASA_ENABLE_API`: the real Rasa server (no model) refuses a wrong token and accepts the right
    one, though its command line, as `ps` shows it, has no token."""
    stack = _stack(tmp_path, RASA_ENABLE_API="1", RASA_API_TOKEN=API_TOKEN)
    stack.prepare()
    stack.start_process("rasa-0")
    try:
        process = stack.processes["rasa-0"]
        _wait_for(f"{stack.rasa_url}/", process)
        cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes().decode()
        assert "--enable-api" in cmdline and "--auth-token" not in cmdline and API_TOKEN not in cmdline
        assert stack.settings.action_token not in cmdline

        def status(token: str) -> int:
            try:
                with urllib.request.urlopen(f"{stack.rasa_url}/status?token={token}", timeout=10) as response:
                    return response.status
            except urllib.error.HTTPError as error:
                return error.code

        assert status("wrong-token-0123456789abcdef") == 401
        assert status(API_TOKEN) == 409  # authenticated; no model loaded in this test
    finally:
        stack.stop()
        stack.log.close()


def test_serve_adds_the_api_token_inside_the_process_and_refuses_an_open_api():
    env = {"RASA_API_TOKEN": API_TOKEN, "ACTION_TOKEN": "x" * 20}
    argv = serve.with_secrets(["serve", "run", "--enable-api"], env)
    assert argv == ["serve", "run", "--enable-api", "--auth-token", API_TOKEN]
    assert "RASA_API_TOKEN" not in env  # nor in any process Rasa starts
    with pytest.raises(SystemExit, match="RASA_API_TOKEN"):
        serve.with_secrets(["serve", "run", "--enable-api"], {"ACTION_TOKEN": "x" * 20})
    with pytest.raises(SystemExit, match="ACTION_TOKEN"):
        serve.with_secrets(["serve", "run"], {})
    assert serve.with_secrets(["serve", "run"], {"ACTION_TOKEN": "x" * 20}) == ["serve", "run"]
