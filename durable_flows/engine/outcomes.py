"""Outcomes: how a run ends (completed, failed, cancelled) or is reopened, and what
follows in the same transaction: its lifecycle events, its waits disarmed."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.db import transaction

from .. import clock, notify
from ..conf import db_alias
from ..definitions import payloads, schemas
from ..definitions.functions import registry
from ..definitions.payloads import (
    CANCELLED_EVENT,
    FAILED_EVENT,
    FINISHED_EVENT,
    RESERVED_PREFIX,
    from_ms,
    ms,
    normalise,
)
from ..exceptions import LeaseLost
from ..models import FINISHED, Event, Run, RunStatus, Step, StepStatus, new_id
from . import admission, inbox, waits
from .leases import held
from .retry import attempt_history

log = logging.getLogger("durable_flows.worker")


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
            close_steps(run_id, using, now)
            cancel_children(run, using)
            waits.close(run, using, now)
            send_system(_lifecycle_events(run))
            notify.run_finished(using)
            return "cancelled"
        # A running run keeps the reason until its executor stops it between steps.
        reason = {"error": error} if error else {}
        flagged = (
            Run.objects.using(using)
            .filter(pk=run_id, status=RunStatus.RUNNING)
            .update(cancel_requested=True, updated_at=now, **reason)
        )
    return "requested" if flagged else None


def close_steps(run_id: str, using: str, now: datetime) -> None:
    """A cancelled run's open steps (a sleep, a wait, an invoke; a step awaiting its
    retry) are cancelled with it: none stays ``waiting`` for ever."""
    Step.objects.using(using).filter(
        run_id=run_id, status__in=[StepStatus.WAITING, StepStatus.RUNNING]
    ).update(status=StepStatus.CANCELLED, ended_at=now, wake_at=None)


def cancel_children(run: Run, using: str) -> None:
    """A cancelled run's invoked runs that have not finished are cancelled too, and
    theirs in turn; each child's error names the ancestor whose cancellation reached it
    (the run first cancelled, however deep the child)."""
    cause = run.error if isinstance(run.error, dict) else {}
    ancestor = cause.get("cancelled_with") or run.pk
    children = (
        Run.objects.using(using)
        .filter(parent_run_id=run.pk)
        .exclude(status__in=FINISHED)
        .values_list("pk", flat=True)
    )
    for child_id in list(children):
        cancel(
            child_id,
            using,
            error={
                "type": "Cancelled",
                "message": f"cancelled with run {ancestor}, which it was invoked under",
                "cancelled_with": ancestor,
            },
        )


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
            started = last_failed.started_at or now
            error, ended = last_failed.error or {}, last_failed.ended_at
            history = attempt_history(last_failed, started, error, ended)
            Step.objects.using(using).filter(pk=last_failed.pk).update(
                status=StepStatus.RUNNING, attempts=0, ended_at=None, failed_attempts=history
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
        updated = held(run, token, using).update(
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
        if status == RunStatus.CANCELLED:
            close_steps(run.pk, using, now)
            cancel_children(run, using)
        if crashed:
            Step.objects.using(using).filter(run_id=run.pk, status=StepStatus.RUNNING).update(
                status=StepStatus.FAILED, error=error, ended_at=now, attempts=crashed
            )
        if close_waits or run.parent_run_id:
            waits.close(run, using, now)
        send_system(_lifecycle_events(run))
        notify.run_finished(using)
    if status != RunStatus.FAILED:  # ``fail`` says why
        log_finished(run)


def log_finished(run: Run) -> None:
    """One INFO line per finished run: id, function, status, duration."""
    if log.isEnabledFor(logging.INFO):
        took = ""
        if run.started_at and run.ended_at:
            took = f" in {(run.ended_at - run.started_at).total_seconds() * 1000:.1f} ms"
        log.info("run %s of %s %s%s", run.pk, run.function_id, run.status, took)


def fail(
    run: Run,
    token: str,
    using: str,
    error: dict[str, Any],
    *,
    crashed: int = 0,
    step: str | None = None,
) -> None:
    """The run failed for good: ``finish`` it as failed, with one short log line that
    names the error's type and the step that failed (``step``), if one did."""
    message = error.get("message") or ""  # a log line stays short, whatever the error says
    message = message if len(message) <= 500 else message[:500] + "…"
    where = f" in step {step!r}" if step else ""
    kind = error.get("type") or "Error"
    log.info("run %s of %s failed%s: %s: %s", run.pk, run.function_id, where, kind, message)
    finish(run, token, using, RunStatus.FAILED, error=error, crashed=crashed)


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


# --- what storing events sets off -------------------------------------------------


def receive(items: list[dict[str, Any]], using: str) -> list[str]:
    """Store validated events (``inbox.store``) and what follows, in the caller's
    transaction: the waits they resolve, then the runs they start. Returns their ids."""
    ids, stored = inbox.store(items, using)
    events_stored(stored, using, clock.now())
    return ids


def send(events: Any, *, system: bool = False) -> list[str]:
    """Validate and send events (an ``Event``, a mapping, or an iterable of them);
    ``system``: the app's own lifecycle events (``durable_flows/...`` names), which join
    the engine's transaction without a savepoint."""
    single = isinstance(events, payloads.Event | Mapping) or schemas.is_schema_like(events)
    items = [events] if single else list(events)
    normalised = [normalise(item, index, system=system) for index, item in enumerate(items)]
    if not normalised:
        return []
    using = db_alias()
    with transaction.atomic(using=using, savepoint=not system):
        return receive(normalised, using)


def send_system(events: list[dict[str, Any]]) -> list[str]:
    """Send app lifecycle events (``{"name": "durable_flows/...", "data": ...}``)."""
    return send(events, system=True)


def events_stored(stored: list[Event], using: str, now: datetime) -> None:
    """What follows storing events, in the same transaction: resolve the waits they
    match, then start the runs they trigger. (Waits first: an event resolves waits and
    cancel rules armed before it, never those of the runs it starts itself.)"""
    waits.deliver(stored, using, now, cancel_by_rule)
    waits.arm_cancel_rules(start_runs(stored, using, now), using)


def start_runs(events: list[Event], using: str, now: datetime) -> list[Run]:
    pairs = []
    for event in events:
        for function in registry.matching(event.as_dict()):
            if event.name.startswith(RESERVED_PREFIX) and event.data.get("function_id") == (
                function.id
            ):
                continue  # a function is never triggered by its own lifecycle events
            pairs.append((event, function))
    controlled = [(e, f) for e, f in pairs if f.admission_controlled]
    if len(controlled) > 1:
        admission.lock_in_order(controlled, using)
    runs: list[Run] = []
    started: list[Run] = []  # saved already by flow control (a new batch)
    for event, function in pairs:
        available_at = max(now, from_ms(event.ts)) if event.ts > ms(now) else now
        if function.admission_controlled:
            run, saved = admission.admit(
                function, event, now, available_at, using, lambda run_id: cancel(run_id, using)
            )
            if run is None:
                continue
            if saved:
                started.append(run)
                continue
        else:
            run = Run.start(function, event, now, available_at)
        runs.append(run)
    if runs:
        Run.objects.using(using).bulk_create(runs)
    if runs or started:
        notify.work_available(using)
    return started + runs


def cancel_by_rule(run_id: str, event: Event, using: str) -> bool:
    """A ``cancel=`` rule matched ``event``: cancel the run; False if it had finished."""
    error = {
        "type": "Cancelled",
        "message": f"cancelled by event {event.name!r} ({event.pk})",
        "event_id": event.pk,
    }
    return cancel(run_id, using, error=error) is not None
