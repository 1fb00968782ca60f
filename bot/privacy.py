"""Personal data never reaches the logs: conversation ids are hashed, and numbers and e-mails masked."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from typing import Any

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
# Phone numbers, DNI (8 digits), passports and carnés (letters + digits): any run of 6+ digits,
# possibly separated by spaces or dashes, or an alphanumeric code holding 6+ digits.
_NUMBER = re.compile(r"(?<!\w)\+?\d[\d\s-]{4,}\d(?!\w)|\b[A-Za-z]{0,3}\d{6,}[A-Za-z]?\b")


def hash_id(conversation_id: str) -> str:
    """A short, stable pseudonym for a conversation id (which may be a phone number)."""
    return hashlib.sha256(conversation_id.encode("utf-8")).hexdigest()[:12]


def redact(text: str) -> str:
    """Mask e-mail addresses and document or phone numbers in free text."""
    return _NUMBER.sub("[número]", _EMAIL.sub("[correo]", text))


def install_log_redaction() -> None:
    """Mask personal data in every log record this process creates, whatever logger or handler.

    Rasa and its libraries log user text at DEBUG level; this keeps phone numbers, e-mails and
    document numbers out of the logs even then."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "redacting", False):
        return
    logging.setLogRecordFactory(_RedactingFactory(previous))


class _RedactingFactory:
    """A log record factory that redacts what `previous` creates; `redacting` marks it as installed."""

    redacting = True

    def __init__(self, previous: Callable[..., logging.LogRecord]) -> None:
        self._previous = previous

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self._previous(*args, **kwargs)
        try:
            record.msg, record.args = redact(record.getMessage()), None
        except Exception:  # a malformed record is left for logging itself to report
            pass
        return record
