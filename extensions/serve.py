"""`python -m extensions.serve run …`: Rasa's own command line, started the way this project needs.

The one place where the Rasa server process is prepared before Rasa starts: log redaction on, and
the patches of `extensions.patches` installed (one line on stderr says which). `ops.runner` starts
every Rasa server through here.
"""

from __future__ import annotations

import logging

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


def main() -> None:
    from rasa.__main__ import main as rasa_main

    prepare()
    rasa_main()


if __name__ == "__main__":
    main()
