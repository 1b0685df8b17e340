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
another step starts (it may wait longer behind one slow step).

A run that does anything else (a sleep, a non-atomic step, an error...) commits
the group first and goes on as usual, one transaction per step.

PostgreSQL only: on SQLite (one writer; cheap commits in WAL mode) a worker
holding the write lock for whole groups would starve the others.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.db import DatabaseError, connections, transaction

from .. import clock
from ..events import events_stored
from ..exceptions import LeaseLost
from ..faults import fault_point
from ..models import Run, Step
from ..registry import Function, registry
from . import state

log = logging.getLogger("durable_flows.worker")

_SAVEPOINT = "df_group_step"
MAX_PENDING_SECONDS = 0.05


def eligible(function: Function) -> bool:
    """Can this function's runs execute inside a group? Not when their steps must check
    a timeout or their start must load a batch of events."""
    return function.timeouts is None and function.batch_events is None


class CommitGroup:
    """Pending checkpoints and completions of the runs executed since the last commit."""

    def __init__(self, using: str, on_failure: Callable[[Run, str], None]) -> None:
        self.using = using
        self.token = ""  # the lease token of the claim made inside the group
        self.on_failure = on_failure  # hands back a run whose pending work was rolled back
        self._atomic: Any = None
        self._steps: list[Step] = []
        self._completed: list[tuple[Run, Any]] = []
        self._since = 0.0
        self.completed = 0  # runs completed through the group, in all its commits

    def begin(self) -> None:
        if self._atomic is None:
            self._atomic = transaction.atomic(using=self.using)
            self._atomic.__enter__()
            self._since = time.monotonic()

    def must_commit_before(self, run: Run) -> bool:
        """Before ``run`` reaches a step: has it work pending, or has the group waited enough?"""
        return self._atomic is not None and (
            any(step.run_id == run.pk for step in self._steps)
            or time.monotonic() - self._since > MAX_PENDING_SECONDS
        )

    @contextmanager
    def step(self) -> Iterator[None]:
        """Run a step's function inside the group's transaction.

        A savepoint is made only when the function touches the database (before
        its first statement), so that a failing step undoes its own writes and
        nothing of the other runs; a step that writes nothing costs no round trip.
        """
        self.begin()
        connection = connections[self.using]
        made = False

        def savepoint_first(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
            nonlocal made
            if not made:
                made = True
                _raw(connection, f"SAVEPOINT {_SAVEPOINT}")
            return execute(sql, params, many, context)

        try:
            with connection.execute_wrapper(savepoint_first):
                yield
        except BaseException:
            if made:
                _raw(connection, f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
                _raw(connection, f"RELEASE SAVEPOINT {_SAVEPOINT}")
                transaction.set_rollback(False, using=self.using)
            raise
        if made:
            _raw(connection, f"RELEASE SAVEPOINT {_SAVEPOINT}")

    def add_step(self, step: Step) -> None:
        self._steps.append(step)

    def add_completed(self, run: Run, output: Any) -> None:
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
        step, or outside the group); returns whether a cancel was requested for it.

        If the commit fails, everything in it was rolled back: its runs (and
        ``leaving``) are handed back to execute again, and ``LeaseLost`` is raised.
        """
        if self._atomic is None:
            return False
        atomic, self._atomic = self._atomic, None
        steps, completed, pending = self._take()
        done = {run.pk for run, _ in completed}
        going_on = list({s.run_id: s.run for s in steps if s.run_id not in done}.values())
        try:
            if not steps and not completed:
                atomic.__exit__(None, None, None)  # the claim alone, or nothing
                return False
            if not completed and len(steps) == 1 and self._nothing_sent():
                written = self._checkpoint(atomic, going_on[0], steps[0])
            else:
                written = self._commit_all(atomic, going_on, completed, steps)
        except (DatabaseError, LeaseLost) as exc:
            if leaving is not None:
                pending[leaving.pk] = leaving
            for run in pending.values():
                self.on_failure(run, self.token)
            raise LeaseLost(f"a group commit failed and was rolled back: {exc}") from exc
        fault_point("after_checkpoint")
        self.completed += len(written.done)
        if len(written.done) < len(completed):
            log.warning(
                "%d run(s) completed here had been taken over", len(completed) - len(written.done)
            )
        if leaving is None or leaving.pk not in {run.pk for run in going_on}:
            return False
        if leaving.pk not in written.fenced:
            raise LeaseLost(f"run {leaving.pk} is no longer leased to this worker")
        return leaving.pk in written.cancel

    def _checkpoint(self, atomic: Any, run: Run, step: Step) -> state.GroupWrite:
        """One run's one step, and no statement sent yet (the step wrote nothing): fence and
        checkpoint are one statement, its own transaction."""
        atomic.__exit__(None, None, None)  # nothing to commit: no round trip
        try:
            cancel = state.checkpoint_step(step, self.token, self.using)
        except LeaseLost:
            return state.GroupWrite(True, False, set(), set(), set())
        return state.GroupWrite(True, False, set(), {run.pk}, {run.pk} if cancel else set())

    def _commit_all(
        self, atomic: Any, going_on: list[Run], completed: list[Any], steps: list[Step]
    ) -> state.GroupWrite:
        """One statement. When the transaction has not begun on the server (the steps
        wrote nothing) and the lifecycle events start no runs, it is its own transaction."""
        now = clock.now()
        rows = state.lifecycle_rows(completed, now)
        starts_runs = any(registry.matching(row.as_dict()) for row in rows)
        args = (going_on, completed, steps, rows, self.token, self.using, now)
        if self._nothing_sent() and not starts_runs:
            atomic.__exit__(None, None, None)  # nothing to commit: no round trip
            written = state.write_group(*args, guarded=True)
            if written.written:
                return written
            # Waits on lifecycle events may exist: resolve them in the same transaction.
            atomic = transaction.atomic(using=self.using)
            atomic.__enter__()
        try:
            written = state.write_group(*args, guarded=False)
            if written.watched or starts_runs:
                events_stored(
                    [r for r in rows if r.data["run_id"] in written.done], self.using, now
                )
        except BaseException as exc:
            atomic.__exit__(type(exc), exc, exc.__traceback__)
            raise
        atomic.__exit__(None, None, None)
        return written

    def _nothing_sent(self) -> bool:
        """Has the transaction not begun on the server yet?"""
        from psycopg.pq import TransactionStatus

        raw = connections[self.using].connection
        return raw is not None and raw.info.transaction_status == TransactionStatus.IDLE

    def abort(self, exc: BaseException) -> None:
        """Roll back what is pending (an unexpected error) and hand its runs back."""
        if self._atomic is None:
            return
        atomic, self._atomic = self._atomic, None
        _, _, pending = self._take()
        try:
            atomic.__exit__(type(exc), exc, exc.__traceback__)
        except DatabaseError:
            pass  # the connection is gone: the database rolled back by itself
        for run in pending.values():
            self.on_failure(run, self.token)


def _raw(connection: Any, sql: str) -> None:
    """A statement on the driver's connection, beside Django's cursors (and their wrappers)."""
    connection.connection.execute(sql)
