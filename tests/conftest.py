"""Shared fixtures: the knowledge base, and a real trained assistant on free ports."""

from __future__ import annotations

import json
import socket
import urllib.request
import uuid
from pathlib import Path

import pytest

from bot import runner
from bot.knowledge import KnowledgeBase
from bot.settings import CONTENT_DIR, Settings

ARTIFACTS = Path(__file__).parent / "artifacts"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def kb() -> KnowledgeBase:
    return KnowledgeBase.load(CONTENT_DIR)


@pytest.fixture(scope="session")
def assistant(tmp_path_factory):
    """Train once (Rasa reuses the model when nothing changed) and serve it on free ports."""
    var_dir = tmp_path_factory.mktemp("var")
    settings = Settings.from_env(
        {"SOM_VAR_DIR": str(var_dir), "RASA_PORT": str(free_port()), "ACTION_PORT": str(free_port())}
    )
    model = runner.train(settings)
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / "servers.log"
    with open(log_path, "w") as log:
        stack = runner.Stack(settings, model, log=log).start()
        yield Conversations(stack.rasa_url, settings, log_path)
        stack.stop()


class Conversations:
    """Talks to the running assistant through the REST channel."""

    def __init__(self, url: str, settings: Settings, log_path: Path) -> None:
        self.url = url
        self.settings = settings
        self.log_path = log_path

    def new(self) -> "Conversation":
        return Conversation(self.url, f"test-{uuid.uuid4()}")


class Conversation:
    def __init__(self, url: str, sender: str) -> None:
        self.url = url
        self.sender = sender

    def say(self, text: str) -> list[dict]:
        body = json.dumps({"sender": self.sender, "message": text}).encode()
        request = urllib.request.Request(
            f"{self.url}/webhooks/rest/webhook", body, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.load(response)

    def say_text(self, text: str) -> str:
        """Everything the assistant answered, as one string (buttons' titles included)."""
        parts = []
        for message in self.say(text):
            parts.append(message.get("text", ""))
            parts += [b["title"] for b in message.get("buttons") or []]
        return "\n".join(parts)
