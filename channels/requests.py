"""Reading HTTP requests the same way in every channel: a JSON object body, a bearer token."""

from __future__ import annotations

from typing import Any

from sanic.request import Request


def json_object(request: Request) -> dict[str, Any] | None:
    """The body as a JSON object, or None when it is not one (not JSON at all, or a list, a number…)."""
    try:
        body = request.json
    except Exception:  # sanic raises InvalidUsage on a body that is not JSON
        return None
    return body if isinstance(body, dict) else None


def bearer_token(request: Request) -> str | None:
    """The token of an `Authorization: Bearer …` header, if there is one."""
    header = request.headers.get("authorization", "")
    return (header[7:].strip() or None) if header.lower().startswith("bearer ") else None
