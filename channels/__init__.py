"""Rasa input/output channels and server-side adapters: thin wrappers around `bot/`.

Rasa imports this package in the server process, so it is where log redaction is switched on.
"""

from bot.privacy import install_log_redaction

install_log_redaction()
