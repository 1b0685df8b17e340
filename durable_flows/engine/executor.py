"""Executing one leased run: replay from checkpoints, execute new steps, decide the outcome.

A run that stays on one worker executes its function once, top to bottom:
each new step runs inline and is checkpointed as it completes. Replay (the
function re-entered from the top, completed steps answered from their
records) happens only when a run resumes: after a crash, a retry or a sleep.
"""

from __future__ import annotations

import threading
from typing import Any

from .. import clock
from ..conf import flow_settings
from ..definitions.functions import Function
from ..definitions.payloads import Event
from ..exceptions import (
    Interrupt,
    LeaseLost,
    NestedStepError,
    NonDeterminismError,
    NonRetriableError,
    RunCancelled,
    StepError,
    TooManyStepsError,
)
from ..models import Run, RunStatus, Step, StepKind, StepStatus
from . import admission, bridge, checkpoints, leases, outcomes, retry, timeouts
from .async_context import AsyncContext, checked
from .context import Context
from .group_commit import CommitGroup
from .parallel import plan_step
from .signals import DONE, Crashed, Released, Suspended
from .steps import StepRunner


class Execution(StepRunner):
    """One pass of a run's function on this worker, holding its lease token."""

    def __init__(
        self,
        run: Run,
        token: str,
        function: Function,
        using: str,
        stopping: threading.Event | None = None,
        group: CommitGroup | None = None,
    ) -> None:
        self.run = run
        # While set, the run's atomic steps and its completion join group commits
        # (see engine/group_commit.py).
        self.group = group
        self.token = token
        self.function = function
        self.using = using
        self.stopping = stopping or threading.Event()
        # A run that never started has no checkpoints: no query for them.
        self.memos: dict[str, Step] = (
            {}
            if run.fresh
            else {step.name: step for step in Step.objects.using(using).filter(run_id=run.pk)}
        )
        # Code before the last recorded step has run before: it is being replayed.
        self._pending_memos = set(self.memos)
        self.seen: dict[str, int] = {}
        self.position = 0
        self.in_step = False
        self.cancel_requested = run.cancel_requested
        # How often the workers executing the run died (each a failed attempt).
        self._crashes = leases.crashes(run)
        # Steps reached inside ``ctx.group.parallel`` while planning (engine/parallel.py).
        self.planning: list[Any] | None = None
        self.targeted = False  # a parallel step task's replay, to one target step
        event = Event.from_model(run.event) if run.event_id and run.event else None
        events = [event] if event else []
        if function.batch_events:
            events = [Event.from_model(e) for e in admission.batch_events(run, using)] or events
        make = AsyncContext if function.is_async else Context
        self.ctx = make(self, event, events)

    @property
    def replaying(self) -> bool:
        return bool(self._pending_memos)

    # --- the whole run ------------------------------------------------------

    def execute(self) -> None:
        """Call the function and record how the run ended (an async function's coroutine
        is driven by ``async_runs`` with the same ``enter`` and ``conclude``)."""
        try:
            self.enter()
            value = self.call_function()
        except BaseException as exc:  # user code's too: SystemExit, KeyboardInterrupt
            self.conclude(None, exc)
        else:
            self.conclude(value, None)

    def enter(self) -> None:
        """Before the function is called: a run whose worker died executes alone (not in
        a group commit), and fails once its workers died more often than its retries
        allow; then the first step boundary."""
        if self._crashes:
            self.leave_group()
            if self._crashes > self.function.retries:
                raise Crashed()
        self.boundary()

    def call_function(self) -> Any:
        """The function's result; an async function's coroutine runs on this thread's
        event loop, its steps back on this thread (``bridge``)."""
        value = self.function.fn(self.ctx)
        if isinstance(self.ctx, AsyncContext):
            return bridge.of_this_thread().run(checked(self.ctx, value))
        return value

    def conclude(self, value: Any, raised: BaseException | None) -> None:
        """The function returned ``value`` or ``raised`` (what ``enter`` raised included):
        record the run's outcome, or its retry, or let it go (suspended, released)."""
        run, using = self.run, self.using
        try:
            try:
                if raised is not None:
                    raise raised
                what = f"function {run.function_id!r} returned a value"
                output = checkpoints.encode_output(value, what=what)
            except BaseException:
                self.leave_group()
                raise
            if self._completes_in_group():
                assert self.group is not None
                self.group.add_completed(run, output)
                return
            self.leave_group()
            if self.cancel_requested:
                raise RunCancelled()
            outcomes.finish(
                run,
                self.token,
                using,
                RunStatus.COMPLETED,
                output=output,
                close_waits=self._may_have_waits(),
            )
        except RunCancelled as exc:
            error = exc.error or outcomes.cancel_reason(run, using)
            outcomes.finish(run, self.token, using, RunStatus.CANCELLED, error=error)
        except Released:
            leases.release(run, self.token, using, clock.now())
        except LeaseLost as exc:
            leases.lease_lost(run, self.token, using, exc)
        except Suspended:
            pass
        except Crashed:
            self._fail_crashed()
        except (StepError, NonRetriableError, NonDeterminismError) as exc:
            self._fail(exc)
        except Interrupt:
            raise
        except BaseException as exc:  # user code's: SystemExit, KeyboardInterrupt too
            self._function_error(exc)

    def _commit_group(self, *, leave: bool) -> None:
        """Commit what the group holds; ``leave``: then go on alone, one commit per step."""
        if self.group is not None:
            group = self.group
            if leave:
                self.group = None
            self.cancel_requested = group.commit(leaving=self.run) or self.cancel_requested

    def leave_group(self) -> None:
        self._commit_group(leave=True)

    def _completes_in_group(self) -> bool:
        """Is completing this run only an update and its lifecycle event (no waits to
        disarm, no parent to resume, no cancel to honour)?"""
        return (
            self.group is not None
            and not self.cancel_requested
            and not self.run.parent_run_id
            and not self._may_have_waits()
        )

    def _may_have_waits(self) -> bool:
        """Could the run have armed waits (cancel rules, wait steps) to disarm at the end?"""
        return bool(self.function.cancel) or any(
            memo.kind == StepKind.WAIT_FOR_EVENT for memo in self.memos.values()
        )

    def _fail_crashed(self) -> None:
        error = leases.crashed_error(self._crashes, self.function.retries)
        outcomes.fail(self.run, self.token, self.using, error, crashed=self._crashes)

    def _fail(self, exc: BaseException) -> None:
        step = exc.step_id if isinstance(exc, StepError) else None
        outcomes.fail(self.run, self.token, self.using, retry.error_dict(exc), step=step)

    def _function_error(self, exc: BaseException) -> None:
        """Code outside steps raised: retry the function per ``retries``, then fail."""
        failures = self.run.attempt + 1
        when = retry.retry_at(exc, failures, self.function.retries)
        if when is None:
            self._fail(exc)
            return
        leases.release(
            self.run,
            self.token,
            self.using,
            when,
            attempt=failures,
            error=retry.error_dict(exc),
        )

    # --- steps ----------------------------------------------------------------

    def boundary(self) -> None:
        """Between steps: honour a cancel request or a timeout, or a worker that is stopping."""
        if self.cancel_requested:
            raise RunCancelled()
        if self.function.timeouts is not None:
            overdue = timeouts.overdue(
                self.function, self.run, clock.now(), started=bool(self.memos)
            )
            if overdue is not None:
                raise RunCancelled(overdue)
        if self.stopping.is_set():
            raise Released()

    def reach(self, step_id: str, kind: StepKind) -> tuple[str, int, Step | None]:
        """Name the step reached (``id``, ``id:1``...), find its record, check determinism."""
        if self.in_step:
            raise NestedStepError(f"step {step_id!r} was called inside another step's function")
        if not isinstance(step_id, str) or not step_id:
            raise ValueError(f"a step id must be a non-empty string, got {step_id!r}")
        count = self.seen.get(step_id, 0)
        self.seen[step_id] = count + 1
        name = f"{step_id}:{count}" if count else step_id
        position = self.position
        self.position += 1
        if self.position > flow_settings.MAX_STEPS_PER_RUN:
            raise TooManyStepsError(
                f"run reached MAX_STEPS_PER_RUN ({flow_settings.MAX_STEPS_PER_RUN}) steps"
            )
        memo = self.memos.get(name)
        if memo is not None and memo.kind != kind:
            raise NonDeterminismError(
                f"step {name!r} was recorded as a {memo.kind!r} step but the function now "
                f"calls it as {kind.value!r}: the function changed between executions"
            )
        self._pending_memos.discard(name)
        if self.group is not None:
            if kind != StepKind.RUN and not (memo and memo.status in DONE):
                self.leave_group()
            elif self.group.must_commit_before(self.run):
                self._commit_group(leave=False)
        self._intercept(name, position, memo, kind)
        return name, position, memo

    # --- hooks that parallel step tasks (engine/step_tasks.py) override --------

    def _intercept(self, name: str, position: int, memo: Step | None, kind: StepKind) -> None:
        """Before a step executes: inside a parallel group, plan it instead."""
        if self.planning is not None and (
            memo is None or memo.status not in (StepStatus.COMPLETED, StepStatus.FAILED)
        ):
            plan_step(self, name, position, memo, kind)

    def fence(self) -> bool:
        return leases.fence(self.run, self.token, self.using)
