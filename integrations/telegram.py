"""Telegram's Bot API as the channel and `python -m bot telegram …` use it (no Rasa here).

One way to build the `Bot` (pointed at TELEGRAM_API_BASE_URL, so tests use a local stand-in),
registering the webhook with its secret, and a polling loop for development without a public URL.
"""

from __future__ import annotations

import asyncio
import logging

import httpx
from telegram import Bot
from telegram.error import TelegramError
from telegram.request import HTTPXRequest

from bot.settings import TELEGRAM_WEBHOOK_PATH, Settings

logger = logging.getLogger(__name__)
ALLOWED_UPDATES = ("message", "edited_message", "callback_query")
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
POLL_SECONDS = 25
RETRY_SECONDS = 3.0

# httpx logs every request URL at INFO, and Bot API URLs carry the bot's token.
logging.getLogger("httpx").setLevel(logging.WARNING)


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
