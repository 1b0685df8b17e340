"""Every transition of a run, as one named function with a conditional update.

A transition filters on the state it expects (status, lease token); zero rows
updated means someone else moved the run first, and raises ``LeaseLost``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.db import IntegrityError, connections, transaction

from .. import clock, notify
from ..conf import flow_settings
from ..events import send_system
from ..exceptions import LeaseLost, StepOutputError
from ..models import Run, RunStatus, Step, new_id
from . import flow_control

FINISHED_EVENT = "durable_flows/function.finished"
FAILED_EVENT = "durable_flows/function.failed"
CANCELLED_EVENT = "durable_flows/function.cancelled"


def encode_output(value: Any, *, what: str = "step result") -> Any:
    """Validate a result as JSON within MAX_STEP_OUTPUT_BYTES; return it as replay will see it."""
    try:
        text = json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise StepOutputError(f"{what} is not JSON-serialisable: {exc}") from None
    limit = flow_settings.MAX_STEP_OUTPUT_BYTES
    if len(text.encode()) > limit:
        raise StepOutputError(
            f"{what} is {len(text.encode())} bytes, over MAX_STEP_OUTPUT_BYTES ({limit})"
        )
    if "\\u0000" in text:
        raise StepOutputError(f"{what} contains a NUL character, which databases cannot store")
    return json.loads(text)


# --- claiming -----------------------------------------------------------------


def claim(
    using: str, worker_id: str, queues: list[str] | None, function_ids: list[str], limit: int = 1
) -> tuple[str, list[Run]]:
    """Lease up to ``limit`` runnable runs to ``worker_id`` in one short transaction."""
    now = clock.now()
    token = new_id()
    lease = {
        "status": RunStatus.RUNNING,
        "lease_owner": worker_id,
        "lease_token": token,
        "updated_at": now,
    }
    runnable = Run.objects.using(using).claimable(now, queues, function_ids)
    runnable = runnable.order_by("-priority", "available_at", "id")
    with transaction.atomic(using=using):
        if flow_control.limits_claims(function_ids):
            ids = flow_control.pick(using, runnable, limit)
            if not ids:
                return token, []
            Run.objects.using(using).filter(id__in=ids).update(**lease)
        elif connections[using].vendor == "postgresql":
            ids = list(
                runnable.select_for_update(skip_locked=True).values_list("id", flat=True)[:limit]
            )
            if not ids:
                return token, []
            Run.objects.using(using).filter(id__in=ids).update(**lease)
        else:
            # SQLite: write first, so the transaction takes the write lock at once
            # (a read-then-write transaction can fail to upgrade its lock).
            picked = runnable.values("id")[:limit]
            if not Run.objects.using(using).filter(id__in=picked).update(**lease):
                return token, []
        runs = list(
            Run.objects.using(using)
            .filter(lease_token=token)
            .select_related("event")
            .order_by("-priority", "available_at", "id")
        )
        Run.objects.using(using).filter(lease_token=token, started_at__isnull=True).update(
            started_at=now
        )
    for run in runs:
        run.started_at = run.started_at or now
    return token, runs


def rescue_orphans(using: str, live_worker_ids: Any) -> int:
    """Put runs held by dead workers back in the queue; they replay from their checkpoints."""
    now = clock.now()
    return (
        Run.objects.using(using)
        .orphaned(live_worker_ids)
        .update(
            status=RunStatus.QUEUED,
            lease_owner=None,
            lease_token=None,
            available_at=now,
            updated_at=now,
        )
    )


# --- while executing ------------------------------------------------------------


def _held(run: Run, token: str, using: str):
    return Run.objects.using(using).filter(pk=run.pk, lease_token=token, status=RunStatus.RUNNING)


def fence(run: Run, token: str, using: str) -> bool:
    """Inside a checkpoint transaction: prove we still hold the lease, and lock the run.

    Returns whether a cancel has been requested. Raises ``LeaseLost`` otherwise.
    """
    table = Run._meta.db_table
    connection = connections[using]
    now = connection.ops.adapt_datetimefield_value(clock.now())
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {connection.ops.quote_name(table)} SET updated_at = %s "  # noqa: S608
            "WHERE id = %s AND lease_token = %s AND status = %s RETURNING cancel_requested",
            [now, run.pk, token, RunStatus.RUNNING.value],
        )
        row = cursor.fetchone()
    if row is None:
        raise LeaseLost(f"run {run.pk} is no longer leased to this worker")
    return bool(row[0])


def save_step(using: str, run: Run, existing: Step | None, **fields: Any) -> Step:
    """Write a step's checkpoint (inside the caller's transaction)."""
    if existing is not None:
        Step.objects.using(using).filter(pk=existing.pk).update(**fields)
        for key, value in fields.items():
            setattr(existing, key, value)
        return existing
    step = Step(run=run, **fields)
    try:
        with transaction.atomic(using=using):
            step.save(using=using, force_insert=True)
    except IntegrityError:
        raise LeaseLost(f"step {fields.get('name')!r} of run {run.pk} was recorded elsewhere")
    return step


def release(run: Run, token: str, using: str, available_at: datetime, **fields: Any) -> None:
    """Give the run back to the queue (a retry, a graceful stop), due at ``available_at``."""
    now = clock.now()
    updated = _held(run, token, using).update(
        status=RunStatus.QUEUED,
        lease_owner=None,
        lease_token=None,
        available_at=available_at,
        updated_at=now,
        **fields,
    )
    if updated != 1:
        raise LeaseLost(f"run {run.pk} is no longer leased to this worker")
    if available_at <= now:
        notify.work_available(using)


def finish(
    run: Run,
    token: str,
    using: str,
    status: RunStatus,
    *,
    output: Any = None,
    error: dict[str, Any] | None = None,
) -> None:
    """End the run and send its lifecycle event, in one transaction."""
    now = clock.now()
    with transaction.atomic(using=using):
        updated = _held(run, token, using).update(
            status=status,
            output=output,
            error=error,
            ended_at=now,
            updated_at=now,
            lease_owner=None,
            lease_token=None,
            available_at=None,
        )
        if updated != 1:
            raise LeaseLost(f"run {run.pk} is no longer leased to this worker")
        run.status, run.output, run.error, run.ended_at = status, output, error, now
        data: dict[str, Any] = {"run_id": run.pk, "function_id": run.function_id}
        if run.event_id:
            data["event_id"] = run.event_id
        # As Inngest: "finished" for every completed or failed run, plus "failed"
        # or "cancelled" for those outcomes.
        if status == RunStatus.COMPLETED:
            send_system(FINISHED_EVENT, {**data, "output": output})
        elif status == RunStatus.FAILED:
            send_system(FINISHED_EVENT, {**data, "error": error})
            send_system(FAILED_EVENT, {**data, "error": error})
        else:
            send_system(CANCELLED_EVENT, data)


def cancelled_error() -> dict[str, Any]:
    return {"type": "Cancelled", "message": "the run was cancelled"}
