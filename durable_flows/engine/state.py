"""Every transition of a run, as one named function with a conditional update.

A transition filters on the state it expects (status, lease token); zero rows
updated means someone else moved the run first, and raises ``LeaseLost``.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, connections, transaction
from django.db.models import F, Value
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce

from .. import clock, notify, waits
from ..conf import flow_settings
from ..events import json_bytes, send_system
from ..exceptions import LeaseLost, StepOutputError
from ..models import Event, Run, RunStatus, Step, StepStatus, Wait, WaitPath, new_id
from . import flow_control, sql

log = logging.getLogger("durable_flows.worker")

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
    limited = flow_control.limits_claims(function_ids)
    if sql.is_postgres(using) and not limited:
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
        if limited:
            ids = flow_control.pick(using, runnable, limit)
            if not ids:
                return token, []
            rows.filter(id__in=ids).update(**lease)
            claimed = rows.filter(id__in=ids)
        else:
            # SQLite: write first, so the transaction takes the write lock at once
            # (a read-then-write transaction can fail to upgrade its lock).
            pick = _pick_sqlite(connection, now, queues, function_ids, limit)
            if not rows.filter(id__in=pick).update(**lease):
                return token, []
            claimed = rows.filter(
                status=RunStatus.RUNNING, lease_owner=worker_id, lease_token=token
            )
        runs = list(claimed.select_related("event").order_by("-priority", "available_at", "id"))
    for run in runs:
        run.fresh = run.started_at == now  # it had none: the claim set it
    return token, runs


def _pick_sqlite(
    connection: Any, now: Any, queues: list[str] | None, function_ids: list[str], limit: int
) -> RawSQL:
    """``RunQuerySet.claimable()`` in claim order, on the partial index df_run_claimable
    (SQLite's planner would rather read every run of the function and sort them)."""
    functions = ", ".join("%s" for _ in function_ids)
    queue_clause = f"AND queue IN ({', '.join('%s' for _ in queues)})" if queues else ""
    sql = f"""
        SELECT id FROM "{Run._meta.db_table}" INDEXED BY df_run_claimable
        WHERE status IN ('queued', 'waiting') AND available_at <= %s
          AND function_id IN ({functions}) {queue_clause}
        ORDER BY priority DESC, available_at, id LIMIT %s
    """  # noqa: S608 - only the table name and placeholders are interpolated
    params = [connection.ops.adapt_datetimefield_value(now), *function_ids, *(queues or [])]
    return RawSQL(sql, [*params, limit])  # noqa: S611 - parameters are bound


def _claim_pg(
    using: str,
    worker_id: str,
    token: str,
    now: Any,
    queues: list[str] | None,
    function_ids: list[str],
    limit: int,
) -> list[Run]:
    """PostgreSQL: pick (SKIP LOCKED), lease, and read the runs with their events, in one
    prepared statement.

    The WHERE clause is ``RunQuerySet.claimable()``'s, written out; the partial
    index df_run_claimable serves it.
    """
    if not function_ids:
        return []
    params: list[Any] = [now, list(function_ids)]
    if queues:
        params.append(list(queues))
    params += [limit, worker_id, token, now, now]
    rows, _ = sql.execute(using, _claim_sql(bool(queues)), params)
    runs = []
    split = 1 + len(Run._meta.concrete_fields)
    for row in rows:
        run = sql.instance(Run, using, row[1:split])
        run.fresh = row[0]
        if run.event_id is not None:
            run._state.fields_cache["event"] = sql.instance(Event, using, row[split:])
        runs.append(run)
    return runs


@functools.cache
def _claim_sql(with_queues: bool) -> str:
    table, event_table = Run._meta.db_table, Event._meta.db_table
    queue_clause = "AND queue = ANY(%s)" if with_queues else ""
    return f"""
        WITH picked AS (
            SELECT id, started_at IS NULL AS fresh FROM "{table}"
            WHERE status IN ('queued', 'waiting') AND available_at <= %s
              AND function_id = ANY(%s) {queue_clause}
            ORDER BY priority DESC, available_at, id
            LIMIT %s
            FOR UPDATE SKIP LOCKED
        ), leased AS (
            UPDATE "{table}" AS run
            SET status = 'running', lease_owner = %s, lease_token = %s, updated_at = %s,
                started_at = COALESCE(run.started_at, %s)
            FROM picked WHERE run.id = picked.id
            RETURNING run.*, picked.fresh
        )
        SELECT leased.fresh, {sql.select_list(Run, "leased.")}, {sql.select_list(Event, "e.")}
        FROM leased LEFT JOIN "{event_table}" AS e ON e.id = leased.event_id
        ORDER BY leased.priority DESC, leased.available_at, leased.id
    """  # noqa: S608 - only table and column names are interpolated


WORKER_CRASHED = "WorkerCrashed"


def rescue_orphans(using: str, live_worker_ids: Any) -> int:
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


def crashed_error() -> dict[str, Any]:
    return {
        "type": WORKER_CRASHED,
        "message": "the worker executing the run died (its process was killed or crashed)",
    }


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


# --- while executing ------------------------------------------------------------


def _held(run: Run, token: str, using: str):
    return Run.objects.using(using).filter(pk=run.pk, lease_token=token, status=RunStatus.RUNNING)


def fence(run: Run, token: str, using: str) -> bool:
    """Inside a checkpoint transaction: prove we still hold the lease, and lock the run.

    Returns whether a cancel has been requested. Raises ``LeaseLost`` otherwise.
    """
    if sql.is_postgres(using):
        rows, _ = sql.execute(using, _FENCE_PG, [run.pk, token])
        row = rows[0] if rows else None
    else:
        # SQLite: a write, so that the transaction holds the write lock from here on.
        connection = connections[using]
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {connection.ops.quote_name(Run._meta.db_table)} "  # noqa: S608
                "SET updated_at = %s WHERE id = %s AND lease_token = %s AND status = %s "
                "RETURNING cancel_requested",
                [
                    connection.ops.adapt_datetimefield_value(clock.now()),
                    run.pk,
                    token,
                    RunStatus.RUNNING.value,
                ],
            )
            row = cursor.fetchone()
    if row is None:
        raise LeaseLost(f"run {run.pk} is no longer leased to this worker")
    return bool(row[0])


# A row lock, not an update: no new row version, so no index entries to write.
_FENCE_PG = f"""
    SELECT cancel_requested FROM "{Run._meta.db_table}"
    WHERE id = %s AND lease_token = %s AND status = 'running'
    FOR NO KEY UPDATE
"""  # noqa: S608 - only the table name is interpolated


def checkpoint(run: Run, token: str, using: str, **fields: Any) -> tuple[bool, Step]:
    """PostgreSQL: prove the lease and insert a new step's checkpoint in one prepared
    statement. Returns (cancel requested?, the step). Raises ``LeaseLost`` otherwise."""
    step = Step(run=run, **fields)
    return checkpoint_step(step, token, using), step


def checkpoint_step(step: Step, token: str, using: str) -> bool:
    """``checkpoint()`` for a step built already (unsaved); returns whether a cancel was
    requested. The step gets its id."""
    params = [step.run_id, token, step.run_id]
    for field in _STEP_FIELDS:
        value = getattr(step, field.attname)
        params.append(sql.jsonb(value) if field.get_internal_type() == "JSONField" else value)
    try:
        rows, _ = sql.execute(using, _CHECKPOINT_PG, params)
    except IntegrityError:
        raise LeaseLost(f"step {step.name!r} of run {step.run_id} was recorded elsewhere")
    if not rows:
        raise LeaseLost(f"run {step.run_id} is no longer leased to this worker")
    step.pk, cancel = rows[0]
    step._state.adding, step._state.db = False, using
    return bool(cancel)


_STEP_FIELDS = [f for f in Step._meta.concrete_fields if f.attname not in ("id", "run_id")]
_CHECKPOINT_PG = f"""
    WITH fence AS ({_FENCE_PG})
    INSERT INTO "{Step._meta.db_table}" (run_id, {", ".join(f.column for f in _STEP_FIELDS)})
    SELECT %s, {", ".join("%s" for _ in _STEP_FIELDS)} FROM fence
    RETURNING id, (SELECT cancel_requested FROM fence)
"""  # noqa: S608 - only table and column names are interpolated


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


def lease_lost(run: Run, token: str, using: str, exc: LeaseLost) -> None:
    """The executor was told it may not go on with ``run``: leave it to its new owner if
    another worker really holds it; if this worker still does (its work could not be
    recorded), give it back to the queue so that it is not left running, held by no one."""
    if _held(run, token, using).exists():
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
            send_system(_lifecycle_events(run))
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
    crashed: int = 0,
) -> None:
    """End the run and send its lifecycle event, in one transaction.

    ``close_waits=False`` skips disarming waits, for a run that cannot have any.
    ``crashed``: the run fails because its workers died this many times; a step
    still marked running (a parallel step's) fails with it."""
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
        if crashed:
            Step.objects.using(using).filter(run_id=run.pk, status=StepStatus.RUNNING).update(
                status=StepStatus.FAILED, error=error, ended_at=now, attempts=crashed
            )
        if close_waits or run.parent_run_id:
            waits.close(run, using, now)
        send_system(_lifecycle_events(run))


def lifecycle_rows(completed: list[tuple[Run, Any]], now: datetime) -> list[Event]:
    """Mark runs completed (in memory) and build their lifecycle events, unsaved."""
    ts = int(now.timestamp() * 1000)
    rows = []
    for run, output in completed:
        run.status, run.output, run.ended_at = RunStatus.COMPLETED, output, now
        rows += [
            Event(id=new_id(), name=e["name"], data=e["data"], ts=ts, received_at=now)
            for e in _lifecycle_events(run)
        ]
    return rows


@dataclass
class GroupWrite:
    written: bool  # False: guarded, and waits on lifecycle events exist; nothing written
    watched: bool  # waits on these lifecycle events may exist: deliver them
    done: set[str]  # runs completed
    fenced: set[str]  # runs going on whose lease held (their steps written)
    cancel: set[str]  # runs asked to cancel (going on, or completed here but not done)


def write_group(
    going_on: list[Run],
    completed: list[tuple[Run, Any]],
    steps: list[Step],
    rows: list[Event],
    token: str,
    using: str,
    now: datetime,
    *,
    guarded: bool,
) -> GroupWrite:
    """PostgreSQL, one prepared statement: fence the runs that go on, complete the
    completed ones unless a cancel was requested (the caller cancels those), insert
    the steps of the runs whose lease held, and the lifecycle events of the runs
    completed. Each run's writes depend on its own lease only; a step recorded
    already (it cannot be, under a held lease) is left as it is rather than failing
    the statement for every run in it. (A completed run is not locked by a
    sub-select: the UPDATE of the same statement locks it, and a lock would skip a
    row that UPDATE changed.)

    ``guarded`` (the statement is its own transaction): write nothing if a wait on
    these lifecycle events may exist, since resolving it must share the transaction.
    """

    def column(name: str) -> list[Any]:
        return [getattr(step, name) for step in steps]

    names = sorted({row.name for row in rows})
    params: list[Any] = [
        names,
        names,
        guarded,
        [run.pk for run in going_on],
        token,
        [run.pk for run, _ in completed],
        token,
        now,
        now,
        [run.pk for run, _ in completed],
        [sql.json_text(output) for _, output in completed],
        token,
        column("run_id"),
        column("name"),
        column("kind"),
        column("status"),
        column("position"),
        [sql.json_text(step.output) for step in steps],
        [sql.json_text(step.error) for step in steps],
        column("attempts"),
        column("started_at"),
        column("ended_at"),
        now,
        [row.id for row in rows],
        [row.name for row in rows],
        [sql.json_text(row.data) for row in rows],
        [row.ts for row in rows],
        [row.data["run_id"] for row in rows],
    ]
    result, _ = sql.execute(using, _GROUP_PG, params)
    ok, watched, done, fenced, cancel = result[0]
    return GroupWrite(ok, watched, set(done), set(fenced), set(cancel))


_GROUP_PG = f"""
    WITH watched AS (
        SELECT EXISTS (
            SELECT 1 FROM "{WaitPath._meta.db_table}" WHERE event_name = ANY(%s::varchar[])
        ) OR EXISTS (
            SELECT 1 FROM "{Wait._meta.db_table}"
            WHERE status = 'pending' AND event_name = ANY(%s::varchar[]) AND match_key = ''
        ) AS yes
    ), go AS (
        SELECT NOT (%s AND yes) AS ok FROM watched
    ), fenced AS (
        SELECT id, cancel_requested FROM "{Run._meta.db_table}"
        WHERE id = ANY(%s::varchar[]) AND lease_token = %s AND status = 'running'
          AND (SELECT ok FROM go)
        FOR NO KEY UPDATE
    ), held AS (
        SELECT id FROM "{Run._meta.db_table}"
        WHERE id = ANY(%s::varchar[]) AND lease_token = %s AND status = 'running'
          AND (SELECT ok FROM go)
    ), done AS (
        UPDATE "{Run._meta.db_table}" AS run
        SET status = 'completed', output = v.output, ended_at = %s, updated_at = %s,
            lease_owner = NULL, lease_token = NULL, available_at = NULL
        FROM unnest(%s::varchar[], %s::jsonb[]) AS v(id, output)
        WHERE run.id = v.id AND run.lease_token = %s AND run.status = 'running'
          AND NOT run.cancel_requested AND (SELECT ok FROM go)
        RETURNING run.id
    ), checkpoints AS (
        INSERT INTO "{Step._meta.db_table}"
            (run_id, name, kind, status, position, output, error, attempts, started_at, ended_at)
        SELECT * FROM unnest(
            %s::varchar[], %s::varchar[], %s::varchar[], %s::varchar[], %s::int[],
            %s::jsonb[], %s::jsonb[], %s::int[], %s::timestamptz[], %s::timestamptz[]
        ) AS s(run_id)
        WHERE s.run_id IN (SELECT id FROM fenced UNION ALL SELECT id FROM held)
        ON CONFLICT (run_id, name) DO NOTHING
    ), lifecycle AS (
        INSERT INTO "{Event._meta.db_table}" (received_at, id, name, data, ts)
        SELECT %s, e.id, e.name, e.data, e.ts FROM unnest(
            %s::varchar[], %s::varchar[], %s::jsonb[], %s::bigint[], %s::varchar[]
        ) AS e(id, name, data, ts, run_id)
        WHERE e.run_id IN (SELECT id FROM done)
    )
    SELECT (SELECT ok FROM go), (SELECT yes FROM watched),
        ARRAY(SELECT id FROM done), ARRAY(SELECT id FROM fenced),
        ARRAY(
            SELECT id FROM fenced WHERE cancel_requested
            UNION ALL (SELECT id FROM held EXCEPT SELECT id FROM done)
        )
"""  # noqa: S608 - only table names are interpolated


def _lifecycle_events(run: Run) -> list[dict[str, Any]]:
    """As Inngest: "finished" for every completed or failed run, plus "failed" or
    "cancelled" for those outcomes."""
    data = _lifecycle_data(run)
    if run.status == RunStatus.COMPLETED:
        return [{"name": FINISHED_EVENT, "data": {**data, "output": run.output}}]
    if run.status == RunStatus.FAILED:
        return [
            {"name": FINISHED_EVENT, "data": {**data, "error": run.error}},
            {"name": FAILED_EVENT, "data": {**data, "error": run.error}},
        ]
    return [{"name": CANCELLED_EVENT, "data": data}]


def cancelled_error() -> dict[str, Any]:
    return {"type": "Cancelled", "message": "the run was cancelled"}
