"""Outbound senders, one per channel: how a message reaches a person outside of a request.

Each input channel registers its sender when Rasa builds its blueprint; advisor replies and
hand-off notices look the sender up by the conversation's channel name, so a channel added later
gets hand-off for free.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

Buttons = Sequence[tuple[str, str]]  # (title, payload)


class OutboundSender:
    """What every channel's sender offers the hand-off desk. The defaults are those of a channel
    that may write at any time, has no approved templates and cannot show "typing…"."""

    # How long after the person's last message free text may still be sent (WhatsApp: 24 h);
    # None when the channel has no such limit.
    reply_window: dt.timedelta | None = None

    async def send(self, recipient_id: str, text: str, buttons: Buttons = ()) -> tuple[str, ...]:
        """Deliver one message to the person whose conversation id is `recipient_id`; the
        provider's ids of what went out, where the channel reports delivery (else ())."""
        raise NotImplementedError

    def has_template(self, purpose: str) -> bool:
        """Whether the operator configured an approved template for `purpose` (after the window)."""
        return False

    async def send_template(self, recipient_id: str, purpose: str, variables: dict[str, str]) -> tuple[str, ...]:
        """Send the approved template for `purpose`; only called when `has_template(purpose)`."""
        raise LookupError(f"no template for {purpose!r} on this channel")

    async def typing_to(self, recipient_id: str) -> bool:
        """Show the person that an advisor is writing; False where the channel cannot. May raise."""
        return False


_senders: dict[str, OutboundSender] = {}


def register(channel: str, sender: OutboundSender) -> None:
    _senders[channel] = sender


def sender_for(channel: str) -> OutboundSender | None:
    return _senders.get(channel)
