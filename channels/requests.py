"""Reading HTTP requests the same way in every channel: a JSON object body, a bearer token, the
client's address behind trusted proxies, a secret compared in constant time."""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable
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


def client_address(peer: str, forwarded_for: str | None, trusted_proxies: Iterable[str]) -> str:
    """Who sent a request: the peer, unless the peer is a trusted proxy; then the nearest address in
    X-Forwarded-For that is not a trusted proxy (read from the right: only proxies append to it)."""
    trusted = [_network(proxy) for proxy in trusted_proxies]
    trusted = [network for network in trusted if network is not None]

    def is_trusted(address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in trusted)

    if not forwarded_for or not is_trusted(peer):
        return peer
    for hop in reversed([hop.strip() for hop in forwarded_for.split(",") if hop.strip()]):
        if not is_trusted(hop):
            return hop[:64]
    return peer


def request_client(request: Request, trusted_proxies: Iterable[str]) -> str:
    return client_address(request.ip or "", request.headers.get("x-forwarded-for"), trusted_proxies)


def same_secret(given: str | None, expected: str) -> bool:
    """A constant-time comparison; an empty expected secret matches nothing."""
    return bool(expected) and given is not None and hmac.compare_digest(given.encode(), expected.encode())


def _network(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        return None
