"""The doors of the channels, without a server: who may speak, as whom, and how often."""

from __future__ import annotations

import pytest
import yaml

from bot.messaging import Flood, WebFloodLimiter
from bot.settings import PROJECT_ROOT, Settings
from channels._common import require_secret
from channels.requests import client_address, same_secret
from channels.rest import conversation_id
from ops.runner import StartupError, effective_credentials

CREDENTIALS = yaml.safe_load((PROJECT_ROOT / "credentials.yml").read_text(encoding="utf-8"))
TWILIO = {"TWILIO_ACCOUNT_SID": "AC1", "TWILIO_WHATSAPP_FROM": "+14155238886", "PUBLIC_URL": "https://som.pe"}
REST = "channels.rest.RestChannel"


def test_rest_senders_never_name_another_channels_conversation():
    assert conversation_id("whatsapp:+51987654321") == "rest:whatsapp:+51987654321"
    assert conversation_id("telegram:42") == "rest:telegram:42"
    assert conversation_id("6f1c3a52-8b8e-4c1e-9d43-0c4d1b1f2a3b").startswith("rest:")
    assert conversation_id("rest:abc") == "rest:abc"  # already in REST's namespace


def test_rest_is_off_in_production_without_a_token_and_on_with_one():
    production = {"DATABASE_URL": "postgresql://db/som"}
    enabled, status = effective_credentials(CREDENTIALS, Settings.from_env(production))
    assert REST not in enabled and "RestChannel=off (missing REST_TOKEN)" in status
    enabled, _ = effective_credentials(CREDENTIALS, Settings.from_env({**production, "REST_TOKEN": "x" * 32}))
    assert REST in enabled
    enabled, _ = effective_credentials(CREDENTIALS, Settings.from_env({}))  # the local profile
    assert REST in enabled


@pytest.mark.parametrize(
    "env",
    [
        {**TWILIO, "TWILIO_AUTH_TOKEN": "short"},
        {"TELEGRAM_BOT_TOKEN": "1:abc", "TELEGRAM_WEBHOOK_SECRET": "123"},
        {"REST_TOKEN": "password"},
    ],
)
def test_a_weak_secret_stops_the_start_with_a_clear_message(env):
    with pytest.raises(StartupError, match="al menos 16 caracteres"):
        effective_credentials(CREDENTIALS, Settings.from_env(env))


def test_channels_refuse_to_run_on_an_empty_or_short_secret():
    for weak in ("", "abc"):
        with pytest.raises(ValueError, match="TELEGRAM_WEBHOOK_SECRET"):
            require_secret("TELEGRAM_WEBHOOK_SECRET", weak)
    assert require_secret("X", "a" * 16) == "a" * 16
    assert not same_secret("", "") and not same_secret(None, "s" * 16) and same_secret("s" * 16, "s" * 16)


def test_the_client_address_is_read_from_forwarded_headers_only_behind_a_trusted_proxy():
    trusted = ("127.0.0.1", "10.0.0.0/8")
    assert client_address("203.0.113.9", "198.51.100.1", trusted) == "203.0.113.9"  # not a proxy: ignored
    assert client_address("127.0.0.1", "198.51.100.1", trusted) == "198.51.100.1"
    # A client can write its own X-Forwarded-For; the proxies append the real hops after it.
    assert client_address("127.0.0.1", "1.2.3.4, 198.51.100.1, 10.1.2.3", trusted) == "198.51.100.1"
    assert client_address("127.0.0.1", None, trusted) == "127.0.0.1"
    assert client_address("127.0.0.1", "10.0.0.1", trusted) == "127.0.0.1"  # only proxies: the peer


def test_one_web_client_is_limited_over_all_its_conversations():
    limits = WebFloodLimiter(per_conversation=3, per_client=5)
    verdicts = [limits.check("client-1", f"conversation-{i}", now=float(i)) for i in range(7)]
    assert verdicts == [Flood.ALLOW] * 5 + [Flood.WARN, Flood.DROP]
    assert limits.check("client-2", "conversation-x", now=7.0) is Flood.ALLOW
    assert limits.check("client-1", "conversation-0", now=70.0) is Flood.ALLOW  # a minute later


def test_one_conversation_is_limited_even_from_many_addresses():
    limits = WebFloodLimiter(per_conversation=3, per_client=100)
    verdicts = [limits.check(f"client-{i}", "rest:same", now=float(i)) for i in range(5)]
    assert verdicts == [Flood.ALLOW] * 3 + [Flood.WARN, Flood.DROP]


def test_limits_of_zero_are_off_for_load_tests():
    limits = WebFloodLimiter(per_conversation=0, per_client=0)
    assert all(limits.check("c", "s", now=0.0) is Flood.ALLOW for _ in range(1000))
