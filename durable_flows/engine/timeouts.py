"""``timeouts=df.Timeouts(start=..., finish=...)``: cancel runs that start or finish too late.

``start`` is measured from the run's creation to its first execution; ``finish``
from its first execution (when its first step started) to its end. A running
run is checked between steps by its executor; queued, sleeping and waiting
runs are swept by the workers' maintenance loop (``sweep``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..definitions.functions import Function, registry
from ..models import Run, RunStatus
from . import outcomes

SWEEP_BATCH = 200


def _error(kind: str, limit: Any) -> dict[str, Any]:
    what = "start" if kind == "start" else "finish"
    return {
        "type": "FunctionTimeout",
        "message": f"the run did not {what} within its timeouts.{kind} ({limit})",
        "timeout": kind,
    }


def overdue(function: Function, run: Run, now: datetime, *, started: bool) -> dict[str, Any] | None:
    """The cancellation error if ``run`` (being executed) is past a timeout, else None."""
    limits = function.timeouts
    if limits is None or run.started_at is None:
        return None
    start, finish = limits.start_delta, limits.finish_delta
    if start is not None and not started and run.started_at - run.created_at > start:
        return _error("start", limits.start)
    if finish is not None and now - run.started_at > finish:
        return _error("finish", limits.finish)
    return None


def sweep(using: str, now: datetime) -> int:
    """Cancel queued, sleeping and waiting runs past their function's timeouts."""
    cancelled = 0
    for function in registry.all():
        limits = function.timeouts
        if limits is None:
            continue
        runs = Run.objects.using(using).filter(function_id=function.id)
        late: list[tuple[str, dict[str, Any]]] = []
        if limits.start_delta is not None:
            ids = runs.filter(
                status=RunStatus.QUEUED,
                started_at__isnull=True,
                created_at__lt=now - limits.start_delta,
            ).values_list("id", flat=True)[:SWEEP_BATCH]
            late += [(run_id, _error("start", limits.start)) for run_id in ids]
        if limits.finish_delta is not None:
            ids = runs.filter(
                status__in=[RunStatus.QUEUED, RunStatus.WAITING],
                started_at__lt=now - limits.finish_delta,
            ).values_list("id", flat=True)[:SWEEP_BATCH]
            late += [(run_id, _error("finish", limits.finish)) for run_id in ids]
        for run_id, error in late:
            if outcomes.cancel(run_id, using, error=error) == "cancelled":
                cancelled += 1
    return cancelled
