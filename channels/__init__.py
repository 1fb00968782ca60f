"""Rasa input/output channels and server-side adapters: thin wrappers around `bot/`.

Rasa imports this package in the server process, so it is where log redaction is switched on
and where Rasa's calls to the action server are made cheap (`extensions.rasa_speedups`).
"""

from bot.privacy import install_log_redaction
from extensions import rasa_speedups

install_log_redaction()
rasa_speedups.install()
