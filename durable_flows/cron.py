"""Cron expressions: ``"0 9 * * 1-5"``, optionally prefixed ``"TZ=Europe/Paris "``.

Five fields as standard; a sixth, leading field of seconds is accepted too
(``"*/10 * * * * *"``), which cronsim supports and which short tests and demos use.

Parsing and tick arithmetic only (no database); ``scheduler.py`` starts the runs.
Uses ``cronsim`` (the cron evaluator of healthchecks.io): pure Python, no
dependencies, and it handles daylight-saving transitions the way Debian's cron
does: a job at a fixed time (a number in both the minute and the hour field)
runs once on the day of either change, at the first moment the wall clock
reaches that time; every other job runs at each of its ticks in real time, so
through the hour repeated in autumn it runs for both passes. Instants are
handed to and taken from cronsim in UTC, where no hour repeats.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError


@dataclass(frozen=True)
class Schedule:
    expression: str
    tz: ZoneInfo

    def previous(self, now: datetime) -> datetime:
        """The latest tick at or before ``now`` (UTC)."""
        # cronsim iterates strictly before its start: start one second later. The
        # second is added in UTC: arithmetic on an aware local time is wall-clock
        # arithmetic, which drops ``fold`` and, in the hour repeated in autumn,
        # lands an hour early (its ticks were never due).
        start = now.astimezone(UTC).replace(microsecond=0) + timedelta(seconds=1)
        return next(CronSim(self.expression, start.astimezone(self.tz), reverse=True)).astimezone(
            UTC
        )

    def next(self, now: datetime) -> datetime:
        """The first tick strictly after ``now`` (UTC)."""
        start = now.astimezone(UTC).replace(microsecond=0)
        return next(CronSim(self.expression, start.astimezone(self.tz))).astimezone(UTC)


def parse(cron: str) -> Schedule:
    """Parse ``[TZ=Zone ]m h dom mon dow``; raises ``ValueError`` with a clear message."""
    if not isinstance(cron, str) or not cron.strip():
        raise ValueError(f"cron must be a non-empty string like '0 9 * * 1-5', got {cron!r}")
    return _parse(cron)


@lru_cache(maxsize=256)
def _parse(cron: str) -> Schedule:
    text = cron.strip()
    tz = ZoneInfo("UTC")
    if text.startswith(("TZ=", "CRON_TZ=")):
        prefix, _, text = text.partition(" ")
        name = prefix.split("=", 1)[1]
        try:
            tz = ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"cron {cron!r}: unknown time zone {name!r}") from None
        text = text.strip()
    fields = text.split()
    if len(fields) not in (5, 6):
        raise ValueError(
            f"cron {cron!r}: expected 5 fields (minute hour day-of-month month day-of-week), "
            f"got {len(fields)}"
        )
    expression = " ".join(fields)
    try:
        next(CronSim(expression, datetime(2000, 1, 1, tzinfo=tz)))
    except (CronSimError, StopIteration) as exc:
        raise ValueError(f"cron {cron!r} is not a valid schedule: {exc}") from None
    return Schedule(expression, tz)
