"""Control from Python (and the admin, API and dashboard): cancel and rerun."""

from __future__ import annotations

from django.db import transaction

from . import clock, notify
from .conf import db_alias
from .engine.state import CANCELLED_EVENT, cancelled_error
from .events import send_system
from .exceptions import RunNotFound
from .models import Run, RunStatus


def _get(run_id: str, using: str) -> Run:
    try:
        return Run.objects.using(using).get(pk=run_id)
    except Run.DoesNotExist:
        raise RunNotFound(f"no run with id {run_id!r}") from None


def cancel(run_id: str) -> Run:
    """Cancel a run: a queued, sleeping or waiting one at once, a running one between steps.

    Cancelling a finished run changes nothing. Returns the run as it now is.
    """
    using = db_alias()
    for _ in range(5):
        now = clock.now()
        with transaction.atomic(using=using):
            stopped = (
                Run.objects.using(using)
                .filter(pk=run_id, status__in=[RunStatus.QUEUED, RunStatus.WAITING])
                .update(
                    status=RunStatus.CANCELLED,
                    error=cancelled_error(),
                    ended_at=now,
                    updated_at=now,
                    available_at=None,
                    cancel_requested=True,
                )
            )
            if stopped:
                run = _get(run_id, using)
                send_system(CANCELLED_EVENT, {"run_id": run.pk, "function_id": run.function_id})
                return run
            flagged = (
                Run.objects.using(using)
                .filter(pk=run_id, status=RunStatus.RUNNING)
                .update(cancel_requested=True, updated_at=now)
            )
        run = _get(run_id, using)
        if flagged or run.is_finished:
            return run
    return run


def rerun(run_id: str) -> str:
    """Start a new run of the same function from the same event; returns its id."""
    using = db_alias()
    original = _get(run_id, using)
    now = clock.now()
    with transaction.atomic(using=using):
        run = Run.objects.using(using).create(
            function_id=original.function_id,
            event_id=original.event_id,
            queue=original.queue,
            priority=original.priority,
            rerun_of=original,
            concurrency_key=original.concurrency_key,
            concurrency_limit=original.concurrency_limit,
            concurrency_key_2=original.concurrency_key_2,
            concurrency_limit_2=original.concurrency_limit_2,
            throttle_key=original.throttle_key,
            created_at=now,
            updated_at=now,
            available_at=now,
        )
        notify.work_available(using)
    return run.pk
