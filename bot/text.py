"""Text helpers shared by the domain: how typed text is compared, and how placeholders are filled."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Any


def fold(text: str) -> str:
    """Lowercase and strip accents, so "Japón" and "japon" compare equal (ñ becomes n)."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c)).strip()


def plain(text: str) -> str:
    """`fold`, with punctuation and emoji as spaces and runs of spaces as one: how people type on a phone."""
    return " ".join("".join(c if c.isalnum() else " " for c in fold(text)).split())


def fill(text: str, values: Mapping[str, Any]) -> str:
    """Replace each {name} in content text with its value; unknown placeholders stay as they are."""
    for key, value in values.items():
        text = text.replace("{" + key + "}", str(value))
    return text
