"""Executing one leased run: replay from checkpoints, execute new steps, decide the outcome.

A run that stays on one worker executes its function once, top to bottom:
each new step runs inline and is checkpointed as it completes. Replay (the
function re-entered from the top, completed steps answered from their
records) happens only when a run resumes: after a crash, a retry or a sleep.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from typing import Any

from django.db import transaction

from .. import clock, storage
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
    WorkerCrashed,
)
from ..faults import fault_point
from ..models import Run, RunStatus, Step, StepKind, StepStatus
from . import admission, checkpoints, leases, outcomes, retry, timeouts
from .context import Context
from .group_commit import CommitGroup
from .parallel import plan_step
from .signals import DONE, Crashed, Released, Suspended

log = logging.getLogger("durable_flows.worker")


class Execution:
    """One pass of a run's function on this worker, holding its lease token."""

    # Whether a new step's fence and checkpoint may be one statement (parallel step
    # tasks fence on their task, not the run).
    one_statement_checkpoints = True

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
        self.ctx = Context(self, event, events)

    @property
    def replaying(self) -> bool:
        return bool(self._pending_memos)

    # --- the whole run ------------------------------------------------------

    def execute(self) -> None:
        run, using = self.run, self.using
        try:
            if self._crashes:
                # A run whose worker died executes alone (not in a group commit), and
                # fails once its workers died more often than its retries allow.
                self.leave_group()
                if self._crashes > self.function.retries:
                    raise Crashed()
            try:
                self.boundary()
                value = self.function.fn(self.ctx)
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

    @contextmanager
    def _inside_step(self):
        self.in_step = True
        try:
            yield
        finally:
            self.in_step = False

    def run_step(
        self,
        step_id: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        *,
        atomic: bool,
        kind: StepKind = StepKind.RUN,
    ) -> Any:
        name, position, memo = self.reach(step_id, kind)
        if memo is not None and memo.status == StepStatus.COMPLETED:
            return memo.output
        if memo is not None and memo.status == StepStatus.FAILED:
            raise self.step_error(name, memo.error or {})
        self.boundary()
        attempt = memo.attempts if memo else 0
        self.ctx.attempt = attempt
        started_at = clock.now()  # this attempt's: earlier ones are in failed_attempts
        checkpoint = {
            "name": name,
            "kind": kind,
            "position": position,
            "status": StepStatus.COMPLETED,
            "attempts": attempt + 1,
            "started_at": started_at,
            "error": None,
        }
        if attempt > self.function.retries:
            # Crashes alone take a step past its retries unfailed (a parallel step task
            # whose worker died: rescue_orphan_tasks counts it).
            crashed = WorkerCrashed(f"the workers executing step {name!r} died {attempt} times")
            return self._step_failed(crashed, memo, {**checkpoint, "attempts": attempt})
        # A retried step (it has a record) updates its record: not in the group, whose
        # statement only inserts new checkpoints.
        if self.group is not None and (
            not atomic or self.planning is not None or memo is not None or attempt
        ):
            self.leave_group()
        if self.group is not None:
            return self._grouped_step(fn, args, checkpoint)
        # A new step's checkpoint: fence and insert in one statement, where the storage can.
        store = storage.of(self.using)
        fast = memo is None and self.one_statement_checkpoints and store.one_statement_checkpoints
        try:
            if atomic:
                transaction_ = storage.of(self.using).step_transaction(self.fence)
                with transaction_ as fenced, self._inside_step():
                    output = checkpoints.step_output(fn(*args), name, self.run.function_id)
                    fault_point("after_effect")
                    cancel = False if fast else fenced()
                    cancel, step = self._record(memo, fast, cancel, output=output, **checkpoint)
            else:
                with self._inside_step():
                    output = checkpoints.step_output(fn(*args), name, self.run.function_id)
                fault_point("after_effect")
                with nullcontext() if fast else transaction.atomic(using=self.using):
                    cancel = False if fast else self.fence()
                    cancel, step = self._record(memo, fast, cancel, output=output, **checkpoint)
            fault_point("after_checkpoint")
        except Interrupt:
            raise
        except BaseException as exc:  # user code: any exception, SystemExit included
            return self._step_failed(exc, memo, checkpoint)
        finally:
            self.ctx.attempt = self.run.attempt
        self.cancel_requested = self.cancel_requested or cancel
        self.memos[name] = step
        return output

    def _grouped_step(
        self, fn: Callable[..., Any], args: tuple[Any, ...], checkpoint: dict[str, Any]
    ) -> Any:
        """An atomic step inside the group's transaction: its checkpoint is written when
        the group commits (with the run's completion, if the run ends after it)."""
        assert self.group is not None
        try:
            with self.group.step(self.run), self._inside_step():
                output = checkpoints.step_output(
                    fn(*args), checkpoint["name"], self.run.function_id
                )
        except Interrupt:
            raise
        except BaseException as exc:  # user code: any exception, SystemExit included
            self.leave_group()
            return self._step_failed(exc, None, checkpoint)
        fault_point("after_effect")
        step = Step(run=self.run, output=output, ended_at=clock.now(), **checkpoint)
        self.group.add_step(step)
        self.memos[step.name] = step
        return output

    # --- hooks that parallel step tasks (engine/step_tasks.py) override --------

    def _intercept(self, name: str, position: int, memo: Step | None, kind: StepKind) -> None:
        """Before a step executes: inside a parallel group, plan it instead."""
        if self.planning is not None and (
            memo is None or memo.status not in (StepStatus.COMPLETED, StepStatus.FAILED)
        ):
            plan_step(self, name, position, memo, kind)

    def fence(self) -> bool:
        return leases.fence(self.run, self.token, self.using)

    def _record(
        self, memo: Step | None, fast: bool, cancel: bool, **fields: Any
    ) -> tuple[bool, Step]:
        """Write a step's checkpoint; ``fast``: fencing too, in the same statement."""
        if fast:
            return checkpoints.checkpoint(
                self.run, self.token, self.using, ended_at=clock.now(), **fields
            )
        return cancel, self._save(memo, **fields)

    def _retry_later(self, when: Any) -> None:
        leases.release(self.run, self.token, self.using, when)

    def _save(self, memo: Step | None, **fields: Any) -> Step:
        return checkpoints.save_step(self.using, self.run, memo, ended_at=clock.now(), **fields)

    def _step_failed(
        self, exc: BaseException, memo: Step | None, checkpoint: dict[str, Any]
    ) -> Any:
        failures = checkpoint["attempts"]
        when = retry.retry_at(exc, failures, self.function.retries)
        error = retry.error_dict(exc)
        fields = {**checkpoint, "error": error, "output": None}
        with transaction.atomic(using=self.using):
            if when is None:
                self.fence()
                step = self._save(memo, **{**fields, "status": StepStatus.FAILED})
            else:
                # The failed attempt and the run's release commit together; the
                # attempt joins the step's history in the same write.
                self._retry_later(when)
                history = retry.attempt_history(memo, checkpoint["started_at"], error)
                running = {**fields, "status": StepStatus.RUNNING, "ended_at": None}
                running["failed_attempts"] = history
                step = checkpoints.save_step(self.using, self.run, memo, **running)
        if when is not None:
            message = f"failed (attempt {failures}), retrying at {when.isoformat()}"
            log.info("run %s step %s %s: %s", self.run.pk, step.name, message, error["message"])
            raise Suspended()
        self.memos[step.name] = step
        raise self.step_error(step.name, error)

    @staticmethod
    def step_error(name: str, error: dict[str, Any]) -> StepError:
        message = f"step {name!r} failed: {error.get('type', 'Error')}: {error.get('message', '')}"
        return StepError(message, step_id=name, error=error)
