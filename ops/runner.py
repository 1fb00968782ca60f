"""Train the model and run the two servers (action server + Rasa server) as child processes.

Used by `make run`, `make train` and the test harness, so all three start the assistant the
same way. It drives Rasa through its command line only.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import unquote, urlsplit

import sqlalchemy as sa
import yaml

from bot.countries import CountryIndex
from bot.handoff import HandoffStore
from bot.knowledge import KnowledgeBase
from bot.settings import PROJECT_ROOT, TRAINING_DATA_DIRS, Settings

logger = logging.getLogger(__name__)
COUNTRY_NLU_FILE = PROJECT_ROOT / "data" / "nlu" / "countries.yml"
MODELS_DIR = PROJECT_ROOT / "models"
MODELS_KEPT = 2
HELD_OUT_NLU = PROJECT_ROOT / "tests" / "nlu" / "test_nlu.yml"


class StartupError(Exception):
    """The assistant cannot start; the message is one line an operator can act on."""


# --- configuration files ------------------------------------------------------------------


def effective_credentials(base: dict, settings: Settings) -> tuple[dict, list[str]]:
    """Keep the channels whose `requires_env` variables are set; say why the others are off."""
    enabled, status = {}, []
    for channel, config in (base or {}).items():
        config = dict(config or {})
        missing = settings.missing(config.pop("requires_env", []))
        short_name = channel.rsplit(".", 1)[-1]
        if missing:
            status.append(f"{short_name}=off (missing {', '.join(missing)})")
        else:
            enabled[channel] = config or None
            status.append(f"{short_name}=on")
    return enabled, status


def effective_endpoints(base: dict, settings: Settings) -> dict:
    """The endpoints file for this run: ports, database location and the production services.

    DATABASE_URL moves trackers to that database, REDIS_URL adds the Redis lock store, AMQP_URL the
    RabbitMQ event broker; without them everything stays embedded (SQLite, in-memory locks)."""
    endpoints = dict(base or {})
    # The action gets the tracker only: serialising the domain into every call costs time for nothing.
    endpoints["action_endpoint"] = {"url": settings.action_url, "enable_selective_domain": True}
    store = dict(endpoints.get("tracker_store") or {})
    if settings.database_url:
        store.update(_database_fields(settings.database_url))
    elif store.get("dialect") == "sqlite":
        store["db"] = str(settings.sqlite_path)
    endpoints["tracker_store"] = store
    if settings.redis_url:
        redis = urlsplit(settings.redis_url)
        endpoints["lock_store"] = {
            "type": "extensions.lock_store.AtomicRedisLockStore", "url": redis.hostname or "127.0.0.1",
            "port": redis.port or 6379,
            "db": int((redis.path or "/0").strip("/") or 0), "password": unquote(redis.password or "") or None,
            "key_prefix": settings.redis_key_prefix,
        }  # fmt: skip
    if settings.amqp_url:
        amqp = urlsplit(settings.amqp_url)
        endpoints["event_broker"] = {
            "type": "pika", "url": amqp.hostname, "port": amqp.port or 5672,
            "username": unquote(amqp.username or "guest"), "password": unquote(amqp.password or "guest"),
            "queues": [settings.env.get("AMQP_QUEUE", "som_events")],
        }  # fmt: skip
    return endpoints


def _database_fields(database_url: str) -> dict:
    """Rasa's SQL tracker store takes the URL in parts (the host as `url`)."""
    url = urlsplit(database_url)
    dialect = url.scheme.split("+")[0]
    return {
        "dialect": "postgresql" if dialect in ("postgres", "postgresql") else dialect,
        "url": url.hostname, "port": url.port, "db": url.path.lstrip("/"),
        "username": unquote(url.username or "") or None, "password": unquote(url.password or "") or None,
    }  # fmt: skip


def write_runtime_config(settings: Settings) -> tuple[Path, Path]:
    """Write var/credentials.yml and var/endpoints.yml for this run and log the channel status."""
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    credentials, status = effective_credentials(_load_yaml(PROJECT_ROOT / "credentials.yml"), settings)
    endpoints = effective_endpoints(_load_yaml(PROJECT_ROOT / "endpoints.yml"), settings)
    credentials_path = settings.var_dir / "credentials.yml"
    endpoints_path = settings.var_dir / "endpoints.yml"
    credentials_path.write_text(yaml.safe_dump(credentials, allow_unicode=True))
    endpoints_path.write_text(yaml.safe_dump(endpoints, allow_unicode=True))
    logger.info("channels: %s", "; ".join(status))
    return credentials_path, endpoints_path


def _load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


# --- training -----------------------------------------------------------------------------


def country_nlu_yaml(countries: CountryIndex) -> str:
    """The lookup table and synonyms that let the NLU find and normalise country names."""
    lines = [
        "# Generated by `python -m bot gen-countries` from data/content/countries.yml: do not edit.",
        'version: "3.1"',
        "",
        "nlu:",
        "  - lookup: country",
        "    examples: |",
    ]
    aliases = countries.aliases()
    every_form = sorted({form for name, forms in aliases.items() for form in [name.lower(), *forms]})
    lines += [f"      - {form}" for form in every_form]
    for name, forms in sorted(aliases.items()):
        if forms:
            lines += ["", f"  - synonym: {name}", "    examples: |"] + [f"      - {form}" for form in forms]
    return "\n".join(lines) + "\n"


def generate_country_nlu(settings: Settings) -> bool:
    """Rewrite data/nlu/countries.yml if the country table changed; True if it did."""
    text = country_nlu_yaml(KnowledgeBase.load(settings.content_dir).countries)
    if COUNTRY_NLU_FILE.exists() and COUNTRY_NLU_FILE.read_text(encoding="utf-8") == text:
        return False
    COUNTRY_NLU_FILE.write_text(text, encoding="utf-8")
    return True


def latest_model() -> Path | None:
    models = sorted(MODELS_DIR.glob("*.tar.gz"), key=lambda p: p.stat().st_mtime)
    return models[-1] if models else None


def train(settings: Settings, force: bool = False) -> Path:
    """Train unless Rasa's fingerprint says nothing changed; keep only the newest models."""
    generate_country_nlu(settings)
    command = [
        sys.executable, "-m", "rasa", "train", "--data", *TRAINING_DATA_DIRS,
        "--domain", "domain.yml", "--config", "config.yml", "--out", str(MODELS_DIR),
    ]  # fmt: skip
    if force:
        command.append("--force")
    subprocess.run(command, cwd=PROJECT_ROOT, check=True, env=child_env(settings))
    for old in sorted(MODELS_DIR.glob("*.tar.gz"), key=lambda p: p.stat().st_mtime)[:-MODELS_KEPT]:
        old.unlink()
    model = latest_model()
    if model is None:
        raise StartupError("training produced no model in models/")
    return model


def evaluate(settings: Settings, reports_dir: Path) -> dict[str, float]:
    """Run Rasa's NLU test on the held-out set; return the headline figures."""
    model = train(settings)
    subprocess.run(
        [sys.executable, "-m", "rasa", "test", "nlu", "--nlu", str(HELD_OUT_NLU), "--model", str(model),
         "--out", str(reports_dir)],
        cwd=PROJECT_ROOT, check=True, env=child_env(settings),
    )  # fmt: skip
    return headline_figures(reports_dir)


@contextmanager
def parsing_server(settings: Settings, model: Path) -> Iterator[Callable[[str], dict]]:
    """The trained model behind Rasa's HTTP API on free ports: yields text → parse result."""
    token = secrets.token_urlsafe(16)
    with tempfile.TemporaryDirectory(prefix="som-eval-") as var_dir:
        env = {**settings.env, "SOM_VAR_DIR": var_dir, "RASA_ENABLE_API": "1", "RASA_API_TOKEN": token,
               "RASA_PORT": str(free_port()), "ACTION_PORT": str(free_port())}  # fmt: skip
        log = open(Path(var_dir) / "servers.log", "w")
        stack = Stack(Settings.from_env(env), model, log=log).start()
        url = f"{stack.rasa_url}/model/parse?token={token}"

        def parse(text: str) -> dict:
            body = json.dumps({"text": text}).encode()
            request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=30) as answer:
                return json.load(answer)

        try:
            yield parse
        finally:
            stack.stop()
            log.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def headline_figures(reports_dir: Path) -> dict[str, float]:
    intents = json.loads((reports_dir / "intent_report.json").read_text())
    entities = json.loads((reports_dir / "RegexEntityExtractor_report.json").read_text())
    return {
        "intent_accuracy": intents["accuracy"],
        "intent_macro_f1": intents["macro avg"]["f1-score"],
        "country_f1": entities.get("country", {}).get("f1-score", 0.0),
    }


# --- serving ------------------------------------------------------------------------------


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return True
    return False


def child_env(settings: Settings | None = None) -> dict[str, str]:
    """The environment for Rasa processes: this run's settings plus the project on PYTHONPATH."""
    env = dict(settings.env if settings else os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("SQLALCHEMY_SILENCE_UBER_WARNING", "1")
    env.setdefault("RASA_TELEMETRY_ENABLED", "false")
    return env


def _get_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@dataclass
class Stack:
    """The running action server and Rasa server(s).

    With `replicas` > 1, Rasa servers listen on consecutive ports from RASA_PORT: the production
    profile (shared database and Redis locks) lets them serve the same conversations."""

    settings: Settings
    model: Path
    log: IO | None = None  # None: children write to this terminal
    replicas: int = 1
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def rasa_ports(self) -> list[int]:
        return [self.settings.rasa_port + i for i in range(self.replicas)]

    @property
    def rasa_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.rasa_ports]

    @property
    def rasa_url(self) -> str:
        return self.rasa_urls[0]

    def start(self, timeout: float = 180.0) -> Stack:
        for port in (*self.rasa_ports, self.settings.action_port):
            if port_in_use(port):
                raise StartupError(
                    f"El puerto {port} ya está en uso: detenga el otro proceso o elija otro con "
                    f"RASA_PORT / ACTION_PORT."
                )
        self.prepare()
        self.start_process("actions")
        for replica in range(self.replicas):
            self.start_process(f"rasa-{replica}")
        self.wait_ready(timeout)
        return self

    def start_process(self, name: str) -> None:
        """(Re)start one child: "actions" or "rasa-N"."""
        output = self.log if self.log is not None else None
        self.processes[name] = subprocess.Popen(
            self.command_for(name), cwd=PROJECT_ROOT, env=child_env(self.settings), stdout=output,
            stderr=subprocess.STDOUT if output else None, start_new_session=True,
        )  # fmt: skip

    def command_for(self, name: str) -> list[str]:
        if name == "actions":
            return [sys.executable, "-m", "rasa_sdk", "--actions", "actions", "--port", str(self.settings.action_port)]
        port = self.rasa_ports[int(name.split("-")[1])]
        return [
            sys.executable, "-m", "extensions.serve", "run", "--model", str(self.model),
            "--endpoints", str(self._endpoints), "--credentials", str(self._credentials),
            "--port", str(port), "--interface", self.settings.host, *self._http_api_arguments(),
        ]  # fmt: skip

    def prepare(self) -> None:
        """Write this run's configuration and create the hand-off schema once, before any server."""
        self._http_api_arguments()  # a missing API token stops us before anything starts
        self._credentials, self._endpoints = write_runtime_config(self.settings)
        HandoffStore(self.settings.handoff_database_url)

    def kill(self, name: str, signum: int = signal.SIGKILL) -> None:
        process = self.processes[name]
        os.killpg(process.pid, signum)
        process.wait()

    def _http_api_arguments(self) -> list[str]:
        """Rasa's HTTP API stays off unless RASA_ENABLE_API is set, and then it needs a token."""
        if not self.settings.env.get("RASA_ENABLE_API"):
            return []
        token = self.settings.env.get("RASA_API_TOKEN")
        if not token:
            raise StartupError("RASA_ENABLE_API necesita RASA_API_TOKEN (el token que exigirá la API).")
        return ["--enable-api", "--auth-token", token]

    def wait_ready(self, timeout: float = 180.0) -> None:
        checks = [f"http://127.0.0.1:{self.settings.action_port}/health"]
        checks += [f"{url}/webhooks/rest/" for url in self.rasa_urls]
        deadline = time.monotonic() + timeout
        while checks:
            if any(p.poll() is not None for p in self.processes.values()):
                self.stop()
                raise StartupError("un servidor terminó al arrancar: revise los mensajes anteriores")
            if time.monotonic() > deadline:
                self.stop()
                raise StartupError(f"los servidores no respondieron en {timeout:.0f} s")
            if _get_ok(checks[0]):
                checks.pop(0)
            else:
                time.sleep(0.5)

    def stop(self, grace: float = 15.0) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes.clear()

    def wait(self) -> int:
        """Block until a child exits (or Ctrl-C), then stop the other; return an exit code."""
        while all(p.poll() is None for p in self.processes.values()):
            time.sleep(0.5)
        code = next(p.returncode for p in self.processes.values() if p.returncode is not None)
        self.stop()
        return code


# --- the local cluster (make run-cluster) -------------------------------------------------

NGINX_TEMPLATE = PROJECT_ROOT / "deploy" / "nginx-som.conf.template"


def nginx_config(settings: Settings, upstream_ports: list[int]) -> str:
    """A whole nginx.conf for this machine: the deploy template inside a minimal main file."""
    var = settings.var_dir / "nginx"
    body = string.Template(NGINX_TEMPLATE.read_text()).safe_substitute(
        LISTEN=f"127.0.0.1:{settings.rasa_port}",
        UPSTREAMS=" ".join(f"server 127.0.0.1:{port};" for port in upstream_ports),
    )
    return (
        f"worker_processes 1;\npid {var}/nginx.pid;\nerror_log {var}/error.log warn;\n"
        "events { worker_connections 1024; }\n"
        f"http {{\n access_log off;\n client_body_temp_path {var}/body;\n proxy_temp_path {var}/proxy;\n"
        f"{body}\n}}\n"
    )


def ensure_database(database_url: str) -> None:
    """Create the PostgreSQL database named in DATABASE_URL if it does not exist yet."""
    url = urlsplit(database_url)
    if not url.scheme.startswith("postgres"):
        return
    name = url.path.lstrip("/")
    admin = sa.create_engine(url._replace(path="/postgres").geturl(), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            exists = connection.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first()
            if not exists:
                connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
