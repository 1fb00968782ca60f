"""Train the model and run the two servers (action server + Rasa server) as child processes.

Used by `make run`, `make train` and the test harness, so all three start the assistant the
same way. It drives Rasa through its command line only.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO
from urllib.parse import unquote, urlsplit

import sqlalchemy as sa
import yaml

from bot import retention
from bot.countries import CountryIndex
from bot.handoff import HandoffStore
from bot.knowledge import KnowledgeBase
from bot.privacy import write_private
from bot.settings import MIN_SECRET, PROJECT_ROOT, TRAINING_DATA_DIRS, Settings
from extensions.action_server import TOKEN_HEADER as ACTION_TOKEN_HEADER
from extensions.action_server import is_loopback, token_problem
from integrations import redis_keys

logger = logging.getLogger(__name__)
COUNTRY_NLU_FILE = PROJECT_ROOT / "data" / "nlu" / "countries.yml"
MODELS_DIR = PROJECT_ROOT / "models"
MODELS_KEPT = 2
HELD_OUT_NLU = PROJECT_ROOT / "tests" / "nlu" / "test_nlu.yml"


class StartupError(Exception):
    """The assistant cannot start; the message is one line an operator can act on."""


# --- configuration files ------------------------------------------------------------------


def effective_credentials(base: dict, settings: Settings) -> tuple[dict, list[str]]:
    """Keep the channels whose `requires_env` variables are set (and, in the production profile,
    their `production_requires_env` ones); say why the others are off."""
    enabled, status = {}, []
    for channel, config in (base or {}).items():
        config = dict(config or {})
        required, production_only = config.pop("requires_env", []), config.pop("production_requires_env", [])
        missing = settings.missing(required + (production_only if settings.production else []))
        weak = [name for name in config.pop("secrets_env", []) if 0 < len(settings.env.get(name, "")) < MIN_SECRET]
        if weak and not missing:
            raise StartupError(f"{', '.join(weak)}: use un secreto de al menos {MIN_SECRET} caracteres.")
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
    # The action server answers only with the shared secret. The file names the variable, not the
    # secret: Rasa expands ${ACTION_TOKEN} from its own environment when it reads the file.
    endpoints["action_endpoint"] = {
        "url": _action_url(settings), "enable_selective_domain": True,
        "headers": {ACTION_TOKEN_HEADER: "${ACTION_TOKEN}"},
    }  # fmt: skip
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


def _action_url(settings: Settings) -> str:
    """ACTION_URL, else the action server on this machine at the interface it listens on."""
    if settings.env.get("ACTION_URL"):
        return settings.action_url
    return f"http://{_reachable(settings.action_host)}:{settings.action_port}/webhook"


def _reachable(host: str) -> str:
    """The address at which this machine reaches a server listening on `host` (for URLs)."""
    if host in ("", "0.0.0.0", "::", "[::]"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


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
    # Both may hold secrets (database and Redis passwords): readable by the service's user only.
    write_private(credentials_path, yaml.safe_dump(credentials, allow_unicode=True))
    write_private(endpoints_path, yaml.safe_dump(endpoints, allow_unicode=True))
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
    action_token_made: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        """Without ACTION_TOKEN, one made for this start: both children get it in their environment
        (`child_env`), and a restarted child gets the same."""
        if not self.settings.action_token:
            token = secrets.token_urlsafe(32)
            env = {**self.settings.env, "ACTION_TOKEN": token}
            self.settings = replace(self.settings, action_token=token, env=env)
            self.action_token_made = True

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
        """A child's command line. It never holds a secret (any user sees it in `ps`): the action
        token and the API token reach the children in their environment."""
        if name == "actions":
            problem = token_problem(self.settings.action_token, self.settings.action_host)
            if problem:
                raise StartupError(problem)
            return [
                sys.executable, "-m", "extensions.action_server", "--actions", "actions",
                "--host", self.settings.action_host, "--port", str(self.settings.action_port),
            ]  # fmt: skip
        action_host = urlsplit(self.settings.action_url).hostname or ""
        if self.action_token_made and self.settings.env.get("ACTION_URL") and not is_loopback(action_host):
            raise StartupError(
                f"ACTION_URL apunta a otra máquina ({action_host}): defina ACTION_TOKEN, el mismo aquí "
                "y en el servidor de acciones."
            )
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
        """Rasa's HTTP API stays off unless RASA_ENABLE_API is set, and then it needs a token. The
        token stays in the environment (RASA_API_TOKEN): `extensions.serve` hands it to Rasa inside
        the process, where `ps` cannot show it."""
        if not self.settings.env.get("RASA_ENABLE_API"):
            return []
        token = self.settings.env.get("RASA_API_TOKEN", "")
        if not token:
            raise StartupError("RASA_ENABLE_API necesita RASA_API_TOKEN (el token que exigirá la API).")
        if len(token) < MIN_SECRET:
            raise StartupError(f"RASA_API_TOKEN: use un token de al menos {MIN_SECRET} caracteres.")
        return ["--enable-api"]

    def wait_ready(self, timeout: float = 180.0) -> None:
        """Until every child answers: the action server's open /health, each Rasa server's REST."""
        checks = [f"http://{_reachable(self.settings.action_host)}:{self.settings.action_port}/health"]
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
        """Block until a child exits (or Ctrl-C), then stop the other; return an exit code.

        Meanwhile the retention purge runs every day (PurgeSchedule)."""
        purge = PurgeSchedule(self.settings)
        while all(p.poll() is None for p in self.processes.values()):
            purge.tick()
            time.sleep(0.5)
        code = next(p.returncode for p in self.processes.values() if p.returncode is not None)
        self.stop()
        return code


# --- the retention purge (Ley 29733) --------------------------------------------------------

PURGE_FIRST_AFTER = 60.0  # seconds after the start: soon, without competing with the servers' start
PURGE_EVERY = 24 * 3600.0


def purge_now(settings: Settings) -> retention.PurgeReport:
    """One purge of everything past RETENTION_DAYS: SQL stores and, with REDIS_URL, Redis."""
    return retention.purge(settings, settings.retention_days, keys=redis_keys.conversation_keys(settings))


class PurgeSchedule:
    """The daily purge of a supervised deployment (`make run`, `make run-cluster`): the first shortly
    after the start, then every day, in a thread so that the supervisor keeps watching its children.
    Off with RETENTION_DAYS=0. Containers have no supervisor: a CronJob runs `python -m bot purge`."""

    def __init__(
        self,
        settings: Settings,
        first_after: float = PURGE_FIRST_AFTER,
        every: float = PURGE_EVERY,
        clock: Callable[[], float] = time.monotonic,
        purge: Callable[[Settings], retention.PurgeReport] = purge_now,
    ) -> None:
        self.settings, self.every, self.clock, self.purge = settings, every, clock, purge
        self.due: float | None = clock() + first_after if settings.retention_days > 0 else None
        self.thread: threading.Thread | None = None

    def tick(self) -> None:
        """Start a purge if one is due and the previous one has finished."""
        if self.due is None or self.clock() < self.due or (self.thread is not None and self.thread.is_alive()):
            return
        self.due = self.clock() + self.every
        self.thread = threading.Thread(target=self._run, name="som-purge", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            report = self.purge(self.settings)
        except Exception as error:  # the type only: a database error's text may quote conversation ids
            logger.error("retention purge failed (%s); next try in %.0f h", type(error).__name__, self.every / 3600)
            return
        logger.info(
            "retention purge (%g days): %d conversations, %d closed and %d abandoned hand-offs, %d audit entries, "
            "%d advisor sessions, %s Redis keys%s", self.settings.retention_days, report.conversations,
            report.handoffs, report.abandoned_handoffs, report.audit_entries, report.sessions,
            "no" if report.keys is None else report.keys, "".join(f"; {p} failed" for p in report.problems),
        )  # fmt: skip


# --- the local cluster (make run-cluster) -------------------------------------------------

NGINX_TEMPLATE = PROJECT_ROOT / "deploy" / "nginx-som.conf.template"


def nginx_config(settings: Settings, upstream_ports: list[int]) -> str:
    """A whole nginx.conf for this machine: the deploy template inside a minimal main file. HTTPS on
    RASA_PORT (plain HTTP sent there is redirected), with TLS_CERTIFICATE / TLS_CERTIFICATE_KEY or a
    self-signed certificate made once in var/nginx/tls/."""
    var = settings.var_dir / "nginx"
    certificate, key = tls_files(settings)
    body = string.Template(NGINX_TEMPLATE.read_text()).safe_substitute(
        LISTEN=f"127.0.0.1:{settings.rasa_port}",
        REDIRECT_LISTEN="",  # one port here: the TLS port itself redirects plain HTTP (nginx's 497)
        UPSTREAMS=" ".join(f"server 127.0.0.1:{port};" for port in upstream_ports),
        TLS_CERTIFICATE=str(certificate),
        TLS_CERTIFICATE_KEY=str(key),
        **nginx_access(settings),
    )
    temp_paths = "".join(
        f" {kind}_temp_path {var}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"worker_processes 1;\npid {var}/nginx.pid;\nerror_log {var}/error.log warn;\n"
        "events { worker_connections 1024; }\n"
        f"http {{\n access_log off;\n{temp_paths}"
        f"{body}\n}}\n"
    )


def nginx_access(settings: Settings) -> dict[str, str]:
    """ADVISOR_ALLOWED_NETWORKS and NGINX_REAL_IP_FROM as the template's directives (for containers,
    deploy/nginx-entrypoint.sh writes the same)."""
    advisor = _networks("ADVISOR_ALLOWED_NETWORKS", settings.advisor_allowed_networks)
    proxies = _networks("NGINX_REAL_IP_FROM", settings.nginx_real_ip_from)
    access = "".join(f"allow {network}; " for network in advisor) + "deny all;"
    real_ip = "".join(f"set_real_ip_from {proxy}; " for proxy in proxies)
    real_ip += "real_ip_header X-Forwarded-For; real_ip_recursive on;"
    return {"ADVISOR_ACCESS": access if advisor else "", "REAL_IP_FROM": real_ip if proxies else ""}


def _networks(variable: str, values: tuple[str, ...]) -> tuple[str, ...]:
    """Addresses or networks (10.0.0.0/8), checked: anything else could smuggle nginx directives."""
    for value in values:
        try:
            ipaddress.ip_network(value)
        except ValueError:
            raise StartupError(f"{variable}: '{value}' no es una dirección ni una red (p. ej. 10.20.0.0/16).") from None
    return values


def tls_files(settings: Settings) -> tuple[Path, Path]:
    """The certificate and key nginx serves: TLS_CERTIFICATE and TLS_CERTIFICATE_KEY, or a self-signed
    pair for localhost made once with openssl in var/nginx/tls/ (the key readable by its owner only)."""
    if settings.tls_certificate or settings.tls_certificate_key:
        if not (settings.tls_certificate and settings.tls_certificate_key):
            raise StartupError("TLS_CERTIFICATE y TLS_CERTIFICATE_KEY van juntas: defina las dos.")
        return Path(settings.tls_certificate), Path(settings.tls_certificate_key)
    folder = settings.var_dir / "nginx" / "tls"
    certificate, key = folder / "self-signed.crt", folder / "self-signed.key"
    if certificate.exists() and key.exists():
        return certificate, key
    openssl = shutil.which("openssl")
    if openssl is None:
        raise StartupError(
            "falta openssl para crear el certificado local: instálelo (apt-get install openssl) o defina "
            "TLS_CERTIFICATE y TLS_CERTIFICATE_KEY."
        )
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    with tempfile.TemporaryDirectory(dir=folder) as work:  # mode 0700: the key is never readable by others
        new_certificate, new_key = Path(work) / certificate.name, Path(work) / key.name
        subprocess.run(
            [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1",
             "-keyout", str(new_key), "-out", str(new_certificate)],
            check=True, capture_output=True,
        )  # fmt: skip
        new_key.chmod(0o600)
        new_certificate.chmod(0o644)
        new_key.replace(key)
        new_certificate.replace(certificate)
    logger.info("self-signed certificate for the local cluster: %s", certificate)
    return certificate, key


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
