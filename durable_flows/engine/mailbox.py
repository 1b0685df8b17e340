"""Signals: a run's mailbox. ``df.signal`` leaves a message for one run;
``ctx.step.wait_for_signal`` takes the oldest message of its name, each once.

A signal sent before the run reaches the wait is kept until it does. Both sides take
the run's row lock: a signal sent while the run is being resumed elsewhere is either
seen by the step (the signal committed first) or wakes the run that the step has just
suspended (the step committed first), never lost between the two.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction

from .. import clock, notify
from ..definitions.values import as_stored
from ..durations import parse_duration
from ..exceptions import RunNotFound, StepUsageError
from ..models import FINISHED, Run, RunStatus, Signal, Step, StepKind, StepStatus
from .signals import Runner
from .waiting import Checkpoint

NAME_LIMIT = 255


def send(run_id: str, name: str, data: Any, using: str) -> str:
    """Leave ``data`` for run ``run_id`` under ``name``, in the caller's transaction;
    wake the run if it waits for a signal. Returns the signal's id."""
    if not isinstance(name, str) or not name or len(name) > NAME_LIMIT:
        raise StepUsageError(f"a signal's name must be 1-{NAME_LIMIT} characters, got {name!r}")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise StepUsageError(f"a signal's data must be a JSON object (dict), got {data!r}")
    try:
        data, _ = as_stored(data, "data")  # dates, decimals... as they will read back
    except ValueError as exc:
        raise StepUsageError(f"signal {name!r}: data is not JSON: {exc}") from None
    now = clock.now()
    with transaction.atomic(using=using):
        run = (
            Run.objects.using(using)
            .select_for_update()
            .filter(pk=str(run_id))
            .values_list("status", flat=True)
            .first()
        )
        if run is None or run in FINISHED:
            state = "no run" if run is None else f"run is {run}"
            raise RunNotFound(f"cannot signal run {run_id!r}: {state}")
        signal = Signal.objects.using(using).create(
            run_id=str(run_id), name=name, data=data, sent_at=now
        )
        if run == RunStatus.WAITING and _waits_for_a_signal(str(run_id), using):
            Run.objects.using(using).filter(pk=str(run_id), status=RunStatus.WAITING).update(
                available_at=now, updated_at=now
            )
            notify.work_available(using)
    return signal.pk


def _waits_for_a_signal(run_id: str, using: str) -> bool:
    return (
        Step.objects.using(using)
        .filter(run_id=run_id, kind=StepKind.WAIT_FOR_SIGNAL, status=StepStatus.WAITING)
        .exists()
    )


def wait_for_signal(exe: Runner, step_id: str, name: str, timeout: Any) -> dict[str, Any] | None:
    """The step: the oldest undelivered signal ``name`` of this run (its data), taken
    once; or, when none comes within ``timeout``, None."""
    if not isinstance(name, str) or not name or len(name) > NAME_LIMIT:
        raise StepUsageError(f"wait_for_signal(name=...) must be a signal name, got {name!r}")
    try:
        limit = parse_duration(timeout, what="wait_for_signal timeout")
    except ValueError as exc:
        raise StepUsageError(str(exc)) from None
    step_name, position, memo = exe.reach(step_id, StepKind.WAIT_FOR_SIGNAL)
    if memo is not None and memo.status == StepStatus.COMPLETED:
        return memo.output.get("data") if memo.output else None
    exe.boundary()
    now = clock.now()
    expires: datetime = memo.wake_at if memo is not None and memo.wake_at else now + limit
    cp = Checkpoint(exe, step_name, position, StepKind.WAIT_FOR_SIGNAL, memo, now)
    using = exe.using
    with transaction.atomic(using=using):
        cp.fence()
        signal = (
            Signal.objects.using(using)
            .select_for_update()
            .filter(run_id=exe.run.pk, name=name, delivered_at__isnull=True)
            .order_by("sent_at", "id")
            .first()
        )
        if signal is not None:
            Signal.objects.using(using).filter(pk=signal.pk).update(
                delivered_at=now, step=step_name
            )
            output: dict[str, Any] | None = {"signal": name, "id": signal.pk, "data": signal.data}
            cp.save(StepStatus.COMPLETED, wake_at=expires, output=output)
            return signal.data
        if now >= expires:
            cp.save(StepStatus.COMPLETED, wake_at=expires, output=None)
            return None
        cp.save(StepStatus.WAITING, wake_at=expires, output={"signal": name})
        cp.suspend(expires)
    cp.finish_suspended()
