"""When advisors work: days, hours and holidays in Lima time, edited in data/content/office_hours.yml."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

DAY_NAMES = ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo")


@dataclass(frozen=True)
class OfficeHours:
    timezone: str
    days: frozenset[int]  # 0 = Monday
    opens: dt.time
    closes: dt.time
    holidays: frozenset[dt.date]

    @classmethod
    def load(cls, path: Path) -> OfficeHours:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        return cls(
            timezone=raw.get("timezone", "America/Lima"),
            days=frozenset(DAY_NAMES.index(day) for day in raw["days"]),
            opens=dt.time.fromisoformat(raw["opens"]),
            closes=dt.time.fromisoformat(raw["closes"]),
            holidays=frozenset(raw.get("holidays") or ()),
        )

    def is_open(self, at: dt.datetime) -> bool:
        """Whether advisors are at work at `at` (an aware datetime, any zone)."""
        local = at.astimezone(ZoneInfo(self.timezone))
        return (
            local.weekday() in self.days
            and local.date() not in self.holidays
            and self.opens <= local.time() < self.closes
        )

    def describe(self) -> dict[str, str]:
        """Placeholders for the out-of-hours message: {days}, {opens}, {closes}."""
        ordered = sorted(self.days)
        contiguous = ordered == list(range(ordered[0], ordered[-1] + 1))
        days = (
            f"de {DAY_NAMES[ordered[0]]} a {DAY_NAMES[ordered[-1]]}"
            if contiguous and len(ordered) > 2
            else ", ".join(DAY_NAMES[d] for d in ordered)
        )
        return {"days": days, "opens": self.opens.strftime("%H:%M"), "closes": self.closes.strftime("%H:%M")}
