"""The steps that wait: sleep, wait_for_event, invoke; and send_event.

A waiting step is recorded as ``Step(status="waiting", wake_at=...)`` and the
run becomes ``waiting`` with ``available_at`` = when it must next look (the
wake time, the timeout, or never), in the same transaction; then the worker
lets go of it (``Suspended``). Whatever wakes the run (the clock, an event, a
child run finishing) only makes it claimable: the replay reaches the step
again and decides, inside a fenced transaction, whether it is done.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, NoReturn

from django.db import transaction

from .. import clock, notify
from ..definitions.functions import Function, registry
from ..definitions.options import check_match
from ..definitions.payloads import INVOKED_EVENT, Event, ms
from ..durations import ensure_within_range, parse_duration
from ..exceptions import (
    ConfigurationError,
    EventValidationError,
    NonRetriableError,
    RunCancelled,
    StepUsageError,
)
from ..expressions import compile_expression
from ..faults import fault_point
from ..models import Event as EventRow
from ..models import Run, RunStatus, Step, StepKind, StepStatus, Wait, WaitKind, WaitStatus
from . import checkpoints, leases, outcomes, waits
from .parallel import Pending
from .signals import Runner, Suspended


def _duration(value: Any, what: str) -> timedelta:
    try:
        return parse_duration(value, what=what)
    except ValueError as exc:
        raise StepUsageError(str(exc)) from None


class Checkpoint:
    """A fenced transaction around a waiting step's record."""

    def __init__(
        self,
        exe: Runner,
        name: str,
        position: int,
        kind: StepKind,
        memo: Step | None,
        now: datetime,
    ):
        self.exe, self.name, self.position, self.kind, self.memo = exe, name, position, kind, memo
        self.now = now
        self.until: datetime | None = None  # when the parked run looks again (suspend)

    def fence(self) -> None:
        """Prove the lease; a pending cancel stops the run here instead of suspending it."""
        exe = self.exe
        if leases.fence(exe.run, exe.token, exe.using):
            raise RunCancelled()

    def save(self, status: StepStatus, **fields: Any) -> Step:
        exe, now = self.exe, self.now
        done = status in (StepStatus.COMPLETED, StepStatus.FAILED)
        values = {
            "name": self.name,
            "kind": self.kind,
            "position": self.position,
            "status": status,
            "attempts": 1,
            "started_at": self.memo.started_at if self.memo else now,
            "ended_at": now if done else None,
            **fields,
        }
        step = checkpoints.save_step(exe.using, exe.run, self.memo, **values)
        exe.memos[self.name] = step
        self.memo = step
        return step

    def suspend(self, until: datetime | None) -> None:
        """Park the run until ``until`` (None: until woken). Inside a parallel group the
        wait is only recorded: the group parks the run once all members are seen."""
        exe = self.exe
        self.until = until
        if exe.planning is None:
            leases.suspend(exe.run, exe.token, exe.using, until)

    def finish_suspended(self) -> NoReturn:
        """After the transaction: the run is parked (``Suspended``), or, in a group, this
        member waits (``Pending``)."""
        if self.exe.planning is not None:
            raise Pending(self.until)
        raise Suspended()


# --- sleep ---------------------------------------------------------------------------


def sleep(exe: Runner, step_id: str, until: datetime | None, delta: timedelta | None) -> None:
    name, position, memo = exe.reach(step_id, StepKind.SLEEP)
    if memo is not None and memo.status == StepStatus.COMPLETED:
        return None
    exe.boundary()
    now = clock.now()
    wake = memo.wake_at if memo is not None and memo.wake_at else (until or now + delta)  # type: ignore[operator]
    cp = Checkpoint(exe, name, position, StepKind.SLEEP, memo, now)
    with transaction.atomic(using=exe.using):
        cp.fence()
        if wake <= now:
            cp.save(StepStatus.COMPLETED, wake_at=wake, output=None)
            woke = True
        else:
            cp.save(StepStatus.WAITING, wake_at=wake)
            cp.suspend(wake)
            woke = False
    if woke:
        fault_point("after_wake")  # the sleep is recorded as over; nothing after it has run
        return None
    cp.finish_suspended()


def sleep_args(duration: Any = None, when: Any = None) -> tuple[datetime | None, timedelta | None]:
    if when is not None:
        try:
            return ensure_within_range(when, clock.now(), what="sleep_until(when)"), None
        except ValueError as exc:
            raise StepUsageError(str(exc)) from None
    return None, _duration(duration, "sleep duration")


# --- wait_for_event ---------------------------------------------------------------------


def wait_for_event(
    exe: Runner,
    step_id: str,
    *,
    event: str,
    timeout: Any,
    match: str | None,
    if_exp: str | None,
) -> Event | None:
    if not isinstance(event, str) or not event or "*" in event or len(event) > 255:
        raise StepUsageError(f"wait_for_event(event=...) must be an event name, got {event!r}")
    limit = _duration(timeout, "wait_for_event timeout")
    try:
        check_match(match, "wait_for_event(match=...)")
        if if_exp is not None:
            compile_expression(if_exp)
    except ConfigurationError as exc:
        raise StepUsageError(str(exc)) from None
    name, position, memo = exe.reach(step_id, StepKind.WAIT_FOR_EVENT)
    if memo is not None and memo.status == StepStatus.COMPLETED:
        return Event(**memo.output) if memo.output else None
    exe.boundary()
    now = clock.now()
    cp = Checkpoint(exe, name, position, StepKind.WAIT_FOR_EVENT, memo, now)
    using = exe.using
    with transaction.atomic(using=using):
        cp.fence()
        if memo is None:
            trigger = exe.run.event.as_dict() if exe.run.event_id and exe.run.event else None
            key = waits.key_for(trigger, match)
            if key is None:
                raise StepUsageError(
                    f"wait_for_event({step_id!r}, match={match!r}): the run's event has no "
                    f"value at {match!r} to match"
                )
            expires = now + limit
            cp.save(StepStatus.WAITING, wake_at=expires)
            waits.arm(
                exe.run,
                using,
                kind=WaitKind.EVENT,
                step_name=name,
                event_name=event,
                key=key,
                match=match,
                if_exp=if_exp,
                now=now,
                expires_at=expires,
            )
            cp.suspend(expires)
        else:
            outcome = _wait_outcome(exe, name, now)
            if outcome is not _PENDING:
                cp.save(StepStatus.COMPLETED, output=outcome)
                return Event(**outcome) if outcome else None
            cp.suspend(memo.wake_at)
    cp.finish_suspended()


_PENDING: Any = object()


def _wait_outcome(exe: Runner, name: str, now: datetime) -> Any:
    """The event dict, None (timed out), or _PENDING; the timeout is a conditional update."""
    rows = Wait.objects.using(exe.using).filter(
        run_id=exe.run.pk, kind=WaitKind.EVENT, step_name=name
    )
    wait = rows.select_related("event").first()
    if wait is None:
        return None  # not armed (records from another version): behave as a timeout
    if wait.status == WaitStatus.PENDING:
        if wait.expires_at is not None and wait.expires_at > now:
            return _PENDING
        if rows.filter(pk=wait.pk, status=WaitStatus.PENDING).update(
            status=WaitStatus.TIMED_OUT, resolved_at=now
        ):
            return None
        wait = rows.select_related("event").get(pk=wait.pk)  # an event won the race: use it
    if wait.status == WaitStatus.RESOLVED and wait.event is not None:
        return wait.event.as_dict()
    return None


# --- invoke ---------------------------------------------------------------------------------


def invoke(exe: Runner, step_id: str, *, function: Any, data: Any, timeout: Any) -> Any:
    target = registry.resolve(function, "invoke(function=...)")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise StepUsageError(f"invoke(data=...) must be a JSON object (dict), got {data!r}")
    limit = _duration(timeout, "invoke timeout") if timeout is not None else None
    name, position, memo = exe.reach(step_id, StepKind.INVOKE)
    if memo is not None and memo.status == StepStatus.COMPLETED:
        return memo.output
    if memo is not None and memo.status == StepStatus.FAILED:
        raise exe.step_error(name, memo.error or {})
    exe.boundary()
    now = clock.now()
    using = exe.using
    cp = Checkpoint(exe, name, position, StepKind.INVOKE, memo, now)
    failed: Step | None = None
    with transaction.atomic(using=using):
        cp.fence()
        if memo is None:
            what = (
                f"step {name!r} of function {exe.run.function_id!r} invoked {target.id!r} with data"
            )
            payload = checkpoints.encode_output(data, what=what, root="data")
            event = EventRow(name=INVOKED_EVENT, data=payload, ts=ms(now), received_at=now)
            event.save(using=using, force_insert=True)
            child = Run.start(
                target,
                event,
                now,
                parent_run=exe.run,
                parent_step=name,
            )
            child.save(using=using, force_insert=True)
            waits.arm_cancel_rules([child], using)
            notify.work_available(using)
            wake = now + limit if limit is not None else None
            cp.save(StepStatus.WAITING, wake_at=wake)
            cp.suspend(wake)
        else:
            found = (
                Run.objects.using(using).filter(parent_run_id=exe.run.pk, parent_step=name).first()
            )
            error = _child_error(found, target, memo, now)
            if found is not None and found.status == RunStatus.COMPLETED:
                cp.save(StepStatus.COMPLETED, output=found.output)
                return found.output
            if error is not None:
                cp.save(StepStatus.FAILED, error=error, output=None)
                failed = cp.memo
            else:
                cp.suspend(memo.wake_at)
    if failed is not None:
        raise exe.step_error(name, failed.error or {})
    cp.finish_suspended()


def _child_error(
    child: Run | None, target: Function, memo: Step, now: datetime
) -> dict[str, Any] | None:
    if child is None:
        return {"type": "InvokeError", "message": f"the run invoked for {target.id!r} is gone"}
    if child.status in (RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.SKIPPED):
        cause = child.error or {}
        return {
            "type": cause.get("type", "InvokeError"),
            "message": (
                f"invoked function {target.id!r} (run {child.pk}) {child.status}: "
                f"{cause.get('message', '')}"
            ),
            "run_id": child.pk,
        }
    if child.status != RunStatus.COMPLETED and memo.wake_at is not None and now >= memo.wake_at:
        return {
            "type": "InvokeTimeout",
            "message": f"invoked function {target.id!r} (run {child.pk}) did not finish in time",
            "run_id": child.pk,
        }
    return None


# --- send_event -------------------------------------------------------------------------------


def send_event(exe: Runner, step_id: str, events: Any) -> list[str]:
    def send() -> list[str]:
        try:
            return outcomes.send(events)
        except EventValidationError as exc:
            raise NonRetriableError(str(exc)) from None

    fn: Callable[[], list[str]] = send
    return exe.run_step(step_id, fn, (), atomic=True, kind=StepKind.SEND_EVENT)
