"""Replacements for Rasa 3.6 internals that have no extension point, one module per patch.

Importing these modules changes nothing. `install()` is called once at start-up by the Rasa server's
entry point (`extensions.serve`); it is idempotent, installs a patch only on the Rasa version and the
exact source it was written against (anything else keeps Rasa's own code, with a warning), is turned
off whole by `SOM_RASA_PATCHES=off`, and logs one line naming what is on.

What does have an extension point is not here: the NLU shortcuts are graph components named in
config.yml (`extensions.nlu`), the policy is `extensions.intent_rules_policy`.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import rasa

logger = logging.getLogger(__name__)
SWITCH = "SOM_RASA_PATCHES"
RASA_SERIES = "3.6."


@dataclass(frozen=True, eq=False)
class Patch:
    """One Rasa internal (`owner.attribute`) replaced by `replacement`, written against the source
    whose SHA-256 is `rasa_source_sha256`. `rasas()` is Rasa's own version, for fallbacks and tests."""

    name: str
    owner: type
    attribute: str
    replacement: Any
    rasa_source_sha256: str
    original: Any = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "original", self.owner.__dict__[self.attribute])

    def rasas(self) -> Callable:
        return self.original.__get__(None, self.owner)

    def source_sha256(self) -> str:
        return hashlib.sha256(inspect.getsource(self.rasas()).encode("utf-8")).hexdigest()

    def is_installed(self) -> bool:
        return self.owner.__dict__.get(self.attribute) is self.replacement

    def fits(self) -> str | None:
        """Why this patch must not be installed here, or None when it fits."""
        if not rasa.__version__.startswith(RASA_SERIES):
            return f"Rasa {rasa.__version__} is not {RASA_SERIES}x"
        if self.source_sha256() != self.rasa_source_sha256:
            return f"{self.owner.__name__}.{self.attribute} is not the source it was written against"
        return None

    def install(self) -> None:
        setattr(self.owner, self.attribute, self.replacement)

    def uninstall(self) -> None:
        setattr(self.owner, self.attribute, self.original)


def all_patches() -> list[Patch]:
    from extensions.patches import action_result, empty_domain, endpoint_session, event_lookup, graph_runner

    return [module.PATCH for module in (action_result, event_lookup, endpoint_session, graph_runner, empty_domain)]


def install(environ: Mapping[str, str] = os.environ) -> list[str]:
    """Install every patch that fits this Rasa, unless switched off; return the names now on."""
    patches = all_patches()
    if environ.get(SWITCH, "on").strip().lower() in {"off", "0", "false", "no"}:
        logger.info("Rasa patches off (%s=off)", SWITCH)
        return []
    for patch in patches:
        if patch.is_installed():
            continue
        reason = patch.fits()
        if reason is None:
            patch.install()
        else:
            logger.warning("Rasa patch %s not installed: %s; Rasa's own code runs", patch.name, reason)
    on = [patch.name for patch in patches if patch.is_installed()]
    logger.info("Rasa patches on: %s", ", ".join(on) or "none")
    return on
