"""Worker rows: a worker registers, heartbeats, and leaves; the runs and step tasks of
workers that stopped heartbeating are rescued by the living."""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count

from ..conf import flow_settings
from ..models import Run, RunStatus
from ..models import Worker as WorkerRow
from . import leases, step_tasks


def register(
    using: str, name: str, queues: list[str], concurrency: int, functions: list[str]
) -> WorkerRow:
    """This worker's row, with the ids of the functions it executes (the web process and
    the other workers may know others: see ``served``)."""
    row = WorkerRow(
        name=name[:255],
        hostname=socket.gethostname()[:255],
        pid=os.getpid(),
        queues=queues,
        concurrency=concurrency,
        functions=sorted(functions),
    )
    row.save(using=using, force_insert=True)
    return row


def unregister(using: str, row: WorkerRow) -> None:
    WorkerRow.objects.using(using).filter(pk=row.pk).delete()


def beat(using: str, row: WorkerRow, now: datetime, *, rejoin: bool) -> None:
    """Renew ``row``'s heartbeat. ``rejoin``: if another worker declared it dead (a long
    stall), come back under the same id (any run taken from it has a new lease token,
    so it cannot record into it)."""
    if not WorkerRow.objects.using(using).filter(pk=row.pk).update(heartbeat_at=now) and rejoin:
        row.heartbeat_at = now
        row.save(using=using, force_insert=True)


def rescue_dead(using: str, now: datetime, lease: float) -> int:
    """Forget workers silent for ``lease`` seconds and requeue what they held (each a
    crash: see ``leases.rescue``). Returns how many runs and tasks were taken back."""
    workers = WorkerRow.objects.using(using)
    workers.filter(heartbeat_at__lt=now - timedelta(seconds=lease)).delete()
    live = workers.values("id")
    return leases.rescue(using, live) + step_tasks.rescue_orphan_tasks(using, live)


def work_soon(
    using: str, function_ids: list[str], queues: list[str] | None, now: datetime, ahead: timedelta
) -> bool:
    """Is a run claimable now, or a queued one (a retry) due within ``ahead``; or a
    parallel step task?"""
    soon = (
        Run.objects.using(using)
        .filter(
            status__in=[RunStatus.QUEUED, RunStatus.WAITING],
            available_at__lte=now + ahead,
            function_id__in=function_ids,
        )
        .exclude(status=RunStatus.WAITING, available_at__gt=now)
    )
    if queues:
        soon = soon.filter(queue__in=queues)
    return soon.exists() or step_tasks.tasks_due(using, function_ids, queues, now + ahead)


def live(using: str, now: datetime) -> Any:
    """The rows of workers that heartbeat within the lease."""
    since = now - timedelta(seconds=float(flow_settings.LEASE_SECONDS))
    return WorkerRow.objects.using(using).filter(heartbeat_at__gte=since)


def served(using: str, now: datetime) -> set[str]:
    """The ids of the functions that live workers execute."""
    rows = live(using, now).values_list("functions", flat=True)
    return {f for functions in rows if isinstance(functions, list) for f in functions}


def unserved_queued(using: str, now: datetime) -> dict[str, int]:
    """``{function id: queued runs}`` for the functions no live worker executes: those
    runs stay queued until a worker that knows the function starts."""
    queued = Run.objects.using(using).filter(status=RunStatus.QUEUED)
    counts = (
        queued.exclude(function_id__in=sorted(served(using, now)))
        .values_list("function_id")
        .annotate(n=Count("id"))
        .values_list("function_id", "n")
    )
    return dict(counts)
