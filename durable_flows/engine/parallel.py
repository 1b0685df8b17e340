"""``ctx.group.parallel``: steps that execute side by side, on any free workers.

Any step kind may be a member. A ``run`` step is planned as described below; a
``send_event`` executes at once; a ``sleep``, ``wait_for_event``, ``invoke`` or
``wait_for_signal`` records its wait and raises ``Pending``, and the run is parked
(holding no worker) until the earliest of their wake times or until something
wakes it (an event, a child run finishing, a signal, the last step task); each
replay finds the members that are done and waits again for the rest.

Planning (as Inngest's SDK does it): the run calls each callable of the group
in turn. A step that already has a result answers from it; a new step is not
executed but *planned*: it raises ``Planned``, and the group goes on to the
next callable. If the group planned two or more steps, one transaction
records each as a step (``running``, 0 attempts) with a ``StepTask``, and
parks the run in ``waiting`` with no ``available_at``: it holds no worker and
no concurrency slot. (A single new step simply executes inline.)

The step tasks are executed by ``step_tasks``. When the task that finishes
last puts the run back in the queue, the run replays, the group finds every
result recorded and returns them in order (or raises the first ``StepError``).
A callable making several steps in a row plans its next step on that replay.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, NoReturn

from django.db import transaction

from .. import clock, notify
from ..exceptions import (
    Interrupt,
    NestedStepError,
    RunCancelled,
    StepError,
)
from ..models import (
    FINISHED,
    Run,
    Signal,
    Step,
    StepKind,
    StepStatus,
    StepTask,
    Wait,
    WaitStatus,
)
from . import checkpoints, leases
from .signals import Runner, Suspended

log = logging.getLogger("durable_flows.worker")


class Planned(Interrupt):
    """A new step inside a parallel group: recorded to be executed by a step task."""

    def __init__(self, name: str, position: int, memo: Step | None) -> None:
        super().__init__(name)
        self.name, self.position, self.memo = name, position, memo


class Pending(Interrupt):
    """A sleep, wait or invoke inside a parallel group has recorded its wait: the group
    goes on to the next callable, and the run is parked until the wait can end."""

    def __init__(self, until: Any) -> None:
        super().__init__("pending")
        self.until = until  # when the run must look again (None: when woken)


class Skip(Interrupt):
    """A step task reached a new step that is not its target."""


class TargetDone(Interrupt):
    """A step task's target step has its result (or its final failure) recorded."""


def plan_step(
    execution: Runner, name: str, position: int, memo: Step | None, kind: StepKind
) -> None:
    """A new ``run`` step in a group is planned (a step task executes it). Other kinds
    go on: ``send_event`` executes at once, a sleep, wait or invoke records its wait
    and raises ``Pending``."""
    if kind != StepKind.RUN:
        return
    planned = Planned(name, position, memo)
    assert execution.planning is not None
    execution.planning.append(planned)
    raise planned


def run_group(execution: Runner, callables: Any) -> tuple[Any, ...]:
    """``ctx.group.parallel`` in a synchronous function."""
    steps = plan_group(execution, callables)
    try:
        fn = next(steps)
        while True:
            try:
                value = fn()
            except BaseException as exc:  # delivered where the group called fn
                fn = steps.throw(exc)
            else:
                fn = steps.send(value)
    except StopIteration as stop:
        outcome = stop.value
    if isinstance(outcome, Park):
        park(execution, outcome)
    return outcome


@dataclass
class Park:
    """The group planned new steps, or has members waiting: ``park`` records the steps
    and parks the run until the earliest of ``wakes`` (or until it is woken)."""

    planned: list[Planned]
    wakes: list[Any]


def plan_group(
    execution: Runner, callables: Any
) -> Generator[Callable[[], Any], Any, tuple[Any, ...] | Park]:
    """The group's logic, for any caller: it yields each callable to call, and is sent
    its result or thrown its exception (an async function's group awaits them)."""
    callables = tuple(callables)
    for fn in callables:
        if not callable(fn):
            raise TypeError(f"ctx.group.parallel takes callables (e.g. lambdas), got {fn!r}")
    if execution.in_step:
        raise NestedStepError("ctx.group.parallel was called inside a step's function")
    if execution.planning is not None:
        raise NestedStepError("ctx.group.parallel cannot be nested in another group")
    if execution.targeted:
        return (yield from _targeted(callables))
    seen, position = dict(execution.seen), execution.position
    planned: list[Planned] = []
    wakes: list[Any] = []
    results: list[Any] = []
    errors: list[StepError] = []
    execution.planning = planned
    try:
        for fn in callables:
            try:
                results.append((yield fn))
            except Planned:
                results.append(None)
            except Pending as pending:
                wakes.append(pending.until)
                results.append(None)
            except StepError as exc:
                errors.append(exc)
                results.append(None)
    finally:
        execution.planning = None
    if len(planned) == 1 and not errors and not wakes:
        # Nothing to execute beside it: execute it here, as a sequential step.
        execution.seen, execution.position = seen, position
        again = []
        for fn in callables:
            again.append((yield fn))
        return tuple(again)
    if planned or wakes:
        return Park(planned, wakes)
    if errors:
        raise errors[0]
    return tuple(results)


def _targeted(callables: tuple[Any, ...]) -> Generator[Callable[[], Any], Any, tuple[Any, ...]]:
    # As planning does: a sibling that has failed for good must not stop the
    # pass before it reaches the target.
    results: list[Any] = []
    errors: list[StepError] = []
    skipped = False
    for fn in callables:
        try:
            results.append((yield fn))
        except Skip:
            skipped = True
        except StepError as exc:
            errors.append(exc)
    if skipped:
        raise Skip()  # the target is elsewhere: let the run work it out on replay
    if errors:
        raise errors[0]
    return tuple(results)


def park(execution: Runner, parked: Park) -> NoReturn:
    """Record the planned steps and their tasks, and park the run until the earliest
    wake of its waiting members (or until the last step task, an event or a child run
    wakes it); raises ``Suspended``."""
    run, using = execution.run, execution.using
    planned = parked.planned
    times = [when for when in parked.wakes if when is not None]
    until = min(times) if times else None
    now = clock.now()
    with transaction.atomic(using=using):
        if execution.fence():
            raise RunCancelled()
        if parked.wakes and resolved_meanwhile(run, using):
            # A child finished, an event or a signal came while the group was planning
            # (the run was not waiting yet, so nothing woke it): look again at once.
            until = now
        for item in planned:
            if item.memo is None:
                checkpoints.save_step(
                    using,
                    run,
                    None,
                    name=item.name,
                    kind=StepKind.RUN,
                    status=StepStatus.RUNNING,
                    position=item.position,
                    attempts=0,
                )
        StepTask.objects.using(using).bulk_create(
            [
                StepTask(
                    run=run,
                    step_name=item.name,
                    queue=run.queue,
                    function_id=run.function_id,
                    available_at=now,
                    created_at=now,
                    concurrency_key=run.concurrency_key,
                    concurrency_limit=run.concurrency_limit,
                    concurrency_key_2=run.concurrency_key_2,
                    concurrency_limit_2=run.concurrency_limit_2,
                )
                for item in planned
            ],
            ignore_conflicts=True,
        )
        # The last step task to finish requeues the run; so do an awaited event and a
        # child run that finishes; a sleep or a timeout at ``until``.
        leases.suspend(run, execution.token, using, until)
        if planned:
            notify.work_available(using)
    raise Suspended()


def resolved_meanwhile(run: Run, using: str) -> bool:
    """Has a waiting member of this run's group been resolved already: an invoked run
    finished, an awaited event delivered, a signal left for a signal wait? (The run's
    row is locked: whatever resolves a member later finds the run waiting, and wakes it.)"""
    waiting = Step.objects.using(using).filter(run_id=run.pk, status=StepStatus.WAITING)
    names = dict(waiting.values_list("name", "kind"))
    if not names:
        return False
    invoked = [name for name, kind in names.items() if kind == StepKind.INVOKE]
    if invoked and (
        Run.objects.using(using)
        .filter(parent_run_id=run.pk, parent_step__in=invoked, status__in=FINISHED)
        .exists()
    ):
        return True
    awaited = [name for name, kind in names.items() if kind == StepKind.WAIT_FOR_EVENT]
    if awaited and (
        Wait.objects.using(using)
        .filter(run_id=run.pk, step_name__in=awaited)
        .exclude(status=WaitStatus.PENDING)
        .exists()
    ):
        return True
    signalled = StepKind.WAIT_FOR_SIGNAL in names.values()
    return signalled and (
        Signal.objects.using(using).filter(run_id=run.pk, delivered_at__isnull=True).exists()
    )


# --- step tasks -------------------------------------------------------------------
