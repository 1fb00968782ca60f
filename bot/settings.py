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
TELEGRAM_WEBHOOK_PATH = "/webhooks/telegram/webhook"


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
    telegram_bot_token: str = field(default="", repr=False)
    telegram_webhook_secret: str = field(default="", repr=False)
    telegram_api_base_url: str = "https://api.telegram.org"
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
            telegram_bot_token=env.get("TELEGRAM_BOT_TOKEN", ""),
            telegram_webhook_secret=env.get("TELEGRAM_WEBHOOK_SECRET", ""),
            telegram_api_base_url=(env.get("TELEGRAM_API_BASE_URL") or cls.telegram_api_base_url).rstrip("/"),
            env=env,
        )

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
