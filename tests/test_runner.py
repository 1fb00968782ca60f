from bot.settings import Settings
from ops.runner import effective_credentials, effective_endpoints


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
