"""`python -m extensions.action_server`: the Rasa SDK action server, locked.

`python -m rasa_sdk` listens on every interface and runs any action for whoever reaches it: a crafted
`POST /webhook` could open priority hand-offs for any number. This entry point builds the same Sanic
app (`rasa_sdk.endpoint.create_app`) and

- listens on ACTION_HOST, 127.0.0.1 unless set (containers, where the Rasa server is elsewhere, set
  0.0.0.0);
- answers every path but `/health` only when the request carries the shared secret ACTION_TOKEN in
  the `X-SOM-Action-Token` header (compared in constant time): 401 without it, 403 with another. The
  Rasa server sends it (`headers` of `action_endpoint` in the endpoints file `ops.runner` writes).
  (An `OPTIONS` request is answered, empty, by rasa_sdk's CORS extension before this check; it runs
  nothing and no origin is allowed);
- refuses to start without a token, and with one shorter than 16 characters on an interface other
  than loopback.

The token is read from the environment only: a command line is visible to every user in `ps`.
"""

from __future__ import annotations

import argparse
import hmac
import ipaddress
import logging
import re
import sys

from sanic import Sanic, response
from sanic.request import Request
from sanic.response import HTTPResponse

from bot import services
from bot.settings import MIN_SECRET, Settings
from integrations.redis_keys import shared_keys

logger = logging.getLogger(__name__)
TOKEN_HEADER = "X-SOM-Action-Token"
MIN_TOKEN_LENGTH = MIN_SECRET
OPEN_PATHS = frozenset({"/health"})  # for probes and `ops.runner`; it says only "ok"
# Rasa expands `${ACTION_TOKEN}` in the endpoints file with os.path.expandvars: no `$`, no spaces.
TOKEN_CHARACTERS = re.compile(r"[A-Za-z0-9._~+/=-]+")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def token_problem(token: str, host: str) -> str | None:
    """Why the action server must not start with this token on this interface (operator's words)."""
    if not token:
        return "falta ACTION_TOKEN, el secreto que el servidor de Rasa envía al servidor de acciones."
    if not TOKEN_CHARACTERS.fullmatch(token):
        return "ACTION_TOKEN solo puede tener letras, dígitos y . _ ~ + / = -"
    if not is_loopback(host) and len(token) < MIN_TOKEN_LENGTH:
        return (
            f"ACTION_TOKEN debe tener al menos {MIN_TOKEN_LENGTH} caracteres si el servidor de acciones "
            f"escucha fuera de 127.0.0.1 (ACTION_HOST={host})."
        )
    return None


def require_token(app: Sanic, token: str) -> None:
    """Every request but the open paths needs the token in TOKEN_HEADER."""
    expected = token.encode()

    @app.middleware("request")
    async def check_token(request: Request) -> HTTPResponse | None:
        if request.path in OPEN_PATHS:
            return None
        given = request.headers.get(TOKEN_HEADER)
        if given is None:
            return response.json({"error": f"{TOKEN_HEADER} header required"}, status=401)
        if not hmac.compare_digest(given.encode(), expected):
            logger.warning("action server: request with a wrong %s refused", TOKEN_HEADER)
            return response.json({"error": f"wrong {TOKEN_HEADER}"}, status=403)
        return None


def create_app(token: str, actions: str = "actions") -> Sanic:
    """rasa_sdk's app with the token check in front; no CORS (no browser ever calls it)."""
    from rasa_sdk.endpoint import create_app as create_sdk_app

    if not token:
        raise ValueError("the action server needs a token")
    app = create_sdk_app(actions, cors_origins=None)
    require_token(app, token)
    return app


def share_counters(settings: Settings) -> None:
    """With several action servers, the hand-off limits count across them (Redis)."""
    services.share_counters(lambda namespace: shared_keys(settings, namespace))


def argument_parser() -> argparse.ArgumentParser:
    from rasa_sdk.utils import add_logging_file_arguments, add_logging_level_option_arguments

    parser = argparse.ArgumentParser(
        prog="python -m extensions.action_server",
        description="Servidor de acciones (Rasa SDK) con ACTION_TOKEN; el token se lee del entorno.",
    )
    parser.add_argument("--actions", default="actions", help="paquete de acciones (por defecto, actions)")
    parser.add_argument("--host", help="interfaz (por defecto ACTION_HOST, o 127.0.0.1)")
    parser.add_argument("--port", type=int, help="puerto (por defecto ACTION_PORT, o 5055)")
    add_logging_level_option_arguments(parser)
    add_logging_file_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = argument_parser().parse_args(argv)
    settings = Settings.from_env()
    host, port = args.host or settings.action_host, args.port or settings.action_port
    problem = token_problem(settings.action_token, host)
    if problem:
        print(f"Error: {problem}", file=sys.stderr)
        return 2

    from rasa_sdk import utils
    from rasa_sdk.constants import APPLICATION_ROOT_LOGGER_NAME
    from rasa_sdk.plugin import plugin_manager

    # What `python -m rasa_sdk` sets up before serving (rasa_sdk.__main__.main_from_args).
    logging.getLogger("matplotlib").setLevel(logging.WARN)
    utils.configure_colored_logging(args.loglevel)
    utils.configure_file_logging(
        logging.getLogger(APPLICATION_ROOT_LOGGER_NAME), args.log_file, args.loglevel, args.logging_config_file
    )
    utils.update_sanic_log_level()

    share_counters(settings)
    app = create_app(settings.action_token, args.actions)
    plugin_manager().hook.attach_sanic_app_extensions(app=app)
    logger.info("action server on http://%s:%s (%s required but on /health)", host, port, TOKEN_HEADER)
    app.run(host, port, workers=utils.number_of_sanic_workers())
    return 0


if __name__ == "__main__":
    sys.exit(main())
