"""The house rules: each top-level package imports only what its name allows, and the action's slots
are the domain's."""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

from actions.answer import REMEMBERED_SLOTS
from bot.settings import PROJECT_ROOT

# Packages that talk to Rasa, HTTP servers, SDKs or other processes: the domain knows none of them.
OUTSIDE_THE_DOMAIN = {
    "rasa", "rasa_sdk", "sanic", "twilio", "telegram", "redis", "httpx", "aiohttp", "socketio", "jwt",
    "actions", "channels", "extensions", "integrations", "ops",
}  # fmt: skip
ALLOWED = {
    "bot": set(),
    "integrations": {"rasa", "rasa_sdk", "sanic", "actions", "channels", "extensions", "ops"},
    "extensions": {"actions", "channels", "ops"},
    "actions": {"channels", "extensions", "integrations", "ops", "sanic", "rasa"},
    # Twilio, Telegram and Redis only through integrations/.
    "channels": {"ops", "actions", "twilio", "telegram", "redis"},
}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_each_package_imports_only_what_it_may():
    broken = []
    for package, refused in ALLOWED.items():
        refused = refused | (OUTSIDE_THE_DOMAIN if package == "bot" else set())
        for path in sorted((PROJECT_ROOT / package).rglob("*.py")):
            if path.name == "__main__.py":  # `python -m bot` hands over to the command line in ops/
                continue
            wrong = imported_packages(path) & refused
            if wrong:
                broken.append(f"{path.relative_to(PROJECT_ROOT)} imports {sorted(wrong)}")
    assert not broken, "\n".join(broken)


def test_the_actions_slots_are_the_domains():
    domain = yaml.safe_load((PROJECT_ROOT / "domain.yml").read_text(encoding="utf-8"))
    assert set(REMEMBERED_SLOTS) == set(domain["slots"])
