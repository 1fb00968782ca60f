"""Per-turn costs of Rasa 3.6 that do no useful work, removed (issue 8; found with py-spy).

- Every action server answer is validated with `jsonschema.validate`, which first re-checks the
  schema itself against its meta-schema: about 30 ms of CPU per turn. The answer is still
  validated against the same schema, by a validator built once.
- Every event read from the tracker store looks its class up by walking the whole `Event`
  subclass tree (`Event.resolve_by_type`): most of the time of loading a tracker. The lookup is
  cached; an unknown name still goes through Rasa's own lookup.
- Every request to an endpoint (the action server) opens a new HTTP session and connection. Each
  endpoint now keeps one session per event loop, and its connections while they are in use.

`install()` runs in the Rasa server process only (see `channels/__init__.py`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from jsonschema import validators
from jsonschema.exceptions import best_match
from rasa.core.actions.action import RemoteAction
from rasa.shared.core.events import Event
from rasa.shared.utils.common import all_subclasses
from rasa.utils.endpoints import DEFAULT_REQUEST_TIMEOUT, EndpointConfig

_rasa_resolve_by_type = Event.resolve_by_type
_event_classes: dict[str, type[Event]] = {}
IDLE_CONNECTION_SECONDS = 2.0


class ActionResultValidator:
    """Rasa's schema for action server answers, checked once and compiled.

    Each event is checked against the one alternative of the schema's `oneOf` that its `event`
    name selects (the alternatives differ by that name), instead of against all 22 of them. An
    invalid answer is re-validated against the whole schema, for Rasa's own error message.
    """

    def __init__(self) -> None:
        schema = RemoteAction.action_response_format_spec()
        validator_class = validators.validator_for(schema)
        validator_class.check_schema(schema)
        event_schema = schema["properties"]["events"]["items"]
        common = {key: value for key, value in event_schema.items() if key != "oneOf"}
        shape = {**schema, "properties": {**schema["properties"], "events": {"type": "array", "items": common}}}
        self.whole = validator_class(schema)
        self.shape = validator_class(shape)
        self.by_event = {each["properties"]["event"]["const"]: validator_class(each) for each in event_schema["oneOf"]}

    def first_error(self, result: Any) -> Exception | None:
        if self.shape.is_valid(result) and all(self._event_is_valid(event) for event in result.get("events") or ()):
            return None
        return best_match(self.whole.iter_errors(result))

    def _event_is_valid(self, event: dict[str, Any]) -> bool:
        validator = self.by_event.get(event["event"])
        return validator is not None and validator.is_valid(event)


_ACTION_RESULT = ActionResultValidator()


def validate_action_result(_action: RemoteAction, result: dict[str, Any]) -> bool:
    """Rasa's `_validate_action_result`: the same schema and error, without the schema re-check."""
    error = _ACTION_RESULT.first_error(result)
    if error is None:
        return True
    error.message += ". Failed to validate Action server response from API."
    raise error


def resolve_event_type(type_name: str, default: type[Event] | None = None) -> type[Event] | None:
    """`Event.resolve_by_type` from a table; rebuilt once when a name is missing (new classes)."""
    found = _event_classes.get(type_name)
    if found is None:
        _event_classes.clear()
        for event_class in all_subclasses(Event):
            _event_classes.setdefault(event_class.type_name, event_class)  # Rasa's first match wins
        found = _event_classes.get(type_name)
    return found if found is not None else _rasa_resolve_by_type(type_name, default)


def kept_alive_session(endpoint: EndpointConfig) -> "_Borrowed":
    """`EndpointConfig.session`, reused by every request of the endpoint on the running loop.

    Idle connections are dropped after `IDLE_CONNECTION_SECONDS`, before the action server (Sanic:
    5 s) closes them: reusing a connection the server is closing loses that action call."""
    loop = asyncio.get_running_loop()
    session_loop, session = endpoint.__dict__.get("_kept_alive", (None, None))
    if session is None or session.closed or session_loop is not loop:
        auth = aiohttp.BasicAuth(endpoint.basic_auth["username"], endpoint.basic_auth["password"]) if endpoint.basic_auth else None
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


def install() -> None:
    RemoteAction._validate_action_result = validate_action_result
    Event.resolve_by_type = staticmethod(resolve_event_type)
    EndpointConfig.session = kept_alive_session
