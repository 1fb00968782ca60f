"""The one path every inbound message takes from a channel to Rasa.

It is also where hand-off happens for every channel alike: while a person waits for, or talks
with, an advisor, their messages go to the hand-off record and the assistant stays quiet.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

from rasa.core.channels.channel import OutputChannel, UserMessage

from bot.services import handoff_desk

logger = logging.getLogger(__name__)
OnNewMessage = Callable[[UserMessage], Awaitable[Any]]


async def deliver(on_new_message: OnNewMessage, message: UserMessage) -> None:
    """Hand `message` to Rasa, or to the advisor hand-off. Channels never call Rasa directly."""
    decision = await asyncio.to_thread(handoff_desk().on_person_message, message.sender_id, message.text or "")
    for text, buttons in decision.replies:
        await send(message.output_channel, message.sender_id, text, buttons)
    if decision.to_assistant is None:
        return
    if decision.to_assistant != message.text:
        message = UserMessage(
            decision.to_assistant,
            message.output_channel,
            message.sender_id,
            input_channel=message.input_channel,
            metadata=message.metadata,
        )
    await on_new_message(message)


async def send(output: OutputChannel, recipient_id: str, text: str, buttons=()) -> None:
    if buttons:
        await output.send_text_with_buttons(recipient_id, text, [{"title": t, "payload": p} for t, p in buttons])
    else:
        await output.send_text_message(recipient_id, text)
