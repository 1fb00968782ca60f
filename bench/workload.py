"""The fixed workload: conversation scripts written the way people type on WhatsApp.

Every message expects an answer. A hand-off request only ever ends a script: after it the
assistant stays quiet while the person waits for an advisor.
"""

from __future__ import annotations

# One script per conversation; together they cover the seven audiences of the SOM leaflet,
# greetings, questions naming countries and their follow-ups, a fallback and a hand-off.
SCRIPTS: dict[str, tuple[str, ...]] = {
    "work_abroad": ("hola", "quiero irme a trabajar a italia, que necesito", "y para españa?", "gracias"),
    "labour_problem_abroad": (
        "buenas", "estoy en argentina y mi jefe no me paga hace dos meses", "y si estoy en chile?", "gracias",
    ),
    "return": (
        "hola buenas tardes",
        "quiero regresar al peru el proximo año despues de 8 años afuera, q beneficios hay",
        "aporte 10 años en españa, eso me sirve para jubilarme en peru?",
        "chau",
    ),
    "returned": ("hola", "regrese de italia hace un mes y busco chamba", "como saco la tarjeta del migrante retornado"),
    "family": (
        "holaa", "mi hijo trabaja en chile y no le quieren pagar, como lo ayudo", "y si estuviera en argentina?",
    ),
    "andean_worker": (
        "buenos dias", "soy boliviano y tengo contrato para trabajar en una empresa de lima", "que es el sivitma",
    ),
    "foreigner": ("hola", "soy venezolano, puedo trabajar en peru?", "y si fuera colombiano?"),
    "pension_follow_up": ("mis aportes de afuera me sirven para la pension?", "y con chile?", "y con japon?"),
    "job_offer": (
        "me ofrecen chamba en japon pero la agencia me pide pagar 2000 dolares por adelantado", "eres un robot?",
    ),
    "fallback": ("hola", "xkcd qwerty zzz", "cual es el numero de telefono para llamar al som"),
    "handoff": ("hola", "tengo aportes en chile", "quiero hablar con un asesor"),
}  # fmt: skip

# The long conversation cycles through these questions (no hand-off, nothing a "yes" could accept).
# There are 31 so that turns 3-7 and 96-100 carry the same messages: only the history differs.
LONG_CYCLE: tuple[str, ...] = (
    "hola",
    "quiero irme a trabajar a italia, que necesito",
    "y para españa?",
    "como se si una agencia de empleo es formal",
    "estoy en argentina y mi jefe no me paga hace dos meses",
    "y si estoy en chile?",
    "aporte 10 años en españa, eso me sirve para jubilarme en peru?",
    "y con chile?",
    "quiero regresar al peru el proximo año despues de 8 años afuera, q beneficios hay",
    "regrese de italia hace un mes y busco chamba",
    "como saco la tarjeta del migrante retornado",
    "mi hijo trabaja en chile y no le quieren pagar, como lo ayudo",
    "mi esposa esta en estados unidos, que puedo hacer para ayudarla",
    "soy boliviano y tengo contrato para trabajar en una empresa de lima",
    "que es el sivitma",
    "soy venezolano, puedo trabajar en peru?",
    "y si fuera colombiano?",
    "cual es el numero de telefono para llamar al som",
    "que es el servicio de orientacion al migrante",
    "eres un robot?",
    "gracias",
    "me ofrecen chamba en japon pero la agencia me pide pagar 2000 dolares por adelantado",
    "tienen whatsapp o correo?",
    "mis aportes de afuera me sirven para la pension?",
    "japon",
    "xkcd qwerty zzz",
    "quiero trabajar en canada como hago",
    "y en alemania?",
    "menu",
    "ya trabajo afuera",
    "buenas noches, una consulta, en estados unidos tengo derechos si no tengo papeles?",
)
LONG_TURNS = 100
EARLY_TURNS = range(3, 8)  # "turn 5": turns 3-7 (1-based)
LATE_TURNS = range(LONG_TURNS - 4, LONG_TURNS + 1)  # "turn 100": turns 96-100
assert all(
    LONG_CYCLE[(early - 1) % len(LONG_CYCLE)] == LONG_CYCLE[(late - 1) % len(LONG_CYCLE)]
    for early, late in zip(EARLY_TURNS, LATE_TURNS)
), "the early and late windows must carry the same messages"


def long_conversation() -> tuple[str, ...]:
    return tuple(LONG_CYCLE[turn % len(LONG_CYCLE)] for turn in range(LONG_TURNS))
