"""Every request to an endpoint (the action server) opens a new HTTP session and connection. Each
endpoint now keeps one session per event loop, and its connections while they are in use."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from rasa.utils.endpoints import DEFAULT_REQUEST_TIMEOUT, EndpointConfig

from extensions.patches import Patch

IDLE_CONNECTION_SECONDS = 2.0


def kept_alive_session(endpoint: EndpointConfig) -> _Borrowed:
    """`EndpointConfig.session`, reused by every request of the endpoint on the running loop.

    Idle connections are dropped after `IDLE_CONNECTION_SECONDS`, before the action server (Sanic:
    5 s) closes them: reusing a connection the server is closing loses that action call."""
    loop = asyncio.get_running_loop()
    session_loop, session = endpoint.__dict__.get("_kept_alive", (None, None))
    if session is None or session.closed or session_loop is not loop:
        auth = (
            aiohttp.BasicAuth(endpoint.basic_auth["username"], endpoint.basic_auth["password"])
            if endpoint.basic_auth
            else None
        )
        session = aiohttp.ClientSession(
            headers=endpoint.headers,
            auth=auth,
            timeout=aiohttp.ClientTimeout(total=DEFAULT_REQUEST_TIMEOUT),
            connector=aiohttp.TCPConnector(keepalive_timeout=IDLE_CONNECTION_SECONDS),
        )
        endpoint._kept_alive = (loop, session)
    return _Borrowed(session)


class _Borrowed:
    """Lets Rasa write `async with endpoint.session()` without closing the shared session."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def __aenter__(self) -> aiohttp.ClientSession:
        return self.session

    async def __aexit__(self, *_exc: Any) -> None:
        return None


# SHA-256 of the Rasa 3.6 source this replaces; a different source keeps Rasa's own code.
RASA_SOURCE_SHA256 = "e55aa13d9d4fb4bc440ac33b870a97ee162b76dda7ccb6bf68433567475fdffb"
PATCH = Patch("endpoint_session", EndpointConfig, "session", kept_alive_session, RASA_SOURCE_SHA256)
