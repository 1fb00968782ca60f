"""Outbound senders, one per channel: how a message reaches a person outside of a request.

Each input channel registers its sender when Rasa builds its blueprint; advisor replies and
hand-off notices look the sender up by the conversation's channel name, so a channel added later
gets hand-off for free.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Protocol

Buttons = Sequence[tuple[str, str]]  # (title, payload)


class OutboundSender(Protocol):
    # How long after the person's last message free text may still be sent (WhatsApp: 24 h);
    # None when the channel has no such limit.
    reply_window: dt.timedelta | None

    async def send(self, recipient_id: str, text: str, buttons: Buttons = ()) -> None:
        """Deliver one message to the person whose conversation id is `recipient_id`."""


_senders: dict[str, OutboundSender] = {}


def register(channel: str, sender: OutboundSender) -> None:
    _senders[channel] = sender


def sender_for(channel: str) -> OutboundSender | None:
    return _senders.get(channel)
