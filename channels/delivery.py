"""The one path every inbound message takes from a channel to Rasa.

It is also where hand-off happens for every channel alike: while a person waits for, or talks
with, an advisor, their messages go to the hand-off record and the assistant stays quiet.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from rasa.core.channels.channel import OutputChannel, UserMessage

from bot.handoff_desk import Decision
from bot.services import handoff_desk, knowledge_base

logger = logging.getLogger(__name__)
OnNewMessage = Callable[[UserMessage], Awaitable[Any]]


class WatchedOutput(OutputChannel):
    """Passes answers through to the channel's output, counting them: silence means a failure."""

    def __init__(self, inner: OutputChannel) -> None:
        self.inner = inner
        self.sent = 0

    def name(self) -> str:
        return self.inner.name()

    async def send_response(self, recipient_id: str, message: dict[str, Any]) -> None:
        self.sent += 1
        await self.inner.send_response(recipient_id, message)


async def deliver(on_new_message: OnNewMessage, message: UserMessage) -> None:
    """Hand `message` to Rasa, or to the advisor hand-off. Channels never call Rasa directly.

    If the assistant fails (the action server is down, say) the person is told so, never left
    without an answer."""
    written = _as_written(message)
    media = tuple((message.metadata or {}).get("media") or ())
    try:
        decision = await asyncio.to_thread(
            handoff_desk().on_person_message, message.sender_id, written, message.input_channel or "", media
        )
    except Exception:  # the hand-off store is unreachable: the assistant still answers
        logger.exception("hand-off check failed; passing the message to the assistant")
        decision = Decision(to_assistant=written)
    for text, buttons in decision.replies:
        await send(message.output_channel, message.sender_id, text, buttons)
    if decision.to_assistant is None:
        return
    output = WatchedOutput(message.output_channel)
    text = message.text if decision.to_assistant == written else decision.to_assistant
    try:
        await on_new_message(
            UserMessage(
                text,
                output,
                message.sender_id,
                input_channel=message.input_channel,
                metadata=message.metadata,
                message_id=message.message_id,
            )
        )
    except Exception:
        logger.exception("the assistant failed to process a message")
    if output.sent == 0:
        entry = knowledge_base().current().entry("service.technical_problem")
        for text in entry.messages:
            await send(message.output_channel, message.sender_id, text)


def _as_written(message: UserMessage) -> str:
    """What the person sent, as an advisor should read it: media is named, not its payload."""
    media = (message.metadata or {}).get("media")
    if media:
        kinds = ", ".join(str(item.get("type") or "archivo") for item in media)
        return f"[envió: {kinds}]"
    return message.text or ""


async def send(output: OutputChannel, recipient_id: str, text: str, buttons=()) -> None:
    if buttons:
        await output.send_text_with_buttons(recipient_id, text, [{"title": t, "payload": p} for t, p in buttons])
    else:
        await output.send_text_message(recipient_id, text)
