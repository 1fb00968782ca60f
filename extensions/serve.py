"""`python -m extensions.serve run …`: Rasa's own command line, started the way this project needs.

The one place where the Rasa server process is prepared before Rasa starts: log redaction on, and
the patches of `extensions.patches` installed (one line on stderr says which). `ops.runner` starts
every Rasa server through here.

Secrets never travel on the command line (any user of the machine sees it in `ps`): with
`--enable-api`, Rasa's `--auth-token` is taken from RASA_API_TOKEN and added here, inside the
process; the action server's token is ACTION_TOKEN, which Rasa reads from the environment when it
expands `${ACTION_TOKEN}` in the endpoints file.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping

from bot.privacy import install_log_redaction
from extensions import patches


def prepare() -> list[str]:
    """Redaction on and patches in; their log line goes to stderr before Rasa sets up its logging."""
    install_log_redaction()
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-8s %(name)s  - %(message)s"))
    patches.logger.addHandler(handler)
    patches.logger.setLevel(logging.INFO)
    try:
        return patches.install()
    finally:
        patches.logger.removeHandler(handler)
        patches.logger.setLevel(logging.NOTSET)


def with_secrets(argv: list[str], env: MutableMapping[str, str]) -> list[str]:
    """Rasa's arguments with the API token from the environment; refuses what would run unlocked."""
    if argv[1:2] == ["run"] and not env.get("ACTION_TOKEN"):
        raise SystemExit("Error: falta ACTION_TOKEN, el secreto que el servidor de acciones exige (deploy/README.md).")
    if "--enable-api" not in argv or any(arg.split("=")[0] == "--auth-token" for arg in argv):
        return argv
    token = env.pop("RASA_API_TOKEN", "")  # and out of the environment of anything Rasa starts
    if not token:
        raise SystemExit("Error: --enable-api necesita RASA_API_TOKEN: sin token la API de Rasa quedaría abierta.")
    return [*argv, "--auth-token", token]


def main() -> None:
    from rasa.__main__ import main as rasa_main

    sys.argv = with_secrets(sys.argv, os.environ)
    prepare()
    rasa_main()


if __name__ == "__main__":
    main()
