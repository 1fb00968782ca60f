"""Rasa SDK custom actions: thin adapters from Rasa's tracker to the domain logic in `bot/`.

The action server imports this package first, so it is where log redaction is switched on and the
answering machinery is built, before the first message arrives.
"""

from bot.privacy import install_log_redaction
from bot.services import warm_up

install_log_redaction()
warm_up()
