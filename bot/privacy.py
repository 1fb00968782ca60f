"""Personal data never reaches the logs: conversation ids are pseudonymised, and numbers and e-mails masked.

A pseudonym is an HMAC of the conversation id under a deployment secret: without the key, nobody
can run every Peruvian mobile number through it and read the conversation ids back out of the logs.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import os
import re
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.settings import PROJECT_ROOT, Settings

logger = logging.getLogger(__name__)

# A local part is tried once, from the start of its run (the lookbehind): restarted at every position
# of a long word or number it backtracked over the rest of it each time, quadratic on 100k characters.
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# Phone numbers, DNI (8 digits), passports and carnés (letters + digits): any run of 6+ digits,
# possibly separated by spaces or dashes, or an alphanumeric code holding 6+ digits. Linear: a match is
# tried only where a number starts (after a non-word character) and a failed try backtracks over its
# own run only; tests/test_privacy.py times it on adversarial input.
_NUMBER = re.compile(r"(?<!\w)\+?\d[\d\s-]{4,}\d(?!\w)|\b[A-Za-z]{0,3}\d{6,}[A-Za-z]?\b")
# Digits joined by a dash to a word ("20261203-043602-electric-annuity.tar.gz", Rasa's model names)
# are a name, not a number. Bounded, so the whole stays linear.
_NAME_TAIL = re.compile(r"(?:-\d{1,12}){0,3}-[A-Za-z]")

# The key belongs to the installation, not to one SOM_VAR_DIR: the servers, the command line and the
# servers a test or benchmark starts on a temporary data folder must all give a conversation the same
# pseudonym, or log lines could not be matched to it.
KEY_FILE = PROJECT_ROOT / "var" / "log_pseudonym.key"
PRIVATE = 0o600  # the mode of every secret file under var/


def hash_id(conversation_id: str, key: bytes | None = None) -> str:
    """A short, stable pseudonym for a conversation id (which may be a phone number): HMAC-SHA256
    under the deployment's key (`pseudonym_key`), so that it cannot be reversed by enumeration."""
    digest = hmac.new(key if key is not None else _installation_key(), conversation_id.encode("utf-8"), hashlib.sha256)
    return digest.hexdigest()[:12]


def pseudonym_key(settings: Settings, key_file: Path = KEY_FILE) -> bytes:
    """LOG_PSEUDONYM_KEY when set (production: the same secret on every pod); else the key in
    `key_file`, generated once with mode 0600. Several processes starting at once agree on one."""
    if settings.log_pseudonym_key:
        return settings.log_pseudonym_key.encode("utf-8")
    try:
        return _read_or_create_key(key_file)
    except OSError as error:  # a read-only installation: pseudonyms stay secret, but per process
        logger.warning("log pseudonym key not kept (%s): set LOG_PSEUDONYM_KEY", type(error).__name__)
        return secrets.token_bytes(32)


def _read_or_create_key(key_file: Path) -> bytes:
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        try:
            write_private(key_file, secrets.token_hex(32), exclusive=True)
        except FileExistsError:  # another process made it first: use theirs
            pass
    if key_file.stat().st_mode & 0o077:
        os.chmod(key_file, PRIVATE)
    key = key_file.read_text(encoding="utf-8").strip()
    if not key:
        raise OSError(f"{key_file} is empty")
    return key.encode("utf-8")


def write_private(path: Path, text: str, exclusive: bool = False) -> None:
    """Write a secret file readable by its owner only (0600), complete or not at all: it is written
    under another name and moved in place. `exclusive` refuses to replace an existing file
    (FileExistsError), so that of several processes creating it at once, one wins."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mkstemp: mode 0600
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
        os.chmod(temporary, PRIVATE)
        if exclusive:
            os.link(temporary, path)  # fails if `path` exists, unlike a rename
        else:
            os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


@functools.lru_cache(maxsize=1)
def _installation_key() -> bytes:
    return pseudonym_key(Settings.from_env())


def redact(text: str) -> str:
    """Mask e-mail addresses and document or phone numbers in free text."""
    return _NUMBER.sub(_masked_number, _EMAIL.sub("[correo]", text))


def _masked_number(number: re.Match[str]) -> str:
    return number.group(0) if _NAME_TAIL.match(number.string, number.end()) else "[número]"


def install_log_redaction() -> None:
    """Mask personal data in every log record this process creates, whatever logger or handler.

    Rasa and its libraries log user text at DEBUG level, and an exception's message may quote it;
    this keeps phone numbers, e-mails and document numbers out of the logs even then."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "redacting", False):
        return
    logging.setLogRecordFactory(_RedactingFactory(previous))


_TRACEBACKS = logging.Formatter()


class _RedactingFactory:
    """A log record factory that redacts what `previous` creates; `redacting` marks it as installed."""

    redacting = True

    def __init__(self, previous: Callable[..., logging.LogRecord]) -> None:
        self._previous = previous

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self._previous(*args, **kwargs)
        try:
            record.msg, record.args = redact(record.getMessage()), None
            if record.exc_info:
                # Formatters print `exc_text` when it is set; without `exc_info` none can format the
                # exception (and its message) anew, unredacted. The standard QueueHandler does the same.
                record.exc_text = redact(_TRACEBACKS.formatException(record.exc_info))
                record.exc_info = None
            elif record.exc_text:
                record.exc_text = redact(record.exc_text)
            if record.stack_info:
                record.stack_info = redact(record.stack_info)
        except Exception:  # a malformed record is left for logging itself to report
            pass
        return record
