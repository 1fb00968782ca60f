"""Telegram: `POST /webhooks/telegram/webhook`, channel name `telegram`. The Bot API and its SDK
are behind `integrations/telegram.py`; here is what the SOM does with them.

Unlike Rasa's Telegram connector, it checks the webhook's secret token, always answers Telegram
200 (an error never makes Telegram redeliver in a loop), ignores redelivered updates, works in the
background, answers every button press so the spinner stops and takes the pressed message's
buttons away (an old button pressed later would answer out of context), shows "typing…" while an
answer takes a while (and while an advisor writes), answers media, splits at Telegram's limit and
escapes formatting, and paces messages to Telegram's flood limits (one a second per chat, in
order; 30 a second in all). In groups it speaks only when addressed.

Conversation ids are "telegram:<chat id>"; the outbound sender registered for advisors takes that
id (or the bare chat id).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from functools import partial
from typing import Any

from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.messaging import (
    TELEGRAM_MAX_CHARS,
    CallbackData,
    FloodLimiter,
    RecentIds,
    SharedKeys,
    split_message,
    telegram_html,
)
from bot.settings import Settings
from channels._common import (
    ChatOutput,
    Inbound,
    InboundPath,
    ProviderChannel,
    require_secret,
    was_offered,
    with_retries,
)
from channels.delivery import OnNewMessage
from channels.outbound import Buttons, OutboundSender
from integrations.redis_keys import shared_keys
from integrations.telegram import (
    SECRET_HEADER,
    BotIdentity,
    SendPacer,
    TelegramBot,
    TelegramUpdate,
    read_update,
    retry_wait,
)

logger = logging.getLogger(__name__)
PREFIX = "telegram:"
COMMANDS = {"start": "/greet", "menu": "/show_menu"}
EXPIRED_BUTTON_PAYLOAD = "/show_menu"  # for a button we cannot vouch for
TYPING_AFTER_SECONDS = 1.0  # an answer slower than this shows "typing…" (best effort)
TYPING_EVERY_SECONDS = 4.0  # Telegram shows it for 5 seconds: renewed while the answer is prepared


def conversation_id(chat_id: int) -> str:
    return f"{PREFIX}{chat_id}"


def chat_id_of(recipient_id: str) -> int:
    return int(recipient_id.removeprefix(PREFIX))


class TelegramSender(OutboundSender):
    """Sends through the Bot API: HTML-escaped text, buttons one per row under the last part.
    A bot may write to a chat at any time: no reply window, no templates."""

    def __init__(self, settings: Settings, shared: SharedKeys | None = None) -> None:
        """`shared`: keys in Redis with several replicas (long buttons, the sending pace)."""
        self.api = TelegramBot(settings, SendPacer(shared=shared))
        self.callback_data = CallbackData(shared=shared)
        self._initialising = asyncio.Lock()

    async def ready(self) -> BotIdentity:
        """Who the bot is, asked of Telegram on first use (for groups); one caller at a time."""
        async with self._initialising:
            return await with_retries(self.api.ready, retry_wait)

    async def typing_while(self, chat_id: int, after: float, every: float) -> None:
        """Show "typing…" from `after` seconds on, renewed every `every` seconds, until cancelled;
        a failure is logged and never reaches the answer."""
        await asyncio.sleep(after)
        while True:
            try:
                await self.api.typing(chat_id)
            except Exception as error:  # best effort: a missing indicator is no reason to wait or fail
                logger.info("telegram: typing indicator not shown: %s", error)
            await asyncio.sleep(every)

    async def typing_to(self, recipient_id: str) -> bool:
        """Show "typing…" in this chat (an advisor is writing); raises on failure."""
        await self.ready()
        await self.api.typing(chat_id_of(recipient_id))
        return True

    async def send(self, recipient_id: str, text: str, buttons: Buttons = ()) -> tuple[str, ...]:
        await self.ready()
        chunks = split_message(text, TELEGRAM_MAX_CHARS)
        keyboard = tuple((title, self.callback_data.for_payload(payload)) for title, payload in buttons)
        chat_id = chat_id_of(recipient_id)
        async with self.api.turn(chat_id):  # no other message to this chat between parts or retries
            for number, chunk in enumerate(chunks, 1):
                rows = keyboard if number == len(chunks) else ()
                send = partial(self.api.send_message, chat_id, telegram_html(chunk), rows)
                await with_retries(send, retry_wait)
        return ()  # Telegram reports no delivery

    async def close(self) -> None:
        await self.api.close()


class TelegramOutput(ChatOutput):
    @classmethod
    def name(cls) -> str:
        return "telegram"


class TelegramChannel(ProviderChannel):
    @classmethod
    def name(cls) -> str:
        return "telegram"

    def __init__(self, settings: Settings) -> None:
        self.secret = require_secret("TELEGRAM_WEBHOOK_SECRET", settings.telegram_webhook_secret).encode("utf-8")
        shared = shared_keys(settings, self.name())
        self.sender = TelegramSender(settings, shared)
        self.output = TelegramOutput(self.sender)
        self.inbound = InboundPath(self.name(), self.output, FloodLimiter(shared=shared))
        self.recent = RecentIds(shared=shared)

    def blueprint(self, on_new_message: OnNewMessage) -> Blueprint:
        webhook = self.webhook_blueprint()

        @webhook.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> HTTPResponse:
            received_at = time.time()
            if not hmac.compare_digest(request.headers.get(SECRET_HEADER, "").encode("utf-8"), self.secret):
                logger.warning("telegram: request without the webhook secret rejected")
                return response.text("invalid secret token", status=403)
            try:
                update = read_update(request.json)
            except Exception as error:  # Telegram would redeliver a failed update forever
                logger.error("telegram: unreadable update ignored (%s)", type(error).__name__)
                return response.text("ok")
            if update.chat_id is not None and self.recent.first_time(str(update.update_id)):
                work = partial(self._handle, on_new_message, request.app.ctx.agent, update, received_at)
                self.inbound.in_order(conversation_id(update.chat_id), work)
            return response.text("ok")

        return webhook

    async def _handle(
        self, on_new_message: OnNewMessage, agent: Any, update: TelegramUpdate, received_at: float
    ) -> None:
        me = await self.sender.ready()
        sender = conversation_id(update.chat_id)
        if update.callback_query_id is not None:
            inbound = await self._button_press(agent, update, sender, received_at)
        elif update.is_message and update.addressed_to(me):
            inbound = inbound_of(update, me, sender, received_at)
        else:
            return  # another kind of update, or a group message not for the bot
        typing = asyncio.create_task(
            self.sender.typing_while(update.chat_id, TYPING_AFTER_SECONDS, TYPING_EVERY_SECONDS)
        )
        try:
            await self.inbound.handle(on_new_message, inbound)
        finally:
            typing.cancel()

    async def _button_press(self, agent: Any, update: TelegramUpdate, sender: str, received_at: float) -> Inbound:
        """A button's payload; one the assistant never offered here (forged, or a key a restart
        forgot) shows the menu. The press is acknowledged and the message's buttons taken away
        (both best effort) before the answer."""
        done = [self.sender.api.answer_callback_query(update.callback_query_id)]
        if update.callback_message_id is not None:
            done.append(self.sender.api.remove_keyboard(update.chat_id, update.callback_message_id))
        await asyncio.gather(*done)
        payload = self.sender.callback_data.payload(update.callback_data)
        if payload is None or not await was_offered(agent, sender, payload):
            payload = EXPIRED_BUTTON_PAYLOAD
        return Inbound(sender, received_at, payload=payload)


def inbound_of(update: TelegramUpdate, me: BotIdentity, sender: str, received_at: float) -> Inbound:
    """The person's text without our @mention; /start and /menu as the payloads they stand for."""
    text = update.text_without_mention(me)
    command = text.split()[0].lstrip("/").lower() if text.startswith("/") else ""
    payload = COMMANDS.get(command)
    return Inbound(sender, received_at, text="" if payload else text, payload=payload, media=update.media)
