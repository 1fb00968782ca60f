"""Telegram's Bot API as the channel and `python -m bot telegram …` use it (no Rasa here).

An update read into the little the channel needs, sending HTML with an inline keyboard (paced to
Telegram's flood limits), "typing…", answering button presses and taking their keyboard away, the
bot's own identity, and which failures mean Telegram took nothing; also registering the webhook
with its secret, and a polling loop for development without a public URL. The `Bot` is pointed at
TELEGRAM_API_BASE_URL, so tests use a local stand-in.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import httpx
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Message, MessageEntity, Update
from telegram.constants import ChatAction, ChatType, ParseMode
from telegram.error import BadRequest, NetworkError, RetryAfter, TelegramError, TimedOut
from telegram.request import HTTPXRequest

from bot.settings import TELEGRAM_WEBHOOK_PATH, Settings
from integrations.redis_keys import SharedKeys

logger = logging.getLogger(__name__)
ALLOWED_UPDATES = ("message", "edited_message", "callback_query")
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
POLL_SECONDS = 25
RETRY_SECONDS = 3.0
READ_TIMEOUT_SECONDS = 5.0  # python-telegram-bot's default; an answer later than this may still mean "sent"
FILE_KINDS = ("voice", "audio", "photo", "video", "video_note", "sticker", "document")
ADDRESSING: list[str | None] = [MessageEntity.MENTION, MessageEntity.TEXT_MENTION, MessageEntity.BOT_COMMAND]
# Telegram's flood limits (core.telegram.org/bots/faq): about one message a second to a chat, 30 a
# second in all; python-telegram-bot's AIORateLimiter needs `aiolimiter`, so `SendPacer` does it.
CHAT_INTERVAL = 1.0
OVERALL_PER_SECOND = 30
OVERALL_KEY = "pace:all"  # the shared moments of every request of this bot

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
    callback_message_id: int | None = None  # the message whose button was pressed, if still accessible
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
        pressed = query.message.message_id if query.message and query.message.is_accessible else None
        return replace(read, callback_query_id=query.id, callback_data=query.data or "", callback_message_id=pressed)
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


@dataclass
class _ChatPace:
    turn: asyncio.Lock = field(default_factory=asyncio.Lock)  # a whole delivery, retries included
    pace: asyncio.Lock = field(default_factory=asyncio.Lock)  # one attempt at a time
    next_at: float = 0.0  # the clock's time before which this chat gets nothing more
    users: int = 0


class SendPacer:
    """Telegram's flood limits, kept by this process: to one chat, one request at a time and the
    next no sooner than `chat_interval` after the previous one was answered; across chats, at most
    `overall_per_second` requests in any second. A RetryAfter from Telegram also holds that chat
    back as long as Telegram asked; retrying the refused message is the caller's rule (`retry_wait`).

    `turn(chat)` keeps the order: a delivery holds the chat, retries included, so a later message
    cannot overtake one being retried. Waiting is by sleeping until the time is due (no polling),
    and waiters are served first come, first served (asyncio's locks are fair). `clock` and `sleep`
    can be replaced, for tests.

    With `shared` keys (Redis, several replicas) every request also takes its moment from Redis:
    one per `chat_interval` to a chat and one per 1/`overall_per_second` overall, whichever replica
    sends, and a RetryAfter holds the chat back on every replica. Redis unreachable: this process's
    own pacing still applies.
    """

    KEPT_CHATS = 512  # idle chats beyond this many are forgotten (only once their pause is over)

    def __init__(
        self,
        chat_interval: float = CHAT_INTERVAL,
        overall_per_second: int = OVERALL_PER_SECOND,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        shared: SharedKeys | None = None,
    ) -> None:
        self.chat_interval = chat_interval
        self.overall_interval = 1.0 / overall_per_second
        self.clock, self.sleep = clock, sleep
        self.shared = shared
        self._chats: dict[int, _ChatPace] = {}
        self._recent: deque[float] = deque(maxlen=overall_per_second)  # start times of the last requests
        self._overall = asyncio.Lock()

    @asynccontextmanager
    async def turn(self, chat_id: int) -> AsyncIterator[None]:
        """The chat to oneself, after those who asked earlier: around everything one delivery sends."""
        async with self._using(chat_id) as chat, chat.turn:
            yield

    @asynccontextmanager
    async def message(self, chat_id: int) -> AsyncIterator[None]:
        """Around one request that sends a message to `chat_id` (one attempt): enter when it may go."""
        async with self._using(chat_id) as chat, chat.pace:
            await self._until(chat.next_at)
            await self._shared_moment(_chat_key(chat_id), self.chat_interval)
            await self.request()
            try:
                yield
            except RetryAfter as error:
                chat.next_at = self.clock() + _seconds(error.retry_after)
                if self.shared is not None:
                    self.shared.hold(_chat_key(chat_id), _seconds(error.retry_after))
                raise
            finally:
                chat.next_at = max(chat.next_at, self.clock() + self.chat_interval)

    async def request(self) -> None:
        """Wait for a place among the last second's requests (any chat, any method)."""
        async with self._overall:
            if len(self._recent) == self._recent.maxlen:
                await self._until(self._recent[0] + 1.0)
            await self._shared_moment(OVERALL_KEY, self.overall_interval)
            self._recent.append(self.clock())

    async def _shared_moment(self, key: str, spacing: float) -> None:
        wait = self.shared.reserve(key, spacing) if self.shared is not None else None
        if wait:
            await self.sleep(wait)

    async def _until(self, moment: float) -> None:
        wait = moment - self.clock()
        if wait > 0:
            await self.sleep(wait)

    @asynccontextmanager
    async def _using(self, chat_id: int) -> AsyncIterator[_ChatPace]:
        if chat_id not in self._chats and len(self._chats) >= self.KEPT_CHATS:
            now = self.clock()
            for key, pace in list(self._chats.items()):
                if pace.users == 0 and pace.next_at <= now:
                    del self._chats[key]
        chat = self._chats.setdefault(chat_id, _ChatPace())
        chat.users += 1
        try:
            yield chat
        finally:
            chat.users -= 1


def _chat_key(chat_id: int) -> str:
    """Named after the conversation ("telegram:<chat id>"), as `privacy forget` looks for it."""
    return f"pace:telegram:{chat_id}"


def _seconds(after: int | float | timedelta) -> float:
    """A RetryAfter's wait: seconds, or a timedelta with PTB_TIMEDELTA=true."""
    return after.total_seconds() if isinstance(after, timedelta) else float(after)


class TelegramBot:
    """This deployment's bot as the channel uses it: who it is, sending (paced), "typing…",
    answering button presses and taking their keyboards away."""

    def __init__(self, settings: Settings, pacer: SendPacer | None = None) -> None:
        self.bot = make_bot(settings)
        self.pacer = pacer or SendPacer()

    async def ready(self) -> BotIdentity:
        """The bot's identity; the first call initialises the bot (getMe), later ones ask nothing."""
        await self.bot.initialize()
        return BotIdentity(self.bot.id, self.bot.username)

    def turn(self, chat_id: int) -> AbstractAsyncContextManager[None]:
        """Hold the chat for one delivery (see `SendPacer.turn`): messages leave in order."""
        return self.pacer.turn(chat_id)

    async def send_message(self, chat_id: int, html: str, keyboard: Keyboard = ()) -> None:
        """One attempt, when Telegram's flood limits allow it."""
        rows = [[InlineKeyboardButton(title, callback_data=data)] for title, data in keyboard]
        markup = InlineKeyboardMarkup(rows) if rows else None
        async with self.pacer.message(chat_id):
            await self.bot.send_message(chat_id, html, parse_mode=ParseMode.HTML, reply_markup=markup)

    async def typing(self, chat_id: int) -> None:
        """Shows "typing…" in the chat for up to 5 seconds, or until the bot's next message. Raises on failure."""
        await self.pacer.request()
        await self.bot.send_chat_action(chat_id, ChatAction.TYPING)

    async def remove_keyboard(self, chat_id: int, message_id: int) -> None:
        """Takes the buttons off a message, so they cannot be pressed again; a failure is only logged."""
        try:
            await self.pacer.request()
            await self.bot.edit_message_reply_markup(chat_id, message_id, reply_markup=None)
        except TelegramError as error:
            logger.info("telegram: keyboard of a pressed message not removed (%s)", error)

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
        return _seconds(error.retry_after)
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
        request=HTTPXRequest(connection_pool_size=32, read_timeout=READ_TIMEOUT_SECONDS),
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
