"""A run's step waterfall: every attempt of every step as a bar on one time axis.

A step's row is its latest attempt; the attempts that raised before it are in its
``failed_attempts`` (start, end, error), so the bars of a retried step show each try
and the back-off between them, as the histories of Inngest and Temporal do.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .. import clock
from ..display import error_head, error_line
from ..models import Run, Step, StepStatus
from ..templatetags.durable_flows import format_duration

TICKS = 5  # tick labels over the waterfall: 0 %, 25 %, 50 %, 75 %, 100 % of the span


@dataclass
class Attempt:
    """One try of a step: when it began and ended, and what it raised (if it did)."""

    number: int
    started_at: datetime
    ended_at: datetime | None
    status: str
    error: dict[str, Any] | None
    offset: float = 0.0
    width: float = 0.0
    start: str = ""
    duration: str = ""

    @property
    def error_line(self) -> str:
        """The error's type and the first line of its message."""
        return error_line(self.error)


def _parse(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def attempts(step: Step) -> list[Attempt]:
    """The step's failed attempts, then its latest one (the row itself)."""
    tries: list[Attempt] = []
    history = step.failed_attempts if isinstance(step.failed_attempts, list) else []
    for entry in history:
        started = _parse(entry.get("started_at")) if isinstance(entry, dict) else None
        if started is None:
            continue
        error = entry.get("error") if isinstance(entry.get("error"), dict) else None
        ended = _parse(entry.get("ended_at"))
        tries.append(Attempt(len(tries) + 1, started, ended, StepStatus.FAILED, error))
    if step.started_at is not None:
        error = error_head(step)
        tries.append(Attempt(len(tries) + 1, step.started_at, step.ended_at, step.status, error))
    return tries


def waterfall(run: Run, steps: list[Step]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Each step's bars (one per attempt; offsets and widths in % of the run's span) with
    its first start and whole duration; and the time axis's ticks."""
    now = clock.now()
    t0 = run.started_at or run.created_at
    t1 = run.ended_at or now
    tried = [(step, attempts(step)) for step in steps]
    for _, tries in tried:
        for attempt in tries:
            t0 = min(t0, attempt.started_at)
            if attempt.ended_at and attempt.ended_at > t1:
                t1 = attempt.ended_at
    span = max((t1 - t0).total_seconds(), 0.001)

    def place(start: datetime, end: datetime) -> tuple[float, float]:
        offset = min(max(0.0, (start - t0).total_seconds() / span * 100), 99.4)
        width = max(0.6, (end - start).total_seconds() / span * 100)
        return round(offset, 2), round(min(width, 100 - offset), 2)

    rows = []
    for step, tries in tried:
        open_end = now if not run.is_finished else t1
        for attempt in tries:
            end = attempt.ended_at or open_end
            attempt.offset, attempt.width = place(attempt.started_at, end)
            attempt.start = format_duration(attempt.started_at - t0)
            attempt.duration = format_duration(end - attempt.started_at)
        first = tries[0].started_at if tries else t0
        last = (tries[-1].ended_at or open_end) if tries else open_end
        rows.append(
            {
                "step": step,
                "attempts": tries,
                "retried": len(tries) > 1,
                "start": format_duration(first - t0),
                "duration": format_duration(last - first),
            }
        )
    ticks = [
        {"at": round(i * 100 / (TICKS - 1), 2), "label": format_duration((t1 - t0) * i / 4)}
        for i in range(TICKS)
    ]
    return rows, ticks
