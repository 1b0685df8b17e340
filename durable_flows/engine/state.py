"""Every transition of a run, as one named function with a conditional update.

A transition filters on the state it expects (status, lease token); zero rows
updated means someone else moved the run first, and raises ``LeaseLost``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.db import IntegrityError, connections, transaction
from django.db.models import Value
from django.db.models.functions import Coalesce

from .. import clock, notify, waits
from ..conf import flow_settings
from ..events import json_bytes, send_system
from ..exceptions import LeaseLost, StepOutputError
from ..models import Run, RunStatus, Step, StepStatus, new_id
from . import flow_control

FINISHED_EVENT = "durable_flows/function.finished"
FAILED_EVENT = "durable_flows/function.failed"
CANCELLED_EVENT = "durable_flows/function.cancelled"


def encode_output(value: Any, *, what: str = "step result") -> Any:
    """Validate a result as JSON within MAX_STEP_OUTPUT_BYTES; return it as replay will see it."""
    try:
        encoded = json_bytes(value)
    except ValueError as exc:
        raise StepOutputError(f"{what} {exc}") from None
    limit = flow_settings.MAX_STEP_OUTPUT_BYTES
    if len(encoded) > limit:
        raise StepOutputError(
            f"{what} is {len(encoded)} bytes, over MAX_STEP_OUTPUT_BYTES ({limit})"
        )
    return json.loads(encoded)


# --- claiming -----------------------------------------------------------------


def claim(
    using: str, worker_id: str, queues: list[str] | None, function_ids: list[str], limit: int = 1
) -> tuple[str, list[Run]]:
    """Lease up to ``limit`` runnable runs to ``worker_id`` in one short transaction.

    A claimed run's ``fresh`` attribute says whether it had never started (so it
    has no checkpoints to load).
    """
    now = clock.now()
    token = new_id()
    connection = connections[using]
    if connection.vendor == "postgresql" and not flow_control.limits_claims(function_ids):
        return token, _claim_pg(using, worker_id, token, now, queues, function_ids, limit)
    lease = {
        "status": RunStatus.RUNNING,
        "lease_owner": worker_id,
        "lease_token": token,
        "updated_at": now,
        "started_at": Coalesce("started_at", Value(now)),
    }
    rows = Run.objects.using(using)
    runnable = rows.claimable(now, queues, function_ids).order_by("-priority", "available_at", "id")
    with transaction.atomic(using=using):
        if flow_control.limits_claims(function_ids):
            ids = flow_control.pick(using, runnable, limit)
            if not ids:
                return token, []
            rows.filter(id__in=ids).update(**lease)
            claimed = rows.filter(id__in=ids)
        else:
            # SQLite: write first, so the transaction takes the write lock at once
            # (a read-then-write transaction can fail to upgrade its lock).
            if not rows.filter(id__in=runnable.values("id")[:limit]).update(**lease):
                return token, []
            claimed = rows.filter(
                status=RunStatus.RUNNING, lease_owner=worker_id, lease_token=token
            )
        runs = list(claimed.select_related("event").order_by("-priority", "available_at", "id"))
    return token, runs


def _claim_pg(
    using: str,
    worker_id: str,
    token: str,
    now: Any,
    queues: list[str] | None,
    function_ids: list[str],
    limit: int,
) -> list[Run]:
    """PostgreSQL: pick (SKIP LOCKED) and lease in one statement, then load the runs.

    The WHERE clause is ``RunQuerySet.claimable()``'s, written out so that the pick
    and the lease are one round trip; the partial index df_run_claimable serves it.
    """
    if not function_ids:
        return []
    table = connections[using].ops.quote_name(Run._meta.db_table)
    queue_clause = "AND queue = ANY(%s)" if queues else ""
    sql = f"""
        WITH picked AS (
            SELECT id, started_at IS NULL AS fresh FROM {table}
            WHERE status IN ('queued', 'waiting') AND available_at <= %s
              AND function_id = ANY(%s) {queue_clause}
            ORDER BY priority DESC, available_at, id
            LIMIT %s
            FOR UPDATE SKIP LOCKED
        )
        UPDATE {table} AS run
        SET status = 'running', lease_owner = %s, lease_token = %s, updated_at = %s,
            started_at = COALESCE(run.started_at, %s)
        FROM picked WHERE run.id = picked.id
        RETURNING run.id, picked.fresh
    """  # noqa: S608 - only the table name is interpolated
    params: list[Any] = [now, list(function_ids)]
    if queues:
        params.append(list(queues))
    params += [limit, worker_id, token, now, now]
    with connections[using].cursor() as cursor:
        cursor.execute(sql, params)
        fresh = dict(cursor.fetchall())
    if not fresh:
        return []
    runs = list(
        Run.objects.using(using)
        .filter(id__in=list(fresh))
        .select_related("event")
        .order_by("-priority", "available_at", "id")
    )
    for run in runs:
        run.fresh = fresh[run.pk]
    return runs


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
        # No savepoint: a duplicate aborts the caller's whole checkpoint transaction.
        step.save(using=using, force_insert=True)
    except IntegrityError:
        raise LeaseLost(f"step {fields.get('name')!r} of run {run.pk} was recorded elsewhere")
    return step


def release(run: Run, token: str, using: str, available_at: datetime, **fields: Any) -> None:
    """Give the run back to the queue (a retry, a graceful stop), due at ``available_at``."""
    _let_go(run, token, using, RunStatus.QUEUED, available_at, **fields)


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
    updated = _held(run, token, using).update(
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


def cancel(run_id: str, using: str, *, error: dict[str, Any] | None = None) -> str | None:
    """Cancel a queued or waiting run at once ("cancelled"), or flag a running one to stop
    between steps ("requested"); None if it had finished. Sends ``function.cancelled``."""
    now = clock.now()
    with transaction.atomic(using=using):
        stopped = (
            Run.objects.using(using)
            .filter(pk=run_id, status__in=[RunStatus.QUEUED, RunStatus.WAITING])
            .update(
                status=RunStatus.CANCELLED,
                error=error or cancelled_error(),
                ended_at=now,
                updated_at=now,
                available_at=None,
                cancel_requested=True,
            )
        )
        if stopped:
            run = Run.objects.using(using).get(pk=run_id)
            waits.close(run, using, now)
            send_system(CANCELLED_EVENT, _lifecycle_data(run))
            return "cancelled"
        # A running run keeps the reason until its executor stops it between steps.
        reason = {"error": error} if error else {}
        flagged = (
            Run.objects.using(using)
            .filter(pk=run_id, status=RunStatus.RUNNING)
            .update(cancel_requested=True, updated_at=now, **reason)
        )
    return "requested" if flagged else None


def cancel_reason(run: Run, using: str) -> dict[str, Any]:
    """Why a running run was asked to stop: the reason ``cancel()`` left, or a generic one."""
    error = Run.objects.using(using).filter(pk=run.pk).values_list("error", flat=True).first()
    if isinstance(error, dict) and error.get("type") in ("Cancelled", "FunctionTimeout"):
        return error
    return cancelled_error()


def retry_failed(run_id: str, using: str) -> bool:
    """Resume a failed run from the step that failed it: its completed steps stay
    memoized, the failed step gets a fresh retry budget. False if the run had not failed."""
    now = clock.now()
    with transaction.atomic(using=using):
        reopened = (
            Run.objects.using(using)
            .filter(pk=run_id, status=RunStatus.FAILED)
            .update(
                status=RunStatus.QUEUED,
                error=None,
                ended_at=None,
                attempt=0,
                available_at=now,
                updated_at=now,
                cancel_requested=False,
            )
        )
        if not reopened:
            return False
        last_failed = (
            Step.objects.using(using)
            .filter(run_id=run_id, status=StepStatus.FAILED)
            .order_by("-position")
            .first()
        )
        if last_failed is not None:
            Step.objects.using(using).filter(pk=last_failed.pk).update(
                status=StepStatus.RUNNING, attempts=0, ended_at=None
            )
        waits.arm_cancel_rules([Run.objects.using(using).get(pk=run_id)], using)
        notify.work_available(using)
    return True


def _lifecycle_data(run: Run) -> dict[str, Any]:
    data: dict[str, Any] = {"run_id": run.pk, "function_id": run.function_id}
    if run.event_id:
        data["event_id"] = run.event_id
    return data


def finish(
    run: Run,
    token: str,
    using: str,
    status: RunStatus,
    *,
    output: Any = None,
    error: dict[str, Any] | None = None,
    close_waits: bool = True,
) -> None:
    """End the run and send its lifecycle event, in one transaction.

    ``close_waits=False`` skips disarming waits, for a run that cannot have any."""
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
        if close_waits or run.parent_run_id:
            waits.close(run, using, now)
        data = _lifecycle_data(run)
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
