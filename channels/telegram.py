"""Telegram through python-telegram-bot: `POST /webhooks/telegram/webhook`, channel name `telegram`.

Unlike Rasa's Telegram connector, it checks the webhook's secret token, always answers Telegram
200 (an error never makes Telegram redeliver in a loop), ignores redelivered updates, works in the
background, answers every button press so the spinner stops, answers media, splits at Telegram's
limit and escapes formatting. In groups it speaks only when addressed.

Conversation ids are "telegram:<chat id>"; the outbound sender registered for advisors takes that
id (or the bare chat id).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import time
from datetime import timedelta
from functools import partial
from typing import Any

import httpx
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Message, MessageEntity, Update
from telegram.constants import ChatType, ParseMode
from telegram.error import BadRequest, NetworkError, RetryAfter, TelegramError, TimedOut

from bot.messaging import TELEGRAM_MAX_CHARS, CallbackData, Option, RecentIds, split_message, telegram_html
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
from integrations.redis_keys import shared_keys
from integrations.telegram import SECRET_HEADER, make_bot

logger = logging.getLogger(__name__)
PREFIX = "telegram:"
COMMANDS = {"start": "/greet", "menu": "/show_menu"}
EXPIRED_BUTTON_PAYLOAD = "/show_menu"  # for a button we cannot vouch for
FILE_KINDS = ("voice", "audio", "photo", "video", "video_note", "sticker", "document")


def conversation_id(chat_id: int) -> str:
    return f"{PREFIX}{chat_id}"


def chat_id_of(recipient_id: str) -> int:
    return int(recipient_id.removeprefix(PREFIX))


def media_of(message: Message) -> tuple[dict[str, Any], ...]:
    """What the person sent besides text, for the answer and for the advisor."""
    media = []
    for kind in FILE_KINDS:
        value = getattr(message, kind)
        if value:
            file = value[-1] if isinstance(value, tuple) else value  # photos come in several sizes
            media.append({"type": kind, "file_id": file.file_id})
    if message.location:
        location = message.location
        media.append({"type": "location", "latitude": location.latitude, "longitude": location.longitude})
    if message.contact:
        media.append({"type": "contact"})
    return tuple(media)


def _retry_wait(error: Exception) -> float | None:
    """Retry only when Telegram did not take the message: flood control, a 5xx, or no connection."""
    if isinstance(error, RetryAfter):
        after = error.retry_after  # seconds, or a timedelta with PTB_TIMEDELTA=true
        return after.total_seconds() if isinstance(after, timedelta) else float(after)
    if isinstance(error, NetworkError) and not isinstance(error, TimedOut | BadRequest):
        cause = error.__cause__
        return 0.0 if cause is None or isinstance(cause, httpx.ConnectError) else None
    return None


class TelegramSender:
    """Sends through the Bot API: inline keyboards one button per row, HTML-escaped text."""

    reply_window = None  # a bot may write to a chat at any time

    def __init__(self, settings: Settings) -> None:
        self.bot = make_bot(settings)
        self.callback_data = CallbackData(shared=shared_keys(settings, "telegram"))
        self._initialising = asyncio.Lock()

    async def ready(self) -> Bot:
        """The bot, initialised on first use (getMe tells us our username, for groups)."""
        async with self._initialising:
            await with_retries(self.bot.initialize, _retry_wait)
        return self.bot

    async def send(self, recipient_id: str, text: str, buttons: tuple[Option, ...] = ()) -> None:
        bot = await self.ready()
        chunks = split_message(text, TELEGRAM_MAX_CHARS)
        keyboard = self._keyboard(buttons)
        for number, chunk in enumerate(chunks, 1):
            send = partial(
                bot.send_message,
                chat_id_of(recipient_id),
                telegram_html(chunk),
                parse_mode=ParseMode.HTML,
                reply_markup=keyboard if number == len(chunks) else None,
            )
            await with_retries(send, _retry_wait)

    def _keyboard(self, buttons: tuple[Option, ...]) -> InlineKeyboardMarkup | None:
        if not buttons:
            return None
        data = self.callback_data.for_payload
        rows = [[InlineKeyboardButton(title, callback_data=data(payload))] for title, payload in buttons]
        return InlineKeyboardMarkup(rows)

    async def close(self) -> None:
        await self.bot.shutdown()


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
        self.sender = TelegramSender(settings)
        self.output = TelegramOutput(self.sender)
        self.inbound = InboundPath(self.name(), self.output)
        self.recent = RecentIds(shared=shared_keys(settings, self.name()))

    def blueprint(self, on_new_message: OnNewMessage) -> Blueprint:
        webhook = self.webhook_blueprint()

        @webhook.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> HTTPResponse:
            received_at = time.time()
            if not hmac.compare_digest(request.headers.get(SECRET_HEADER, "").encode("utf-8"), self.secret):
                logger.warning("telegram: request without the webhook secret rejected")
                return response.text("invalid secret token", status=403)
            try:
                update = Update.de_json(request.json, self.sender.bot)
            except Exception as error:  # Telegram would redeliver a failed update forever
                logger.error("telegram: unreadable update ignored (%s)", type(error).__name__)
                return response.text("ok")
            chat = update.effective_chat
            if chat is not None and self.recent.first_time(str(update.update_id)):
                work = partial(self._handle, on_new_message, request.app.ctx.agent, update, received_at)
                self.inbound.in_order(conversation_id(chat.id), work)
            return response.text("ok")

        return webhook

    async def _handle(self, on_new_message: OnNewMessage, agent: Any, update: Update, received_at: float) -> None:
        bot = await self.sender.ready()
        sender = conversation_id(update.effective_chat.id)
        if update.callback_query:
            inbound = await self._button_press(agent, update, sender, received_at)
        else:
            message = update.message or update.edited_message
            if message is None or not addressed_to(message, bot):
                return
            inbound = inbound_of(message, bot, sender, received_at)
        await self.inbound.handle(on_new_message, inbound)

    async def _button_press(self, agent: Any, update: Update, sender: str, received_at: float) -> Inbound:
        """A button's payload; one the assistant never offered here (forged, or a key a restart
        forgot) shows the menu."""
        query = update.callback_query
        try:
            await query.answer()  # stops the button's spinner
        except TelegramError as error:
            logger.warning("telegram: button press not acknowledged (%s)", error)
        payload = self.sender.callback_data.payload(query.data or "")
        if payload is None or not await was_offered(agent, sender, payload):
            payload = EXPIRED_BUTTON_PAYLOAD
        return Inbound(sender, received_at, payload=payload)


def _mentions(message: Message) -> dict[MessageEntity, str]:
    kinds = [MessageEntity.MENTION, MessageEntity.TEXT_MENTION, MessageEntity.BOT_COMMAND]
    return {**message.parse_entities(kinds), **message.parse_caption_entities(kinds)}


def addressed_to(message: Message, bot: Bot) -> bool:
    """Private chats always; in groups, a reply to the bot, an @mention or a /command@bot."""
    if message.chat.type == ChatType.PRIVATE:
        return True
    replied = message.reply_to_message
    if replied and replied.from_user and replied.from_user.id == bot.id:
        return True
    handle = f"@{bot.username}".lower()
    for entity, value in _mentions(message).items():
        if entity.type == MessageEntity.TEXT_MENTION and entity.user and entity.user.id == bot.id:
            return True
        if entity.type in (MessageEntity.MENTION, MessageEntity.BOT_COMMAND) and value.lower().endswith(handle):
            return True
    return False


def inbound_of(message: Message, bot: Bot, sender: str, received_at: float) -> Inbound:
    """The person's text without our @mention; /start and /menu as the payloads they stand for."""
    text = re.sub(f"@{re.escape(bot.username)}\\b", " ", message.text or message.caption or "", flags=re.I).strip()
    command = text.split()[0].lstrip("/").lower() if text.startswith("/") else ""
    payload = COMMANDS.get(command)
    return Inbound(
        sender,
        received_at,
        text="" if payload else text,
        payload=payload,
        media=media_of(message),
    )
