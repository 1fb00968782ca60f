import pytest

from bot.settings import Settings
from extensions.action_server import TOKEN_HEADER
from ops.runner import (
    Stack,
    StartupError,
    child_env,
    effective_credentials,
    effective_endpoints,
    write_runtime_config,
)


def test_channels_needing_secrets_are_off_until_their_variables_are_set():
    base = {
        "channels.rest.RestChannel": None,
        "channels.whatsapp.WhatsAppChannel": {"requires_env": ["TWILIO_AUTH_TOKEN", "PUBLIC_URL"]},
    }
    enabled, status = effective_credentials(base, Settings.from_env({"PUBLIC_URL": "https://x.pe"}))
    assert list(enabled) == ["channels.rest.RestChannel"]
    assert status == ["RestChannel=on", "WhatsAppChannel=off (missing TWILIO_AUTH_TOKEN)"]
    enabled, _ = effective_credentials(
        base, Settings.from_env({"PUBLIC_URL": "https://x.pe", "TWILIO_AUTH_TOKEN": "t"})
    )
    assert "channels.whatsapp.WhatsAppChannel" in enabled
    assert "requires_env" not in (enabled["channels.whatsapp.WhatsAppChannel"] or {})


def test_endpoints_follow_the_ports_and_var_dir_of_the_run(tmp_path):
    settings = Settings.from_env({"ACTION_PORT": "6123", "SOM_VAR_DIR": str(tmp_path)})
    endpoints = effective_endpoints(
        {"tracker_store": {"type": "x", "dialect": "sqlite", "db": "var/tracker.db"}}, settings
    )
    assert endpoints["action_endpoint"]["url"] == "http://127.0.0.1:6123/webhook"
    assert endpoints["tracker_store"]["db"] == str(tmp_path / "tracker.db")


def test_production_services_are_chosen_by_environment_variables_only(tmp_path):
    base = {
        "tracker_store": {"type": "extensions.tracker_store.TurnLoggingSQLTrackerStore", "dialect": "sqlite", "db": "x"}
    }
    embedded = effective_endpoints(base, Settings.from_env({"SOM_VAR_DIR": str(tmp_path)}))
    assert "lock_store" not in embedded and "event_broker" not in embedded
    production = effective_endpoints(
        base,
        Settings.from_env(
            {
                "DATABASE_URL": "postgresql://som:s%40cret@db.internal:5433/som",
                "REDIS_URL": "redis://:pw@cache.internal:6380/2",
                "REDIS_KEY_PREFIX": "som1",
                "AMQP_URL": "amqp://guest:guest@mq.internal:5672/",
            }
        ),
    )
    store = production["tracker_store"]
    assert (store["dialect"], store["url"], store["port"], store["db"]) == ("postgresql", "db.internal", 5433, "som")
    assert (store["username"], store["password"]) == ("som", "s@cret")
    lock = production["lock_store"]
    assert lock["type"] == "extensions.lock_store.AtomicRedisLockStore"
    assert (lock["url"], lock["port"], lock["db"], lock["password"], lock["key_prefix"]) == (
        "cache.internal",
        6380,
        2,
        "pw",
        "som1",
    )
    assert production["event_broker"]["type"] == "pika" and production["event_broker"]["url"] == "mq.internal"


# --- secrets between the servers -----------------------------------------------------------

ACTION_TOKEN = "action-token-for-this-test-0123456789"
API_TOKEN = "api-token-for-this-test-0123456789"


def _stack(tmp_path, **env) -> Stack:
    return Stack(Settings.from_env({"SOM_VAR_DIR": str(tmp_path), **env}), tmp_path / "model.tar.gz")


def test_the_endpoints_file_names_the_action_token_variable_not_the_secret(tmp_path):
    settings = Settings.from_env({"SOM_VAR_DIR": str(tmp_path), "ACTION_TOKEN": ACTION_TOKEN})
    _, endpoints_file = write_runtime_config(settings)
    assert ACTION_TOKEN not in endpoints_file.read_text()
    assert effective_endpoints({}, settings)["action_endpoint"]["headers"] == {TOKEN_HEADER: "${ACTION_TOKEN}"}


def test_no_child_command_line_holds_a_secret(tmp_path):
    stack = _stack(tmp_path, ACTION_TOKEN=ACTION_TOKEN, RASA_ENABLE_API="1", RASA_API_TOKEN=API_TOKEN)
    stack.prepare()
    actions, rasa = stack.command_for("actions"), stack.command_for("rasa-0")
    for line in (actions, rasa):
        assert not [arg for arg in line if ACTION_TOKEN in arg or API_TOKEN in arg], line
    assert "--enable-api" in rasa and "--auth-token" not in rasa
    assert actions[actions.index("--host") + 1] == "127.0.0.1"
    env = child_env(stack.settings)  # where the children find them instead
    assert (env["ACTION_TOKEN"], env["RASA_API_TOKEN"]) == (ACTION_TOKEN, API_TOKEN)


def test_without_action_token_each_start_makes_its_own_for_both_children(tmp_path):
    first, second = _stack(tmp_path), _stack(tmp_path)
    assert len(first.settings.action_token) >= 32
    assert first.settings.action_token != second.settings.action_token
    assert child_env(first.settings)["ACTION_TOKEN"] == first.settings.action_token
    first.prepare()
    assert not [arg for arg in first.command_for("rasa-0") if first.settings.action_token in arg]
    assert _stack(tmp_path, ACTION_TOKEN=ACTION_TOKEN).settings.action_token == ACTION_TOKEN


def test_a_token_made_here_cannot_reach_an_action_server_elsewhere(tmp_path):
    with pytest.raises(StartupError, match="ACTION_TOKEN"):
        _stack(tmp_path, ACTION_URL="http://actions:5055/webhook").command_for("rasa-0")
    _stack(tmp_path, ACTION_URL="http://actions:5055/webhook", ACTION_TOKEN=ACTION_TOKEN).command_for("actions")


def test_an_action_server_outside_loopback_needs_a_long_token(tmp_path):
    with pytest.raises(StartupError, match="16"):
        _stack(tmp_path, ACTION_HOST="0.0.0.0", ACTION_TOKEN="short-token").command_for("actions")
    line = _stack(tmp_path, ACTION_HOST="0.0.0.0", ACTION_TOKEN=ACTION_TOKEN).command_for("actions")
    assert line[line.index("--host") + 1] == "0.0.0.0"
    _stack(tmp_path, ACTION_TOKEN="short-token").command_for("actions")  # loopback: the machine's own users


def test_the_http_api_needs_a_long_token(tmp_path):
    with pytest.raises(StartupError, match="RASA_API_TOKEN"):
        _stack(tmp_path, RASA_ENABLE_API="1").prepare()
    with pytest.raises(StartupError, match="16"):
        _stack(tmp_path, RASA_ENABLE_API="1", RASA_API_TOKEN="short").prepare()


def test_the_action_url_follows_the_interface_the_action_server_listens_on(tmp_path):
    for host, url in (("0.0.0.0", "http://127.0.0.1:5055/webhook"), ("10.1.2.3", "http://10.1.2.3:5055/webhook")):
        settings = Settings.from_env({"SOM_VAR_DIR": str(tmp_path), "ACTION_HOST": host})
        assert effective_endpoints({}, settings)["action_endpoint"]["url"] == url


def test_the_runtime_files_with_passwords_are_readable_by_their_owner_only(tmp_path):
    settings = Settings.from_env(
        {"SOM_VAR_DIR": str(tmp_path), "DATABASE_URL": "postgresql://som:clave-db@127.0.0.1/som"}
    )
    for path in write_runtime_config(settings):
        assert path.stat().st_mode & 0o777 == 0o600
