"""Group commit: checkpoints and completions wait for the next commit, shared.

A worker executes the runs it claims one after another inside one transaction
(the claim included). A step's checkpoint is not committed at once: it waits
until the same run reaches its next step (so all the run did is durable before
more of its steps run), or the run completes. Completed runs are written
together (a few multi-row statements, fenced on the lease token) with the next
commit. So a batch of single-step runs costs one commit, and a run of N steps
N commits, its claim and completion included.

The guarantees are those of one commit per step: an atomic step's writes and its
checkpoint commit together or not at all; a crash before a commit rolls back
everything in it, and those runs execute again, exactly as after a crash before
a step's own commit. Pending work waits at most ``MAX_PENDING_SECONDS`` before
another step starts.

Failures stay with the run that caused them:

- A step that wrote to the database is committed before any other step starts,
  so the transaction never holds more than one step's writes. What else is
  pending is only checkpoints and completions kept in memory.
- A slow step holds only itself: once a step has run for ``STALLED_SECONDS``,
  the worker's watchdog writes what is pending, on its own connection
  (``flush_stalled``).
- If writing the group fails, each run's part is written again on its own, so
  one bad run is handed back alone (``on_failure``) and the others commit.

The claim is committed before the group begins (a run that kills its worker
then reads "running" and is taken back, counting the crash).

A run that does anything else (a sleep, a non-atomic step, an error...) commits
the group first and goes on as usual, one transaction per step.

PostgreSQL only: on SQLite (one writer; cheap commits in WAL mode) a worker
holding the write lock for whole groups would starve the others.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.db import DatabaseError, connections, transaction

from .. import clock, storage
from ..definitions.functions import Function, registry
from ..exceptions import LeaseLost
from ..faults import fault_point
from ..models import Run, RunStatus, Step
from ..storage.base import GroupWrite
from . import outcomes

log = logging.getLogger("durable_flows.worker")

MAX_PENDING_SECONDS = 0.05
# A step running this long is slow: the watchdog commits what waits behind it.
STALLED_SECONDS = 0.2


def eligible(function: Function) -> bool:
    """Can this function's runs execute inside a group? Not when their steps must check
    a timeout or their start must load a batch of events."""
    return function.timeouts is None and function.batch_events is None


class CommitGroup:
    """Pending checkpoints and completions of the runs executed since the last commit.

    Used by one executor thread; the worker's watchdog may flush it from another
    (``flush_stalled``), so its state changes under a lock.
    """

    def __init__(self, using: str, on_failure: Callable[[Run, str], None]) -> None:
        self.using = using
        self.token = ""  # the lease token of the claim the group's runs came from
        self.on_failure = on_failure  # hands back a run whose pending work was rolled back
        self._lock = threading.RLock()
        self._atomic: Any = None
        self._steps: list[Step] = []
        self._completed: list[tuple[Run, Any]] = []
        self._since = 0.0
        self._dirty: str | None = None  # the run whose step wrote in the open transaction
        self._stepping_since: float | None = None  # when the step executing now began
        self._outcomes: dict[str, str] = {}  # run going on -> "cancel" or "lost"
        self.completed = 0  # runs completed through the group, in all its commits

    def _begin(self) -> None:
        if self._atomic is None:
            self._atomic = transaction.atomic(using=self.using)
            self._atomic.__enter__()
            self._since = time.monotonic()

    def must_commit_before(self, run: Run) -> bool:
        """Before ``run`` reaches a step: has it work pending, does the transaction hold a
        step's writes, or has the group waited enough?"""
        with self._lock:
            return self._dirty is not None or (
                self._atomic is not None
                and (
                    any(step.run_id == run.pk for step in self._steps)
                    or time.monotonic() - self._since > MAX_PENDING_SECONDS
                )
            )

    @contextmanager
    def step(self, run: Run) -> Iterator[None]:
        """Run a step's function of ``run`` inside the group's transaction.

        A savepoint is made only when the function touches the database (before
        its first statement), so that a failing step undoes its own writes and
        nothing of the other runs; a step that writes nothing costs no round trip.
        """
        with self._lock:
            self._begin()
            self._stepping_since = time.monotonic()
        connection = connections[self.using]
        made = False

        def savepoint_first(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
            nonlocal made
            if not made:
                made = True
                with self._lock:
                    self._dirty = run.pk
                storage.of(self.using).savepoint()
            return execute(sql, params, many, context)

        try:
            with connection.execute_wrapper(savepoint_first):
                yield
        except BaseException:
            if made:
                storage.of(self.using).rollback_savepoint()
                transaction.set_rollback(False, using=self.using)
                with self._lock:
                    self._dirty = None
            raise
        finally:
            with self._lock:
                self._stepping_since = None
        if made:
            storage.of(self.using).release_savepoint()

    def add_step(self, step: Step) -> None:
        with self._lock:
            self._begin()
            self._steps.append(step)

    def add_completed(self, run: Run, output: Any) -> None:
        with self._lock:
            self._begin()
            self._completed.append((run, output))

    def _take(self) -> tuple[list[Step], list[tuple[Run, Any]], dict[str, Run]]:
        """Empty the group: its pending steps, completions, and the runs they belong to."""
        steps, self._steps = self._steps, []
        completed, self._completed = self._completed, []
        runs = {step.run_id: step.run for step in steps}
        runs.update({run.pk: run for run, _ in completed})
        return steps, completed, runs

    def commit(self, leaving: Run | None = None) -> bool:
        """Write what is pending and commit. ``leaving``: the run about to go on (its next
        step, or outside the group); returns whether a cancel was requested for it, and
        raises ``LeaseLost`` if it may not go on (its lease was lost, or its pending
        work could not be written and it was handed back).
        """
        with self._lock:
            if self._atomic is not None:
                atomic, self._atomic = self._atomic, None
                dirty, self._dirty = self._dirty, None
                self._write(atomic, dirty, *self._take())
            outcome = self._outcomes.pop(leaving.pk, None) if leaving is not None else None
            if leaving is None:
                self._outcomes.clear()
        if outcome == "lost":
            raise LeaseLost(f"run {leaving.pk} may not go on here")  # type: ignore[union-attr]
        return outcome == "cancel"

    def flush_stalled(self) -> bool:
        """From the watchdog: if a step has been executing for ``STALLED_SECONDS``, write
        what waits behind it on this thread's connection: checkpoints and completions
        held in memory (the open transaction holds no other step's writes: a step that
        wrote is committed before the next one starts)."""
        with self._lock:
            since = self._stepping_since
            if since is None or time.monotonic() - since < STALLED_SECONDS:
                return False
            if not (self._steps or self._completed):
                return False
            steps, completed, runs = self._take()
            atomic = transaction.atomic(using=self.using)
            atomic.__enter__()
            self._write(atomic, None, steps, completed, runs)
            return True

    def _write(
        self,
        atomic: Any,
        dirty: str | None,
        steps: list[Step],
        completed: list[tuple[Run, Any]],
        runs: dict[str, Run],
    ) -> None:
        """Write and commit (``atomic`` open); on failure, retry each run on its own."""
        if not steps and not completed:
            atomic.__exit__(None, None, None)  # nothing, or a step that wrote nothing yet
            return
        try:
            written = self._write_all(atomic, steps, completed)
        except DatabaseError as exc:
            log.warning("a group commit failed; writing its %d run(s) apart: %s", len(runs), exc)
            self._write_each(dirty, steps, completed, runs)
            return
        self._settle(written, steps, completed)

    def _write_all(
        self, atomic: Any, steps: list[Step], completed: list[tuple[Run, Any]]
    ) -> GroupWrite:
        """One statement (and its commit). When the transaction has not begun on the
        server (the steps wrote nothing) and the lifecycle events start no runs, it is
        its own transaction."""
        done = {run.pk for run, _ in completed}
        going_on = list({s.run_id: s.run for s in steps if s.run_id not in done}.values())
        if not completed and len(steps) == 1 and self._nothing_sent():
            atomic.__exit__(None, None, None)  # nothing to commit: no round trip
            return self._checkpoint(going_on[0], steps[0])
        now = clock.now()
        rows = outcomes.lifecycle_rows(completed, now)
        starts_runs = any(registry.matching(row.as_dict()) for row in rows)
        args = (going_on, completed, steps, rows, self.token, now)
        if self._nothing_sent() and not starts_runs:
            atomic.__exit__(None, None, None)  # nothing to commit: no round trip
            written = storage.of(self.using).write_group(*args, guarded=True)
            if written.written:
                return written
            # Waits on lifecycle events may exist: resolve them in the same transaction.
            atomic = transaction.atomic(using=self.using)
            atomic.__enter__()
        try:
            written = storage.of(self.using).write_group(*args, guarded=False)
            if written.watched or starts_runs:
                outcomes.events_stored(
                    [r for r in rows if r.data["run_id"] in written.done], self.using, now
                )
        except BaseException as exc:
            atomic.__exit__(type(exc), exc, exc.__traceback__)
            raise
        atomic.__exit__(None, None, None)
        return written

    def _write_each(
        self,
        dirty: str | None,
        steps: list[Step],
        completed: list[tuple[Run, Any]],
        runs: dict[str, Run],
    ) -> None:
        """After a failed group write (rolled back): each run's part in a transaction of
        its own. The run whose step's writes were rolled back executes again; a run
        whose part still cannot be written is handed back alone."""
        for run_id, run in runs.items():
            if run_id == dirty:
                self._lost(run)
                continue
            own_steps = [step for step in steps if step.run_id == run_id]
            own_completed = [(r, output) for r, output in completed if r.pk == run_id]
            try:
                atomic = transaction.atomic(using=self.using)
                atomic.__enter__()
                written = self._write_all(atomic, own_steps, own_completed)
            except DatabaseError as exc:
                log.warning("run %s: its checkpoint could not be written: %s", run_id, exc)
                self._lost(run)
                continue
            self._settle(written, own_steps, own_completed)

    def _lost(self, run: Run) -> None:
        self._outcomes[run.pk] = "lost"
        self.on_failure(run, self.token)

    def _settle(
        self, written: GroupWrite, steps: list[Step], completed: list[tuple[Run, Any]]
    ) -> None:
        """After a commit: count completions, cancel the completed runs asked to cancel,
        and note what the runs going on may do."""
        fault_point("after_checkpoint")
        self.completed += len(written.done)
        for run, _ in completed:
            if run.pk in written.done:
                outcomes.log_finished(run)
            elif run.pk in written.cancel:
                outcomes.finish(
                    run,
                    self.token,
                    self.using,
                    RunStatus.CANCELLED,
                    error=outcomes.cancel_reason(run, self.using),
                )
            elif run.pk not in written.done:
                log.warning("run %s completed here had been taken over", run.pk)
        done = {run.pk for run, _ in completed}
        for step in steps:
            if step.run_id in done:
                continue
            if step.run_id not in written.fenced:
                self._outcomes[step.run_id] = "lost"
            elif step.run_id in written.cancel:
                self._outcomes[step.run_id] = "cancel"

    def _checkpoint(self, run: Run, step: Step) -> GroupWrite:
        """One run's one step, and no statement sent yet (the step wrote nothing): fence and
        checkpoint are one statement, its own transaction."""
        try:
            cancel = storage.of(self.using).checkpoint(step, self.token)
        except LeaseLost:
            return GroupWrite(True, False, set(), set(), set())
        return GroupWrite(True, False, set(), {run.pk}, {run.pk} if cancel else set())

    def _nothing_sent(self) -> bool:
        """Has the transaction not begun on the server yet?"""
        return storage.of(self.using).nothing_sent()

    def abort(self, exc: BaseException) -> None:
        """Roll back what is pending (an unexpected error) and hand its runs back."""
        with self._lock:
            if self._atomic is None:
                return
            atomic, self._atomic = self._atomic, None
            self._dirty = None
            _, _, pending = self._take()
        try:
            atomic.__exit__(type(exc), exc, exc.__traceback__)
        except DatabaseError:
            pass  # the connection is gone: the database rolled back by itself
        for run in pending.values():
            self.on_failure(run, self.token)
