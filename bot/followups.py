"""Short questions that lean on the conversation: "¿y cuánto cuesta?", "¿dónde?", "¿y para Chile?".

They name an aspect of whatever was being discussed (its cost, where it is done, the documents…) but
no topic. The knowledge base marks which entries answer which aspect (`aspects:`), so the dialogue
can answer within the current topic and country, or say honestly that it has no such detail.
"""

from __future__ import annotations

import re

from bot.text import plain

# In `plain` text (lowercase, no accents, no punctuation).
ASPECT_PATTERNS = {
    "cost": r"cuanto (cuesta|cobran|vale|sale|se paga|hay que pagar|pago)|\bcost(o|os|ara)\b|\bprecio|\btasas?\b"
    r"|\bgratis|\bgratuit|\bpagar?\b|\bcobr(a|an|o)\b|\bplata\b|\bsoles\b",
    "duration": r"cuanto (demora|tarda|tiempo|dura|se demora)|\bdemora|\btarda|\bplazos?\b|cuantos (dias|meses)"
    r"|\bvigencia\b|\bvence\b|\brapido\b",
    "where": r"\bdonde\b|\badonde\b|en que (lugar|oficina|sitio)|\bdireccion\b|\bubica|\bquedan?\b|\bsede\b"
    r"|\boficinas?\b",
    "documents": r"\bdocumentos?\b|\brequisitos?\b|\bpapeles\b|que (necesito|piden|me piden|debo llevar|llevo)\b",
    "who": r"\bquien(es)?\b|\bel empleador\b|\bla empresa lo\b|\blo tramita\b",
    "permit": r"\bvisas?\b|\bpermiso\b|\bresidencia\b|\blegal(mente)?\b",
    "tourist": r"\bturista\b|\bturismo\b|\bde paseo\b|\bde vacaciones\b",
    "recognition": r"\btitulos?\b|\bconvalid|\bhomolog|\brevalid|\bcolegiatura\b|\bprofesion",
    "social_security": r"\baport|\bcotiz|\bpension|\bjubila|\bconvenios?\b|seguro social|seguridad social",
    "help": r"\bayuda\b|\bdenunci|\bconsulados?\b|\bembajadas?\b|\babus|\binspeccion|\bme ayudan\b",
    "scams": r"\bestaf|\bfraude|\bengan|\bfalsa|\btrampa|\bconfiable|\bes real\b|\bes verdad\b|\bcuento\b",
}
_COMPILED = {aspect: re.compile(pattern) for aspect, pattern in ASPECT_PATTERNS.items()}
# Words that open a follow-up and carry no topic of their own.
_LEAD_WORDS = frozenset(
    {"y", "e", "pero", "entonces", "ok", "oka", "ya", "bueno", "osea", "o", "sea", "para", "en", "de"}
)
MAX_FOLLOW_UP_WORDS = 8


def asked_aspects(text: str) -> frozenset[str]:
    """The aspects a message asks about ("¿y cuánto demora?" → {"duration"})."""
    folded = plain(text)
    return frozenset(aspect for aspect, pattern in _COMPILED.items() if pattern.search(folded))


# Words that name no subject of their own, left out when asking whether a message names one.
_NO_SUBJECT_WORDS = _LEAD_WORDS | frozenset(
    "el la los las lo le un una unos unas que q k del al a por con se me mi su eso esto esa ese es son hay "
    "tramite tramites hace hacer sale cuesta cuanto cuantos cuanta donde quien como necesito necesita "
    "piden pide tengo hola gracias".split()
)


def names_a_subject(text: str) -> bool:
    """Whether, besides the aspect it asks about, the message names something ("la tarjeta de retornado")."""
    folded = plain(text)
    for pattern in _COMPILED.values():
        folded = pattern.sub(" ", folded)
    return any(word not in _NO_SUBJECT_WORDS for word in folded.split())


def is_short(text: str) -> bool:
    """Short enough to lean on the conversation for its subject."""
    return len([w for w in plain(text).split() if w not in _LEAD_WORDS]) <= MAX_FOLLOW_UP_WORDS
