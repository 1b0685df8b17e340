"""Executing a ``ctx.step.run`` step: its function, its checkpoint, its retries.

``run_step`` is the whole step for synchronous code. An async function's
non-atomic step is the same in three parts (``open_step`` on the worker
thread, its coroutine awaited on the event loop, ``close_step`` on the worker
thread again: see ``async_runs``), so that the ORM is never used from the loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any, NoReturn

from django.db import transaction

from .. import clock, storage
from ..definitions.functions import Function
from ..exceptions import Interrupt, StepError, WorkerCrashed
from ..faults import fault_point
from ..models import Run, Step, StepKind, StepStatus
from . import checkpoints, leases, retry
from .group_commit import CommitGroup
from .signals import Opened, Suspended

log = logging.getLogger("durable_flows.worker")


class StepRunner:
    """The step half of ``executor.Execution`` (mixed into it)."""

    run: Run
    token: str
    using: str
    function: Function
    step_retries: int | None = None  # the open step's own ``retries=``
    group: CommitGroup | None
    memos: dict[str, Step]
    in_step: bool
    planning: list[Any] | None
    cancel_requested: bool
    ctx: Any
    # Whether a new step's fence and checkpoint may be one statement (parallel step
    # tasks fence on their task, not the run).
    one_statement_checkpoints = True

    def reach(self, step_id: str, kind: StepKind) -> tuple[str, int, Step | None]:
        raise NotImplementedError

    def boundary(self) -> None:
        raise NotImplementedError

    def fence(self) -> bool:
        raise NotImplementedError

    def leave_group(self) -> None:
        raise NotImplementedError

    @contextmanager
    def inside_step(self) -> Iterator[None]:
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
        retries: int | None = None,
    ) -> Any:
        opened = self.open_step(step_id, kind, retries)
        if opened.recorded:
            return opened.output
        if not atomic:
            self.leave_group()  # what is pending commits before the step's effects
            try:
                with self.inside_step():
                    value = fn(*args)
            except Interrupt:
                raise
            except BaseException as exc:  # user code: any exception, SystemExit included
                return self.close_step(opened, None, exc)
            return self.close_step(opened, value, None)
        name, memo, checkpoint = opened.name, opened.memo, opened.checkpoint
        # A retried step (it has a record) updates its record: not in the group, whose
        # statement only inserts new checkpoints.
        if self.group is not None and (self.planning is not None or memo is not None):
            self.leave_group()
        if self.group is not None:
            return self._grouped_step(fn, args, checkpoint)
        fast = self._fast(memo)

        def execute() -> tuple[Any, bool, Step]:
            transaction_ = storage.of(self.using).step_transaction(self.fence)
            with transaction_ as fenced, self.inside_step():
                output = checkpoints.step_output(fn(*args), name, self.run.function_id)
                fault_point("after_effect")
                cancel = False if fast else fenced()
                return output, *self._record(memo, fast, cancel, output=output, **checkpoint)

        return self._settle(opened, execute)

    def open_step(
        self, step_id: str, kind: StepKind = StepKind.RUN, retries: int | None = None
    ) -> Opened:
        """Reach a step: its record if it has one (a failure raises), else what its
        checkpoint will hold; ``ctx.attempt`` is this attempt's until the step ends."""
        name, position, memo = self.reach(step_id, kind)
        self.step_retries = retries  # this step's, until the next one opens
        if memo is not None and memo.status == StepStatus.COMPLETED:
            return Opened(name, memo, {}, recorded=True, output=memo.output)
        if memo is not None and memo.status == StepStatus.FAILED:
            raise self.step_error(name, memo.error or {})
        self.boundary()
        attempt = memo.attempts if memo else 0
        self.ctx.attempt = attempt
        checkpoint = {
            "name": name,
            "kind": kind,
            "position": position,
            "status": StepStatus.COMPLETED,
            "attempts": attempt + 1,
            "started_at": clock.now(),  # this attempt's: earlier ones are in failed_attempts
            "error": None,
        }
        if attempt > self.retries_of_step():
            # Crashes alone take a step past its retries unfailed (a parallel step task
            # whose worker died: rescue_orphan_tasks counts it).
            crashed = WorkerCrashed(f"the workers executing step {name!r} died {attempt} times")
            self._step_failed(crashed, memo, {**checkpoint, "attempts": attempt})
        return Opened(name, memo, checkpoint)

    def close_step(self, opened: Opened, value: Any, error: BaseException | None) -> Any:
        """A non-atomic step's function has returned ``value`` or raised ``error``:
        checkpoint the result, or fail or retry the step."""
        memo, checkpoint = opened.memo, opened.checkpoint
        self.leave_group()
        fast = self._fast(memo)

        def record() -> tuple[Any, bool, Step]:
            if error is not None:
                raise error
            output = checkpoints.step_output(value, opened.name, self.run.function_id)
            fault_point("after_effect")
            with nullcontext() if fast else transaction.atomic(using=self.using):
                cancel = False if fast else self.fence()
                return output, *self._record(memo, fast, cancel, output=output, **checkpoint)

        return self._settle(opened, record)

    def _settle(self, opened: Opened, checkpoint: Callable[[], tuple[Any, bool, Step]]) -> Any:
        """Checkpoint a step (``checkpoint`` returns its output, whether a cancel is
        pending, its record); a failure of the step's code fails or retries the step."""
        try:
            output, cancel, step = checkpoint()
            fault_point("after_checkpoint")
        except Interrupt:
            raise
        except BaseException as exc:  # user code: any exception, SystemExit included
            return self._step_failed(exc, opened.memo, opened.checkpoint)
        finally:
            self.ctx.attempt = self.run.attempt
        return self._stored(step, output, cancel)

    def _fast(self, memo: Step | None) -> bool:
        """A new step's checkpoint: fence and insert in one statement, where the storage can."""
        store = storage.of(self.using)
        return memo is None and self.one_statement_checkpoints and store.one_statement_checkpoints

    def _stored(self, step: Step, output: Any, cancel: bool) -> Any:
        """A step's result is recorded."""
        self.cancel_requested = self.cancel_requested or cancel
        self.memos[step.name] = step
        return output

    def _grouped_step(
        self, fn: Callable[..., Any], args: tuple[Any, ...], checkpoint: dict[str, Any]
    ) -> Any:
        """An atomic step inside the group's transaction: its checkpoint is written when
        the group commits (with the run's completion, if the run ends after it)."""
        assert self.group is not None
        try:
            with self.group.step(self.run), self.inside_step():
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

    def _record(
        self, memo: Step | None, fast: bool, cancel: bool, **fields: Any
    ) -> tuple[bool, Step]:
        """Write a step's checkpoint; ``fast``: fencing too, in the same statement."""
        if fast:
            return checkpoints.checkpoint(
                self.run, self.token, self.using, ended_at=clock.now(), **fields
            )
        return cancel, self._save(memo, **fields)

    def retries_of_step(self) -> int:
        """The step's own ``retries=``, else the function's."""
        own = self.step_retries
        return self.function.retries if own is None else own

    def _retry_later(self, when: Any) -> None:
        leases.release(self.run, self.token, self.using, when)

    def _save(self, memo: Step | None, **fields: Any) -> Step:
        return checkpoints.save_step(self.using, self.run, memo, ended_at=clock.now(), **fields)

    def _step_failed(
        self, exc: BaseException, memo: Step | None, checkpoint: dict[str, Any]
    ) -> NoReturn:
        failures = checkpoint["attempts"]
        when = retry.retry_at(exc, failures, self.retries_of_step())
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
