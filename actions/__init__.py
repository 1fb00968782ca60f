"""Rasa SDK custom actions: thin adapters from Rasa's tracker to the domain logic in `bot/`.

The action server imports this package first, so it is where log redaction is switched on.
"""

from bot.privacy import install_log_redaction

install_log_redaction()
