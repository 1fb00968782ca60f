"""Telegram's Bot API as the channel and `python -m bot telegram …` use it (no Rasa here).

An update read into the little the channel needs, sending HTML with an inline keyboard, answering
button presses, the bot's own identity, and which failures mean Telegram took nothing; also
registering the webhook with its secret, and a polling loop for development without a public URL.
The `Bot` is pointed at TELEGRAM_API_BASE_URL, so tests use a local stand-in.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import httpx
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Message, MessageEntity, Update
from telegram.constants import ChatType, ParseMode
from telegram.error import BadRequest, NetworkError, RetryAfter, TelegramError, TimedOut
from telegram.request import HTTPXRequest

from bot.settings import TELEGRAM_WEBHOOK_PATH, Settings

logger = logging.getLogger(__name__)
ALLOWED_UPDATES = ("message", "edited_message", "callback_query")
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
POLL_SECONDS = 25
RETRY_SECONDS = 3.0
FILE_KINDS = ("voice", "audio", "photo", "video", "video_note", "sticker", "document")
ADDRESSING: list[str | None] = [MessageEntity.MENTION, MessageEntity.TEXT_MENTION, MessageEntity.BOT_COMMAND]

Keyboard = tuple[tuple[str, str], ...]  # (title, callback data): one button per row

# httpx logs every request URL at INFO, and Bot API URLs carry the bot's token.
logging.getLogger("httpx").setLevel(logging.WARNING)


@dataclass(frozen=True)
class BotIdentity:
    """Who the bot is (from getMe): in groups, people address it by this id and username."""

    id: int
    username: str


@dataclass(frozen=True)
class TelegramUpdate:
    """What the channel needs of one update: a button press, a message (new or edited), or neither."""

    update_id: int
    chat_id: int | None  # None when there is no chat to answer
    chat_type: str = ""
    callback_query_id: str | None = None  # a button press, with its data
    callback_data: str = ""
    is_message: bool = False
    text: str = ""  # the message's text, or its media's caption
    media: tuple[dict[str, Any], ...] = ()
    addressees: frozenset[int] = frozenset()  # users it names: its reply's author, text mentions
    handles: tuple[str, ...] = ()  # @mentions and /commands as written: "@som_bot", "/menu@som_bot"

    def addressed_to(self, me: BotIdentity) -> bool:
        """Private chats always; in groups, a reply to the bot, an @mention or a /command@bot."""
        if self.chat_type == ChatType.PRIVATE:
            return True
        handle = f"@{me.username}".lower()
        return me.id in self.addressees or any(value.lower().endswith(handle) for value in self.handles)

    def text_without_mention(self, me: BotIdentity) -> str:
        """The person's words: in groups our @mention only says whom they are for."""
        return re.sub(f"@{re.escape(me.username)}\\b", " ", self.text, flags=re.I).strip()


def read_update(data: Any) -> TelegramUpdate:
    """An update's JSON as the channel needs it; raises if it is not an update."""
    update = Update.de_json(data, None)
    chat = update.effective_chat
    read = TelegramUpdate(update.update_id, chat.id if chat else None, chat.type if chat else "")
    if query := update.callback_query:
        return replace(read, callback_query_id=query.id, callback_data=query.data or "")
    message = update.message or update.edited_message
    if message is None:
        return read
    addressees, handles = _addressing(message)
    text = message.text or message.caption or ""
    return replace(read, is_message=True, text=text, media=media_of(message), addressees=addressees, handles=handles)


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


def _addressing(message: Message) -> tuple[frozenset[int], tuple[str, ...]]:
    entities = {**message.parse_entities(ADDRESSING), **message.parse_caption_entities(ADDRESSING)}
    users = {entity.user.id for entity in entities if entity.type == MessageEntity.TEXT_MENTION and entity.user}
    replied = message.reply_to_message
    if replied and replied.from_user:
        users.add(replied.from_user.id)
    handles = tuple(value for entity, value in entities.items() if entity.type != MessageEntity.TEXT_MENTION)
    return frozenset(users), handles


class TelegramBot:
    """This deployment's bot as the channel uses it: who it is, sending, answering button presses."""

    def __init__(self, settings: Settings) -> None:
        self.bot = make_bot(settings)

    async def ready(self) -> BotIdentity:
        """The bot's identity; the first call initialises the bot (getMe), later ones ask nothing."""
        await self.bot.initialize()
        return BotIdentity(self.bot.id, self.bot.username)

    async def send_message(self, chat_id: int, html: str, keyboard: Keyboard = ()) -> None:
        rows = [[InlineKeyboardButton(title, callback_data=data)] for title, data in keyboard]
        markup = InlineKeyboardMarkup(rows) if rows else None
        await self.bot.send_message(chat_id, html, parse_mode=ParseMode.HTML, reply_markup=markup)

    async def answer_callback_query(self, query_id: str) -> None:
        """Stops the button's spinner; a failure is only logged, the press is handled anyway."""
        try:
            await self.bot.answer_callback_query(query_id)
        except TelegramError as error:
            logger.warning("telegram: button press not acknowledged (%s)", error)

    async def close(self) -> None:
        await self.bot.shutdown()


def retry_wait(error: Exception) -> float | None:
    """Retry only when Telegram did not take the message: flood control, a 5xx, or no connection."""
    if isinstance(error, RetryAfter):
        after = error.retry_after  # seconds, or a timedelta with PTB_TIMEDELTA=true
        return after.total_seconds() if isinstance(after, timedelta) else float(after)
    if isinstance(error, NetworkError) and not isinstance(error, TimedOut | BadRequest):
        cause = error.__cause__
        return 0.0 if cause is None or isinstance(cause, httpx.ConnectError) else None
    return None


def make_bot(settings: Settings) -> Bot:
    """A Bot for this deployment. PTB appends the token to `base_url`: {base}/bot<token>/<method>."""
    base = settings.telegram_api_base_url
    return Bot(
        settings.telegram_bot_token,
        base_url=f"{base}/bot",
        base_file_url=f"{base}/file/bot",
        request=HTTPXRequest(connection_pool_size=32),
        get_updates_request=HTTPXRequest(connection_pool_size=1),
    )


async def set_webhook(settings: Settings) -> str:
    """Point Telegram at PUBLIC_URL's webhook, with the secret it must send back; return the URL."""
    url = settings.public_url + TELEGRAM_WEBHOOK_PATH
    async with make_bot(settings) as bot:
        await bot.set_webhook(url, allowed_updates=list(ALLOWED_UPDATES), secret_token=settings.telegram_webhook_secret)
    return url


async def poll(settings: Settings, webhook_url: str) -> None:
    """Fetch updates with getUpdates and post each to `webhook_url` as Telegram would, forever.

    Telegram refuses getUpdates while a webhook is set, so this removes the webhook first. An
    update is acknowledged (by the next offset) only after the local server took it.
    """
    headers = {SECRET_HEADER: settings.telegram_webhook_secret}
    async with make_bot(settings) as bot, httpx.AsyncClient(timeout=10) as http:
        await bot.delete_webhook()
        offset = None
        while True:
            try:
                updates = await bot.get_updates(
                    offset=offset, timeout=POLL_SECONDS, allowed_updates=list(ALLOWED_UPDATES)
                )
            except TelegramError as error:
                logger.warning("getUpdates failed (%s); retrying", error)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            for update in updates:
                try:
                    answer = await http.post(webhook_url, json=update.to_dict(), headers=headers)
                    answer.raise_for_status()
                except httpx.HTTPError as error:
                    logger.warning("the local webhook did not take update %s (%s); retrying", update.update_id, error)
                    await asyncio.sleep(RETRY_SECONDS)
                    break
                offset = update.update_id + 1
