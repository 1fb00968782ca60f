"""Every event read from the tracker store looks its class up by walking the whole `Event` subclass
tree (`Event.resolve_by_type`): most of the time of loading a tracker. The lookup is now a table; an
unknown name still goes through Rasa's own lookup."""

from __future__ import annotations

from rasa.shared.core.events import Event
from rasa.shared.utils.common import all_subclasses

from extensions.patches import Patch

_event_classes: dict[str, type[Event]] = {}


def resolve_event_type(type_name: str, default: type[Event] | None = None) -> type[Event] | None:
    """`Event.resolve_by_type` from a table; rebuilt once when a name is missing (new classes)."""
    found = _event_classes.get(type_name)
    if found is None:
        _event_classes.clear()
        for event_class in all_subclasses(Event):
            _event_classes.setdefault(event_class.type_name, event_class)  # Rasa's first match wins
        found = _event_classes.get(type_name)
    return found if found is not None else PATCH.rasas()(type_name, default)


# SHA-256 of the Rasa 3.6 source this replaces; a different source keeps Rasa's own code.
RASA_SOURCE_SHA256 = "b5cf570fa7f286c7059ec73d8880528d03a78b28cf4e80285a46079c0fa65968"
PATCH = Patch("event_lookup", Event, "resolve_by_type", staticmethod(resolve_event_type), RASA_SOURCE_SHA256)
