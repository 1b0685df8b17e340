"""Leases: a worker's hold on a run, and every way of taking or letting go of it.

One verb per transition (see the engine package's docstring): ``claim``,
``fence`` (prove the lease inside a checkpoint), ``release`` (back to the queue:
a retry, a graceful stop, an engine error), ``hand_back`` (claimed runs that did
not start), ``suspend`` (to waiting), ``rescue`` (a dead worker's runs, the
crash counted) and ``sweep`` (a live worker's runs that none of its threads
holds). Each filters on the state it expects (status, lease token); zero rows
updated means someone else moved the run first, and raises ``LeaseLost``.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import F, Value

from .. import clock, notify, storage
from ..exceptions import LeaseLost
from ..models import Run, RunStatus, new_id
from . import slots

log = logging.getLogger("durable_flows.worker")


def claim(
    using: str, worker_id: str, queues: list[str] | None, function_ids: list[str], limit: int = 1
) -> tuple[str, list[Run]]:
    """Lease up to ``limit`` runnable runs to ``worker_id`` (queued or waiting -> running),
    in one short transaction that commits before any of their code executes.

    A claimed run's ``fresh`` attribute says whether it had never started (so it
    has no checkpoints to load).
    """
    now = clock.now()
    token = new_id()
    store = storage.of(using)
    if not slots.limits_claims(function_ids):
        return token, store.claim(worker_id, token, now, queues, function_ids, limit)
    runnable = Run.objects.using(using).claimable(now, queues, function_ids)
    with transaction.atomic(using=using):
        ids = slots.pick(using, runnable.order_by("-priority", "available_at", "id"), limit)
        return token, store.lease(ids, worker_id, token, now) if ids else []


WORKER_CRASHED = "WorkerCrashed"


def rescue(using: str, live_worker_ids: Any) -> int:
    """Put runs held by dead workers back in the queue; they replay from their checkpoints.

    The worker died while it held them (a step that killed its process, the OOM
    killer, a SIGKILL...): that counts as a failed attempt of each (``attempt``),
    so a run that kills every worker that executes it fails after its retries
    instead of crash-looping them all.
    """
    return _requeue(
        Run.objects.using(using).orphaned(live_worker_ids),
        attempt=F("attempt") + 1,
        error=Value(crashed_error(), output_field=Run._meta.get_field("error")),
    )


def crashed_error(crashes: int = 1, retries: int | None = None) -> dict[str, Any]:
    """The error of a run whose worker died (``retries``: and that fails for it)."""
    if retries is None:
        message = "the worker executing the run died (its process was killed or crashed)"
    else:
        message = (
            f"the workers executing the run died {crashes} times (its process was killed "
            f"or crashed), more than its {retries} retries allow"
        )
    return {"type": WORKER_CRASHED, "message": message}


def crashes(run: Run) -> int:
    """How often the workers executing ``run`` died (0 unless the last was a crash)."""
    error = run.error
    if isinstance(error, dict) and error.get("type") == WORKER_CRASHED:
        return run.attempt
    return 0


def sweep(using: str, worker_id: str, held: list[str], stale: datetime) -> int:
    """Put back in the queue the runs leased to ``worker_id`` (alive) since before
    ``stale`` that none of its threads holds."""
    held_by = Run.objects.using(using).filter(
        status=RunStatus.RUNNING, lease_owner=worker_id, updated_at__lt=stale
    )
    return _requeue(held_by.exclude(pk__in=held))


def _requeue(runs: Any, **fields: Any) -> int:
    """Put ``runs`` (a queryset of running runs) back in the queue, due now."""
    now = clock.now()
    return runs.update(
        status=RunStatus.QUEUED,
        lease_owner=None,
        lease_token=None,
        available_at=now,
        updated_at=now,
        **fields,
    )


def held(run: Run, token: str, using: str):
    return Run.objects.using(using).filter(pk=run.pk, lease_token=token, status=RunStatus.RUNNING)


def fence(run: Run, token: str, using: str) -> bool:
    """Inside a checkpoint transaction: prove we still hold the lease, and lock the run.

    Returns whether a cancel has been requested. Raises ``LeaseLost`` otherwise.
    """
    return storage.of(using).fence(run.pk, token)


def lease_lost(run: Run, token: str, using: str, exc: LeaseLost) -> None:
    """The executor was told it may not go on with ``run``: leave it to its new owner if
    another worker really holds it; if this worker still does (its work could not be
    recorded), give it back to the queue so that it is not left running, held by no one."""
    if held(run, token, using).exists():
        log.warning("run %s: could not record its progress (%s); handing it back", run.pk, exc)
        release(run, token, using, clock.now() + timedelta(seconds=1))
    else:
        log.warning("run %s: no longer leased to this worker (%s); leaving it", run.pk, exc)


def release(run: Run, token: str, using: str, available_at: datetime, **fields: Any) -> None:
    """Give the run back to the queue (a retry, a graceful stop), due at ``available_at``."""
    _let_go(run, token, using, RunStatus.QUEUED, available_at, **fields)


def hand_back(runs: list[Run], token: str, using: str) -> None:
    """Put claimed runs that did not start back in the queue, as they were."""
    now = clock.now()
    held = Run.objects.using(using).filter(lease_token=token, status=RunStatus.RUNNING)
    fields = {"lease_owner": None, "lease_token": None, "available_at": now, "updated_at": now}
    for fresh in (True, False):
        ids = [run.pk for run in runs if run.fresh == fresh]
        if ids:
            extra = {"started_at": None} if fresh else {}
            held.filter(pk__in=ids).update(status=RunStatus.QUEUED, **fields, **extra)
    notify.work_available(using)


def suspend(run: Run, token: str, using: str, available_at: datetime | None) -> None:
    """The run waits (sleep, event, child run) holding no worker; wakes at ``available_at``
    (None: only when something wakes it). Inside the step's checkpoint transaction."""
    _let_go(run, token, using, RunStatus.WAITING, available_at)


def _let_go(
    run: Run,
    token: str,
    using: str,
    status: RunStatus,
    available_at: datetime | None,
    **fields: Any,
) -> None:
    now = clock.now()
    updated = held(run, token, using).update(
        status=status,
        lease_owner=None,
        lease_token=None,
        available_at=available_at,
        updated_at=now,
        **fields,
    )
    if updated != 1:
        raise LeaseLost(f"run {run.pk} is no longer leased to this worker")
    if available_at is not None and available_at <= now:
        notify.work_available(using)
