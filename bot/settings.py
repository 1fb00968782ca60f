"""Settings read from the environment, with the embedded defaults used by `make run`.

Everything that differs between a developer's laptop, CI and production is an environment
variable read here, so the rest of the code never touches `os.environ`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONTENT_DIR = PROJECT_ROOT / "data" / "content"
TRAINING_DATA_DIRS = ("data/nlu", "data/stories", "data/rules")


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
    content_dir: Path = CONTENT_DIR
    env: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
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
            content_dir=Path(env.get("SOM_CONTENT_DIR", CONTENT_DIR)),
            env=env,
        )

    @property
    def action_url(self) -> str:
        return f"http://127.0.0.1:{self.action_port}/webhook"

    @property
    def sqlite_path(self) -> Path:
        return self.var_dir / "tracker.db"

    def missing(self, names: list[str]) -> list[str]:
        """The names among `names` that are unset or empty in this environment."""
        return [name for name in names if not self.env.get(name)]
