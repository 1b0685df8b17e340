"""SQLite: one writer at a time. Transactions that will write take the write lock
first (a read lock cannot always be upgraded), and an atomic step takes it as late as
possible, so that a step that computes or calls out blocks no other writer."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from django.db import connections, transaction
from django.db.models import F
from django.db.models.expressions import RawSQL

from .. import clock
from ..exceptions import LeaseLost
from ..models import Run, RunStatus
from .base import Storage


class SqliteStorage(Storage):
    def _pick(
        self, now: datetime, queues: list[str] | None, function_ids: list[str], limit: int
    ) -> Any:
        """``RunQuerySet.claimable()`` in claim order, on the partial index
        df_run_claimable (the planner would rather read every run of the function and
        sort them). A subquery of the claim's UPDATE: the claim writes first."""
        connection = connections[self.using]
        functions = ", ".join("%s" for _ in function_ids)
        queue_clause = f"AND queue IN ({', '.join('%s' for _ in queues)})" if queues else ""
        sql = f"""
            SELECT id FROM "{Run._meta.db_table}" INDEXED BY df_run_claimable
            WHERE status IN ('queued', 'waiting') AND available_at <= %s
              AND function_id IN ({functions}) {queue_clause}
            ORDER BY priority DESC, available_at, id LIMIT %s
        """  # noqa: S608 - only the table name and placeholders are interpolated
        params = [connection.ops.adapt_datetimefield_value(now), *function_ids, *(queues or [])]
        return RawSQL(sql, [*params, limit])  # noqa: S611 - parameters are bound

    def lock_for_write(self) -> None:
        Run.objects.using(self.using).filter(pk="").update(updated_at=F("updated_at"))

    def fence(self, run_id: str, token: str) -> bool:
        """A write, so that the transaction holds the write lock from here on."""
        connection = connections[self.using]
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {connection.ops.quote_name(Run._meta.db_table)} "  # noqa: S608
                "SET updated_at = %s WHERE id = %s AND lease_token = %s AND status = %s "
                "RETURNING cancel_requested",
                [
                    connection.ops.adapt_datetimefield_value(clock.now()),
                    run_id,
                    token,
                    RunStatus.RUNNING.value,
                ],
            )
            row = cursor.fetchone()
        if row is None:
            raise LeaseLost(f"run {run_id} is no longer leased to this worker")
        return bool(row[0])

    @contextmanager
    def _step_atomic(self, fenced: Callable[[], bool]) -> Iterator[None]:
        """The transaction begins deferred and takes the write lock at the step's first
        statement (fencing then) or at its checkpoint."""

        def fence_first(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
            fenced()
            return execute(sql, params, many, context)

        connection: Any = connections[self.using]
        connection.ensure_connection()  # connecting would set the mode again
        mode = connection.transaction_mode
        connection.transaction_mode = None  # BEGIN DEFERRED: no lock until a write
        try:
            with transaction.atomic(using=self.using), connection.execute_wrapper(fence_first):
                yield
        finally:
            connection.transaction_mode = mode
