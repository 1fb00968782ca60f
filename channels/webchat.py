"""The web chat widget's files at /webchat/: a demo page, the embed script and what it loads.

Not a chat channel (the widget talks to `channels.socketio`): Rasa mounts it so the Rasa server
serves the widget itself, with no CDN, which an intranet needs. The socket.io client comes from
channels/webchat/package-lock.json, copied into static/webchat/vendor/ by `make webchat`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from rasa.core.channels.channel import InputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

logger = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).parent / "static" / "webchat"
VENDOR_DIR = STATIC_DIR / "vendor"
# The only files served: node_modules and the test-only axe-core stay private.
ASSETS = {
    "widget.js": STATIC_DIR / "widget.js",
    "widget.css": STATIC_DIR / "widget.css",
    "strings.js": STATIC_DIR / "strings.js",
    "logo.svg": STATIC_DIR / "logo.svg",
    "demo.css": STATIC_DIR / "demo.css",
    "socket.io.min.js": VENDOR_DIR / "socket.io.min.js",
}
ASSET_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}
PAGE_HEADERS = {
    **ASSET_HEADERS,
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
}


class WebChatPage(InputChannel):
    @classmethod
    def name(cls) -> str:
        return "webchat"

    def url_prefix(self) -> str:
        return "/webchat"

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        missing = [path.name for path in ASSETS.values() if not path.is_file()]
        if missing:
            logger.warning("web chat: %s missing; run `make webchat`", ", ".join(missing))
        page = Blueprint("webchat_page", __name__)

        @page.route("/", methods=["GET"], strict_slashes=True)
        async def demo(request: Request) -> HTTPResponse:
            return await response.file(STATIC_DIR / "index.html", headers=PAGE_HEADERS)

        @page.route("", methods=["GET"], strict_slashes=True)
        async def to_demo(request: Request) -> HTTPResponse:
            return response.redirect("webchat/")  # relative: also right behind a proxy's path prefix

        @page.route("/<name:str>", methods=["GET"])
        async def asset(request: Request, name: str) -> HTTPResponse:
            path = ASSETS.get(name)
            if path is None or not path.is_file():
                return response.json({"error": "not found"}, status=404)
            return await response.file(path, headers=ASSET_HEADERS)

        return page
