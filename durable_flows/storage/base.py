"""What every database does through the ORM; ``postgres`` and ``sqlite`` refine it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connections, transaction
from django.db.models import QuerySet, Value
from django.db.models.functions import Coalesce

from ..conf import flow_settings
from ..exceptions import LeaseLost
from ..models import Run, RunStatus, Step, StepTask, Wait, WaitPath, WaitStatus


class Storage:
    """The statements of the engine for one database alias (see ``storage.of``)."""

    # Runs executed in shared commits (engine/group_commit.py) need a database with
    # row locks: on a single-writer database they would starve the other workers.
    group_commit = False
    # Can a new step's fence and checkpoint be one statement?
    one_statement_checkpoints = False
    # Do workers hear about new work (LISTEN), or only poll?
    listens = False

    def __init__(self, using: str) -> None:
        self.using = using

    @property
    def poll_interval(self) -> float:
        return float(flow_settings.SQLITE_POLL_INTERVAL_SECONDS)

    # --- claiming ----------------------------------------------------------------

    def claim(
        self,
        worker_id: str,
        token: str,
        now: datetime,
        queues: list[str] | None,
        function_ids: list[str],
        limit: int,
    ) -> list[Run]:
        """Lease up to ``limit`` runnable runs in one transaction (see ``lease``)."""
        with transaction.atomic(using=self.using):
            return self.lease(self._pick(now, queues, function_ids, limit), worker_id, token, now)

    def lease(self, pick: Any, worker_id: str, token: str, now: datetime) -> list[Run]:
        """Inside a claim's transaction: lease the runs ``pick`` names (ids, or a subquery
        of them). Returns them in claim order with their events; each run's ``fresh``
        says whether it had never started (so it has no checkpoints to load)."""
        rows = Run.objects.using(self.using)
        if not rows.filter(id__in=pick).update(**lease_fields(worker_id, token, now)):
            return []
        claimed = rows.filter(status=RunStatus.RUNNING, lease_token=token)
        runs = list(claimed.select_related("event").order_by("-priority", "available_at", "id"))
        for run in runs:
            run.fresh = run.started_at == now  # it had none: the claim set it
        return runs

    def _pick(
        self, now: datetime, queues: list[str] | None, function_ids: list[str], limit: int
    ) -> Any:
        """The ids of the runs to claim, as a subquery of the claim's update."""
        runnable = Run.objects.using(self.using).claimable(now, queues, function_ids)
        return list(
            runnable.order_by("-priority", "available_at", "id").values_list("id", flat=True)[
                :limit
            ]
        )

    def skip_locked(self, rows: QuerySet) -> QuerySet:
        """``rows`` locked for this transaction, passing over those another one holds
        (where the database can; elsewhere the claim's write lock serialises claims)."""
        return rows

    def lock_for_write(self) -> None:
        """First thing in a transaction that reads then writes (a claim): make it take
        the write lock now, on databases where a read lock cannot always be upgraded."""

    def try_lock(self, key: str) -> bool:
        """A lock on ``key`` until the transaction ends; False if another one holds it."""
        return True

    # --- fencing and checkpoints --------------------------------------------------

    def fence(self, run_id: str, token: str) -> bool:
        """Inside a checkpoint transaction: prove the lease and lock the run. Returns
        whether a cancel was requested; raises ``LeaseLost`` if the lease is gone."""
        row = (
            Run.objects.using(self.using)
            .select_for_update()
            .filter(pk=run_id, lease_token=token, status=RunStatus.RUNNING)
            .values_list("cancel_requested", flat=True)
            .first()
        )
        if row is None:
            raise LeaseLost(f"run {run_id} is no longer leased to this worker")
        return bool(row)

    def checkpoint(self, step: Step, token: str) -> bool:
        """Fence and insert a new step's checkpoint in one statement (only where
        ``one_statement_checkpoints``)."""
        raise NotImplementedError

    @contextmanager
    def step_transaction(self, fence: Callable[[], bool]) -> Iterator[Callable[[], bool]]:
        """The transaction of an atomic step. It locks the run only at its end (the
        fence), so a cancel, or a look at the run, never waits on a step being executed.

        Yields ``fenced()``: calls ``fence`` (which proves the lease and says whether a
        cancel was requested) unless that was done already, and returns its answer.
        The caller calls it before the checkpoint; SQLite's storage at the step's first
        statement too."""
        answers: list[bool] = []
        fencing = False

        def fenced() -> bool:
            nonlocal fencing
            if not answers and not fencing:
                fencing = True
                try:
                    answers.append(fence())
                finally:
                    fencing = False
            return answers[0] if answers else False

        with self._step_atomic(fenced):
            yield fenced

    def _step_atomic(self, fenced: Callable[[], bool]) -> Any:
        return transaction.atomic(using=self.using)

    # --- events, waits and slots ----------------------------------------------------

    def wait_paths(self, names: set[str]) -> list[tuple[str, str | None]]:
        """The match paths in use for these event names, plus ``(name, None)`` if an
        unkeyed wait is pending on one of them."""
        rows = list(
            WaitPath.objects.using(self.using)
            .filter(event_name__in=names)
            .values_list("event_name", "path")
        )
        unkeyed = Wait.objects.using(self.using).filter(
            status=WaitStatus.PENDING, event_name__in=names, match_key=""
        )
        return rows + [(name, None) for name in unkeyed.values_list("event_name", flat=True)[:1]]

    def slots_in_use(self, keys: list[str] | None = None) -> dict[str, tuple[int, int]]:
        """``{key: (limit, running)}`` over running runs and step tasks (of ``keys``, or
        all): the concurrency slots taken."""
        connection = connections[self.using]
        quote = connection.ops.quote_name
        parts, params = [], []
        for model in (Run, StepTask):
            table = quote(model._meta.db_table)
            for column, cap in (
                ("concurrency_key", "concurrency_limit"),
                ("concurrency_key_2", "concurrency_limit_2"),
            ):
                where = f"status = %s AND {column} IS NOT NULL"
                params.append(RunStatus.RUNNING.value)
                if keys is not None:
                    where += f" AND {column} IN ({', '.join(['%s'] * len(keys))})"
                    params.extend(keys)
                parts.append(f"SELECT {column} AS k, {cap} AS l FROM {table} WHERE {where}")
        sql = f"SELECT k, MAX(l), COUNT(*) FROM ({' UNION ALL '.join(parts)}) slots GROUP BY k"
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return {key: (cap, count) for key, cap, count in cursor.fetchall()}

    def write_group(
        self,
        going_on: list[Run],
        completed: list[tuple[Run, Any]],
        steps: list[Step],
        rows: list[Any],
        token: str,
        now: datetime,
        *,
        guarded: bool,
    ) -> GroupWrite:
        """Shared commits' one statement (only where ``group_commit``)."""
        raise NotImplementedError

    def nothing_sent(self) -> bool:
        """Has the open transaction sent nothing to the server yet?"""
        return False

    def savepoint(self) -> None:
        """Shared commits: a savepoint before a step's first statement, made beside
        Django's cursors (so beside the execute wrapper that watches the step)."""
        raise NotImplementedError

    def rollback_savepoint(self) -> None:
        raise NotImplementedError

    def release_savepoint(self) -> None:
        raise NotImplementedError

    def notify_work(self) -> None:
        """Inside the transaction that made work runnable: tell the workers listening."""

    def notify_finished(self) -> None:
        """Inside the transaction that finished runs: tell the result waiters listening."""

    def listen(self, wake: Callable[[], None], done: Any, *, finished: bool = False) -> None:
        """Call ``wake`` whenever work is announced (or, with ``finished``, runs have
        finished), until ``done`` is set (where the database can announce it)."""
        raise NotImplementedError


@dataclass
class GroupWrite:
    written: bool  # False: guarded, and waits on lifecycle events exist; nothing written
    watched: bool  # waits on these lifecycle events may exist: deliver them
    done: set[str]  # runs completed
    fenced: set[str]  # runs going on whose lease held (their steps written)
    cancel: set[str]  # runs asked to cancel (going on, or completed here but not done)


def lease_fields(worker_id: str, token: str, now: datetime) -> dict[str, Any]:
    """What a claim writes into each run it leases."""
    return {
        "status": RunStatus.RUNNING,
        "lease_owner": worker_id,
        "lease_token": token,
        "updated_at": now,
        "started_at": Coalesce("started_at", Value(now)),
    }
