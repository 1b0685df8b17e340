"""Durations as Inngest writes them: ``timedelta`` or strings such as ``"30s"``, ``"1h30m"``.

The range is bounded so that adding a duration to the engine's "now" can never
overflow: a duration is 0 to ``MAX_DURATION`` (36,500 days, about 100 years),
and a point in time handed to the engine (an event's ``ts``, ``sleep_until``,
``RetryAfterError``) is at most ``MAX_DURATION`` after now.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta

MAX_DURATION = timedelta(days=36_500)
_RANGE = "durations range from 0 to 36500 days (about 100 years)"

_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(value: timedelta | str | int | float, *, what: str = "duration") -> timedelta:
    """Return ``value`` as a ``timedelta``; numbers are seconds, and so is ``"0"``.

    Raises ``ValueError`` naming ``what`` and the cause: not a duration, negative,
    or longer than ``MAX_DURATION``.
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise ValueError(f"{what} must be a timedelta or a string like '30s', not {value!r}")
    elif isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"{what} must be a finite number of seconds, got {value!r}")
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _parse_text(value, what)
    else:
        raise ValueError(f"{what} must be a timedelta or a string like '30s', not {value!r}")
    if seconds < 0:
        raise ValueError(f"{what} must not be negative, got {value!r}")
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"{what} {value!r} is too long: {_RANGE}")
    return value if isinstance(value, timedelta) else timedelta(seconds=seconds)


def describe_duration(delta: timedelta) -> str:
    """``delta`` in words, to the second: "30 days", "12 hours", "1 day 6 hours"."""
    remaining = round(delta.total_seconds())
    parts = []
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count} {unit}" + ("s" if count != 1 else ""))
    return " ".join(parts) or "0 seconds"


def _parse_text(value: str, what: str) -> float:
    text = value.strip().replace(" ", "")
    if text == "0":  # zero is zero in every unit, as the number 0 is
        return 0.0
    pos, seconds = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        # In float seconds, not timedelta: a huge count is refused below, not overflowed.
        seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if not text or pos != len(text):
        raise ValueError(f"{what} {value!r} is not a duration: use e.g. '30s', '5m', '1h30m', '7d'")
    return seconds


def ensure_aware(when: datetime, *, what: str = "datetime") -> datetime:
    if not isinstance(when, datetime):
        raise ValueError(f"{what} must be a datetime, not {type(when).__name__}")
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {when!r}")
    return when


def ensure_within_range(when: datetime, now: datetime, *, what: str = "datetime") -> datetime:
    """An aware ``when`` at most ``MAX_DURATION`` after ``now``; else ``ValueError``."""
    ensure_aware(when, what=what)
    if when - now > MAX_DURATION:
        raise ValueError(
            f"{what} {when.isoformat()} is too far in the future: at most 36500 days "
            "(about 100 years) from now"
        )
    return when
