"""The two bots under test: each trained (and timed), then served on free ports until the end."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

from bench.load import Target
from bot.knowledge import KnowledgeBase
from bot.settings import Settings
from ops import runner

STARTUP_TIMEOUT = 300.0
# Variables that would move the assistant off the embedded profile.
PRODUCTION_VARIABLES = ("DATABASE_URL", "REDIS_URL", "AMQP_URL", "ACTION_URL", "RASA_ENABLE_API")
# Advisors always on duty, so a hand-off request behaves the same at any hour.
ALWAYS_OPEN_HOURS = """\
timezone: America/Lima
days: [lunes, martes, miércoles, jueves, viernes, sábado, domingo]
opens: "00:00"
closes: "23:59:59"
"""


@dataclass(frozen=True)
class Served:
    target: Target
    processes: dict[str, subprocess.Popen]  # "rasa", and "actions" for our assistant
    startup_seconds: float


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def shows_log_on_failure(log: Path) -> Iterator[None]:
    try:
        yield
    except Exception:
        lines = log.read_text(errors="replace").splitlines() if log.exists() else []
        print(f"--- last lines of {log.name} ---", *lines[-40:], sep="\n", file=sys.stderr)
        raise


@contextmanager
def output_to(log: Path) -> Iterator[None]:
    """Send this process's stdout and stderr (and so its children's) to `log` meanwhile."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    try:
        with open(log, "ab") as output:
            for fd in saved:
                os.dup2(output.fileno(), fd)
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)


# --- our assistant (embedded profile) -----------------------------------------------------


def assistant_settings(var_dir: Path) -> Settings:
    """Embedded profile in a fresh var dir, on free ports, with always-open office hours, and no web
    flood limits: the load generator is one client speaking in many conversations at once."""
    var_dir.mkdir(parents=True)
    hours = var_dir / "office_hours.yml"
    hours.write_text(ALWAYS_OPEN_HOURS)
    env = {name: value for name, value in os.environ.items() if name not in PRODUCTION_VARIABLES}
    return Settings.from_env(
        {**env, "SOM_VAR_DIR": str(var_dir), "SOM_OFFICE_HOURS_FILE": str(hours),
         "RASA_PORT": str(free_port()), "ACTION_PORT": str(free_port()),
         "WEB_CONVERSATION_RATE": "0", "WEB_CLIENT_RATE": "0"}
    )  # fmt: skip


def train_assistant(settings: Settings, models_dir: Path, log: Path) -> tuple[Path, float]:
    """A full training (`rasa train --force`, as `make train` runs it) into `models_dir`."""
    with shows_log_on_failure(log), output_to(log), mock.patch.object(runner, "MODELS_DIR", models_dir):
        started = time.monotonic()
        model = runner.train(settings, force=True)
        return model, time.monotonic() - started


@contextmanager
def assistant(settings: Settings, model: Path, log: Path) -> Iterator[Served]:
    failures = frozenset(KnowledgeBase.load(settings.content_dir).entry("service.technical_problem").messages)
    with open(log, "a") as output, shows_log_on_failure(log):
        stack = runner.Stack(settings, model, log=output)
        try:
            started = time.monotonic()
            stack.start(STARTUP_TIMEOUT)
            yield Served(
                Target("assistant", stack.rasa_url, expects_answers=True, failure_texts=failures),
                {"rasa": stack.processes["rasa-0"], "actions": stack.processes["actions"]},
                time.monotonic() - started,
            )
        finally:
            stack.stop()


# --- Rasa's reference bot -----------------------------------------------------------------


def create_reference(folder: Path, log: Path) -> float:
    """`rasa init --no-prompt` (which trains its default config) in `folder`; its duration."""
    folder.mkdir()
    command = [sys.executable, "-m", "rasa", "init", "--no-prompt", "--init-dir", str(folder)]
    with shows_log_on_failure(log), output_to(log):
        started = time.monotonic()
        subprocess.run(command, cwd=folder, env=runner.child_env(), check=True, stdin=subprocess.DEVNULL)
        seconds = time.monotonic() - started
    (folder / "credentials.yml").write_text("rest:\n")
    (folder / "endpoints.yml").write_text("# in-memory tracker store, no action server\n")
    return seconds


@contextmanager
def reference(folder: Path, log: Path) -> Iterator[Served]:
    """Serve the reference bot like ours: `rasa run` with the REST channel."""
    port = free_port()
    command = [
        sys.executable, "-m", "rasa", "run", "--model", "models", "--credentials", "credentials.yml",
        "--endpoints", "endpoints.yml", "--port", str(port), "--interface", "127.0.0.1",
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with open(log, "a") as output, shows_log_on_failure(log):
        started = time.monotonic()
        process = subprocess.Popen(
            command, cwd=folder, env=runner.child_env(), stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            _wait_ready(f"{url}/webhooks/rest/", process)
            yield Served(Target("reference", url, expects_answers=False), {"rasa": process}, time.monotonic() - started)
        finally:
            _stop(process)


def _wait_ready(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the reference bot's server exited at start-up")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"the reference bot's server did not answer in {STARTUP_TIMEOUT:.0f} s")


def _stop(process: subprocess.Popen, grace: float = 15.0) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
