"""Control from Python (and the admin, API and dashboard): cancel, rerun, retry, signal."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from . import clock, notify
from .conf import db_alias
from .engine import mailbox, outcomes, waits
from .exceptions import DurableFlowsError, RunNotFound
from .models import Run


def _get(run_id: str, using: str) -> Run:
    try:
        return Run.objects.using(using).get(pk=run_id)
    except Run.DoesNotExist:
        raise RunNotFound(f"no run with id {run_id!r}") from None


def cancel(run_id: str) -> Run:
    """Cancel a run: a queued, sleeping or waiting one at once, a running one between steps.

    The runs it invoked that have not finished are cancelled too, recursively; their
    error names this run (``error["cancelled_with"]``). Cancelling a finished run
    changes nothing. Returns the run as it now is.

    Raises:
        RunNotFound: No run has this id.
    """
    using = db_alias()
    run = _get(run_id, using)
    for _ in range(5):
        outcome = outcomes.cancel(run_id, using)
        run = _get(run_id, using)
        if outcome or run.is_finished:
            return run
    return run


def signal(run_id: str, name: str, data: dict[str, Any] | None = None) -> str:
    """Send a message to one run: the next ``ctx.step.wait_for_signal`` of ``name`` it
    reaches (or is waiting in) returns ``data``. Kept until then; taken once. Inside
    ``transaction.atomic()`` it commits or rolls back with the caller. Returns the
    signal's id.

    Raises:
        RunNotFound: No run has this id, or it has finished.
    """
    return mailbox.send(run_id, name, data, db_alias())


def rerun(run_id: str) -> str:
    """Start a new run of the same function from the same event; returns its id.

    The new run starts from scratch (no step of the old run is reused); its
    ``rerun_of`` is the old run.

    Raises:
        RunNotFound: No run has this id.
    """
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
        waits.arm_cancel_rules([run], using)
        notify.work_available(using)
    return run.pk


class NotRetriable(DurableFlowsError, ValueError):
    """Only a failed run can be retried from its failed step."""


def retry(run_id: str) -> Run:
    """Resume a failed run from the step that failed it (completed steps are not
    executed again; the failed step gets its retries anew). Returns the run, queued.

    Not exported by ``durable_flows``: ``from durable_flows.control import retry``.

    Raises:
        RunNotFound: No run has this id.
        NotRetriable: The run is not failed.
    """
    using = db_alias()
    run = _get(run_id, using)
    if not outcomes.retry_failed(run_id, using):
        raise NotRetriable(f"run {run_id} is {run.status}: only a failed run can be retried")
    return _get(run_id, using)
