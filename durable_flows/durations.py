"""Durations as Inngest writes them: ``timedelta`` or strings such as ``"30s"``, ``"1h30m"``."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

_UNITS = {
    "ms": timedelta(milliseconds=1),
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(value: timedelta | str | int | float, *, what: str = "duration") -> timedelta:
    """Return ``value`` as a ``timedelta``; numbers are seconds. Raises ``ValueError`` clearly."""
    if isinstance(value, timedelta):
        result = value
    elif isinstance(value, bool):
        raise ValueError(f"{what} must be a timedelta or a string like '30s', not {value!r}")
    elif isinstance(value, int | float):
        result = timedelta(seconds=value)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "")
        pos, result = 0, timedelta()
        for match in _PART.finditer(text):
            if match.start() != pos:
                break
            result += float(match.group(1)) * _UNITS[match.group(2)]
            pos = match.end()
        if not text or pos != len(text):
            raise ValueError(
                f"{what} {value!r} is not a duration: use e.g. '30s', '5m', '1h30m', '7d'"
            )
    else:
        raise ValueError(f"{what} must be a timedelta or a string like '30s', not {value!r}")
    if result < timedelta(0):
        raise ValueError(f"{what} must not be negative, got {value!r}")
    return result


def ensure_aware(when: datetime, *, what: str = "datetime") -> datetime:
    if not isinstance(when, datetime):
        raise ValueError(f"{what} must be a datetime, not {type(when).__name__}")
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {when!r}")
    return when
