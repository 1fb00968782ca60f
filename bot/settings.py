"""Settings read from the environment, with the embedded defaults used by `make run`.

Everything that differs between a developer's laptop, CI and production is an environment
variable read here, so the rest of the code never touches `os.environ`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONTENT_DIR = PROJECT_ROOT / "data" / "content"
NLU_DIR = PROJECT_ROOT / "data" / "nlu"
TRAINING_DATA_DIRS = ("data/nlu", "data/stories", "data/rules")
WHATSAPP_WEBHOOK_PATH = "/webhooks/whatsapp/webhook"
WHATSAPP_STATUS_PATH = "/webhooks/whatsapp/status"  # Twilio's delivery status callbacks
TELEGRAM_WEBHOOK_PATH = "/webhooks/telegram/webhook"
MIN_SECRET = 16  # characters of any webhook secret or token: shorter ones can be guessed or forged


@dataclass(frozen=True)
class Settings:
    """The knobs of one deployment. Build it with `Settings.from_env()`."""

    var_dir: Path
    rasa_port: int = 5005
    action_port: int = 5055
    host: str = "127.0.0.1"
    public_url: str = ""
    database_url: str = ""
    redis_url: str = ""
    amqp_url: str = ""
    redis_key_prefix: str = "som"
    webchat_allowed_origins: tuple[str, ...] = ()  # besides the server's own origin; "*" for any
    webchat_jwt_key: str = field(default="", repr=False)  # widgets then need a token signed with it
    content_dir: Path = CONTENT_DIR
    handoff_wait_minutes: float = 10.0
    office_hours_file: Path = CONTENT_DIR / "office_hours.yml"
    twilio_account_sid: str = ""
    twilio_auth_token: str = field(default="", repr=False)
    twilio_whatsapp_from: str = ""
    twilio_api_base_url: str = "https://api.twilio.com"
    twilio_content_base_url: str = "https://content.twilio.com"  # the Content API (buttons, lists)
    twilio_messaging_base_url: str = "https://messaging.twilio.com"  # the typing indicator
    twilio_content_enabled: bool = False  # WhatsApp's own buttons and lists instead of numbered text
    twilio_template_sid_advisor_reply: str = ""  # approved template (HX…) for advisor replies after 24 h
    twilio_template_sid_rating: str = ""  # approved template for the satisfaction question after 24 h
    telegram_bot_token: str = field(default="", repr=False)
    telegram_webhook_secret: str = field(default="", repr=False)
    telegram_api_base_url: str = "https://api.telegram.org"
    rest_token: str = field(default="", repr=False)  # REST then needs `Authorization: Bearer <token>`
    trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1")  # whose X-Forwarded-For is believed
    handoffs_per_client_hour: int = 5  # hand-offs one web client (address) may open in an hour
    # Flood limits of REST and the web chat, messages per minute (0: no limit, for load tests).
    web_conversation_rate: int = 10
    web_client_rate: int = 30
    retention_days: float = 180.0  # Ley 29733: older data is purged daily (0: no scheduled purge)
    log_pseudonym_key: str = field(default="", repr=False)  # HMAC key of log pseudonyms; else one in var/
    # The action server: its interface, and the secret the Rasa server must send it (see
    # extensions/action_server.py). Without ACTION_TOKEN, `python -m bot run` makes one per start.
    action_host: str = "127.0.0.1"
    action_token: str = field(default="", repr=False)
    # nginx in front (deploy/nginx-som.conf.template): who may open /advisor/ (empty: anyone), whose
    # X-Forwarded-For nginx believes (load balancers in front of it), and its TLS certificate (empty:
    # a self-signed one in var/ for the local cluster).
    advisor_allowed_networks: tuple[str, ...] = ()
    nginx_real_ip_from: tuple[str, ...] = ()
    tls_certificate: str = ""
    tls_certificate_key: str = ""
    env: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        return cls(
            var_dir=Path(env.get("SOM_VAR_DIR", PROJECT_ROOT / "var")),
            rasa_port=int(env.get("RASA_PORT", 5005)),
            action_port=int(env.get("ACTION_PORT", 5055)),
            host=env.get("SOM_HOST", "127.0.0.1"),
            public_url=env.get("PUBLIC_URL", "").rstrip("/"),
            database_url=env.get("DATABASE_URL", ""),
            redis_url=env.get("REDIS_URL", ""),
            amqp_url=env.get("AMQP_URL", ""),
            redis_key_prefix=env.get("REDIS_KEY_PREFIX", "som"),
            webchat_allowed_origins=tuple(env.get("WEBCHAT_ALLOWED_ORIGINS", "").replace(",", " ").split()),
            webchat_jwt_key=env.get("WEBCHAT_JWT_KEY", ""),
            content_dir=Path(env.get("SOM_CONTENT_DIR", CONTENT_DIR)),
            handoff_wait_minutes=float(env.get("HANDOFF_WAIT_MINUTES", 10)),
            office_hours_file=Path(env.get("SOM_OFFICE_HOURS_FILE", CONTENT_DIR / "office_hours.yml")),
            twilio_account_sid=env.get("TWILIO_ACCOUNT_SID", ""),
            twilio_auth_token=env.get("TWILIO_AUTH_TOKEN", ""),
            twilio_whatsapp_from=env.get("TWILIO_WHATSAPP_FROM", ""),
            twilio_api_base_url=(env.get("TWILIO_API_BASE_URL") or cls.twilio_api_base_url).rstrip("/"),
            twilio_content_base_url=(env.get("TWILIO_CONTENT_BASE_URL") or cls.twilio_content_base_url).rstrip("/"),
            twilio_messaging_base_url=(env.get("TWILIO_MESSAGING_BASE_URL") or cls.twilio_messaging_base_url).rstrip(
                "/"
            ),
            twilio_content_enabled=env.get("TWILIO_CONTENT_ENABLED", "").strip().lower() in ("1", "true", "yes", "on"),
            twilio_template_sid_advisor_reply=env.get("TWILIO_TEMPLATE_SID_ADVISOR_REPLY", "").strip(),
            twilio_template_sid_rating=env.get("TWILIO_TEMPLATE_SID_RATING", "").strip(),
            telegram_bot_token=env.get("TELEGRAM_BOT_TOKEN", ""),
            telegram_webhook_secret=env.get("TELEGRAM_WEBHOOK_SECRET", ""),
            telegram_api_base_url=(env.get("TELEGRAM_API_BASE_URL") or cls.telegram_api_base_url).rstrip("/"),
            rest_token=env.get("REST_TOKEN", ""),
            trusted_proxies=tuple(env.get("TRUSTED_PROXIES", "127.0.0.1 ::1").replace(",", " ").split()),
            handoffs_per_client_hour=int(env.get("HANDOFFS_PER_CLIENT_HOUR", 5)),
            web_conversation_rate=int(env.get("WEB_CONVERSATION_RATE", 10)),
            web_client_rate=int(env.get("WEB_CLIENT_RATE", 30)),
            retention_days=float(env.get("RETENTION_DAYS") or 180),
            log_pseudonym_key=env.get("LOG_PSEUDONYM_KEY", ""),
            action_host=env.get("ACTION_HOST") or "127.0.0.1",
            action_token=env.get("ACTION_TOKEN", ""),
            advisor_allowed_networks=tuple(env.get("ADVISOR_ALLOWED_NETWORKS", "").replace(",", " ").split()),
            nginx_real_ip_from=tuple(env.get("NGINX_REAL_IP_FROM", "").replace(",", " ").split()),
            tls_certificate=env.get("TLS_CERTIFICATE", ""),
            tls_certificate_key=env.get("TLS_CERTIFICATE_KEY", ""),
            env=env,
        )

    @property
    def production(self) -> bool:
        """The production profile: a shared database (DATABASE_URL) rather than the embedded SQLite."""
        return bool(self.database_url)

    @property
    def action_url(self) -> str:
        """ACTION_URL when the action server runs elsewhere (containers), else on this machine."""
        return self.env.get("ACTION_URL") or f"http://127.0.0.1:{self.action_port}/webhook"

    @property
    def sqlite_path(self) -> Path:
        return self.var_dir / "tracker.db"

    @property
    def tracker_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.sqlite_path}"

    @property
    def handoff_database_url(self) -> str:
        """Hand-offs live in PostgreSQL with DATABASE_URL, else in SQLite beside the trackers."""
        return self.database_url or f"sqlite:///{self.var_dir / 'handoff.db'}"

    def missing(self, names: list[str]) -> list[str]:
        """The names among `names` that are unset or empty in this environment."""
        return [name for name in names if not self.env.get(name)]
