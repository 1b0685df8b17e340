"""PostgreSQL: the engine's hottest statements written out and prepared, row locks
that skip what others hold, advisory locks, NOTIFY/LISTEN, and shared commits.

The ORM builds every statement anew, and with Django's client-side binding the
server parses and plans it anew too: on the runs table, with its many partial
indexes, planning costs about as much as executing. The statements here run on
the same connection (so in the same transaction as the code around them) through
a psycopg cursor with server-side binding, prepared on first use and reused for
the life of the connection.

``DURABLE_FLOWS["PREPARED_STATEMENTS"] = False`` sends them unprepared, for a
connection pooler that cannot keep prepared statements (PgBouncer before 1.21
in transaction mode).
"""

from __future__ import annotations

import functools
import json
import weakref
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import psycopg
from django.db import IntegrityError, OperationalError, connections
from django.db.models import QuerySet
from psycopg.pq import TransactionStatus
from psycopg.types.json import Jsonb

from ..conf import flow_settings
from ..exceptions import LeaseLost
from ..models import Event, Run, Step, Wait, WaitPath
from .base import GroupWrite, Storage


class PostgresStorage(Storage):
    group_commit = True
    one_statement_checkpoints = True
    listens = True

    @property
    def poll_interval(self) -> float:
        return float(flow_settings.POLL_INTERVAL_SECONDS)

    def claim(
        self,
        worker_id: str,
        token: str,
        now: datetime,
        queues: list[str] | None,
        function_ids: list[str],
        limit: int,
    ) -> list[Run]:
        """Pick (SKIP LOCKED), lease, and read the runs with their events, in one
        prepared statement. The WHERE clause is ``RunQuerySet.claimable()``'s, written
        out; the partial index df_run_claimable serves it."""
        if not function_ids:
            return []
        params: list[Any] = [now, list(function_ids)]
        if queues:
            params.append(list(queues))
        params += [limit, worker_id, token, now, now]
        rows, _ = self.execute(_claim_sql(bool(queues)), params)
        runs = []
        split = 1 + len(Run._meta.concrete_fields)
        for row in rows:
            run = instance(Run, self.using, row[1:split])
            run.fresh = row[0]
            if run.event_id is not None:
                run.event = instance(Event, self.using, row[split:])
            runs.append(run)
        return runs

    def skip_locked(self, rows: QuerySet) -> QuerySet:
        return rows.select_for_update(skip_locked=True)

    def try_lock(self, key: str) -> bool:
        rows, _ = self.execute("SELECT pg_try_advisory_xact_lock(hashtextextended(%s, 0))", [key])
        return bool(rows[0][0])

    def fence(self, run_id: str, token: str) -> bool:
        rows, _ = self.execute(_FENCE_PG, [run_id, token])
        if not rows:
            raise LeaseLost(f"run {run_id} is no longer leased to this worker")
        return bool(rows[0][0])

    def checkpoint(self, step: Step, token: str) -> bool:
        """Returns whether a cancel was requested; the step gets its id."""
        params: list[Any] = [step.run_id, token, step.run_id]
        for field in _STEP_FIELDS:
            value = getattr(step, field.attname)
            is_json = field.get_internal_type() == "JSONField"
            params.append(Jsonb(value) if is_json and value is not None else value)
        try:
            rows, _ = self.execute(_CHECKPOINT_PG, params)
        except IntegrityError:
            raise LeaseLost(f"step {step.name!r} of run {step.run_id} was recorded elsewhere")
        if not rows:
            raise LeaseLost(f"run {step.run_id} is no longer leased to this worker")
        step.pk, cancel = rows[0]
        step._state.adding, step._state.db = False, self.using
        return bool(cancel)

    def write_group(
        self,
        going_on: list[Run],
        completed: list[tuple[Run, Any]],
        steps: list[Step],
        rows: list[Event],
        token: str,
        now: datetime,
        *,
        guarded: bool,
    ) -> GroupWrite:
        """PostgreSQL, one prepared statement: fence the runs that go on, complete the
        completed ones unless a cancel was requested (the caller cancels those), insert
        the steps of the runs whose lease held, and the lifecycle events of the runs
        completed. Each run's writes depend on its own lease only; a step recorded
        already (it cannot be, under a held lease) is left as it is rather than failing
        the statement for every run in it. (A completed run is not locked by a
        sub-select: the UPDATE of the same statement locks it, and a lock would skip a
        row that UPDATE changed.)

        ``guarded`` (the statement is its own transaction): write nothing if a wait on
        these lifecycle events may exist, since resolving it must share the transaction.
        """

        def column(name: str) -> list[Any]:
            return [getattr(step, name) for step in steps]

        names = sorted({row.name for row in rows})
        params: list[Any] = [
            names,
            names,
            guarded,
            [run.pk for run in going_on],
            token,
            [run.pk for run, _ in completed],
            token,
            now,
            now,
            [run.pk for run, _ in completed],
            [json_text(output) for _, output in completed],
            token,
            column("run_id"),
            column("name"),
            column("kind"),
            column("status"),
            column("position"),
            [json_text(step.output) for step in steps],
            [json_text(step.error) for step in steps],
            column("attempts"),
            column("started_at"),
            column("ended_at"),
            now,
            [row.id for row in rows],
            [row.name for row in rows],
            [json_text(row.data) for row in rows],
            [row.ts for row in rows],
            [row.data["run_id"] for row in rows],
        ]
        result, _ = self.execute(_GROUP_PG, params)
        ok, watched, done, fenced, cancel, _ = result[0]
        return GroupWrite(ok, watched, set(done), set(fenced), set(cancel))

    def wait_paths(self, names: set[str]) -> list[tuple[str, str | None]]:
        rows, _ = self.execute(_PATHS_PG, [list(names), list(names)])
        return rows

    def notify_work(self) -> None:
        self.execute("SELECT pg_notify(%s, '')", [CHANNEL], prepare=False)

    def notify_finished(self) -> None:
        self.execute("SELECT pg_notify(%s, '')", [FINISHED_CHANNEL], prepare=False)

    def listen(self, wake: Callable[[], None], done: Any, *, finished: bool = False) -> None:
        """On a connection of its own (autocommit), until ``done`` is set; raises
        ``OperationalError`` when the connection is lost. ``finished``: listen for
        finished runs instead of new work."""
        channel = FINISHED_CHANNEL if finished else CHANNEL
        params = connections[self.using].get_connection_params()
        for key in ("cursor_factory", "context", "prepare_threshold", "server_side_binding"):
            params.pop(key, None)
        try:
            with psycopg.connect(**params, autocommit=True) as conn:
                conn.execute(f"LISTEN {channel}")
                wake()  # anything sent while we were not listening
                while not done.is_set():
                    for _ in conn.notifies(timeout=1.0, stop_after=64):
                        wake()
        except psycopg.Error as exc:
            raise OperationalError(str(exc)) from exc

    # --- shared commits (engine/group_commit.py) ------------------------------------

    def nothing_sent(self) -> bool:
        """Has the transaction not begun on the server yet?"""
        raw = connections[self.using].connection
        return raw is not None and raw.info.transaction_status == TransactionStatus.IDLE

    def savepoint(self) -> None:
        self._raw(f"SAVEPOINT {_SAVEPOINT}")

    def rollback_savepoint(self) -> None:
        self._raw(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
        self._raw(f"RELEASE SAVEPOINT {_SAVEPOINT}")

    def release_savepoint(self) -> None:
        self._raw(f"RELEASE SAVEPOINT {_SAVEPOINT}")

    def _raw(self, sql: str) -> None:
        """A statement on the driver's connection, beside Django's cursors (and their
        wrappers)."""
        connections[self.using].connection.execute(sql)

    def execute(
        self, sql: str, params: Sequence[Any] = (), *, prepare: bool = True
    ) -> tuple[list[tuple[Any, ...]], int]:
        """Run ``sql`` (``%s`` placeholders) and return (rows, rowcount); errors are
        Django's."""
        connection = connections[self.using]
        connection.ensure_connection()
        with connection.wrap_database_errors:
            cursor = self._cursor(connection)
            prepared = prepare and bool(flow_settings.PREPARED_STATEMENTS)
            cursor.execute(sql, params, prepare=prepared)
            rows = cursor.fetchall() if cursor.description else []
            return rows, cursor.rowcount

    def _cursor(self, connection: Any) -> Any:
        """A server-binding cursor on the Django connection's driver connection, one per
        driver connection (a new connection gets a new cursor)."""
        raw = connection.connection
        cursor = _cursors.get(raw)
        if cursor is None or cursor.closed:
            cursor = _cursors[raw] = psycopg.Cursor(raw)
        return cursor


CHANNEL = "durable_flows"  # work is runnable
FINISHED_CHANNEL = "durable_flows_finished"  # runs finished (for RunHandle.result)
_SAVEPOINT = "df_group_step"
_cursors: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def json_text(value: Any) -> str | None:
    """A member of a ``jsonb[]`` array parameter (None stays SQL NULL)."""
    return None if value is None else json.dumps(value, separators=(",", ":"))


def loads(value: Any) -> Any:
    """A jsonb value as read back (Django's connections load jsonb as text)."""
    return json.loads(value) if isinstance(value, str | bytes) else value


@functools.cache
def select_list(model: Any, prefix: str) -> str:
    """``model``'s columns, for a SELECT (``prefix``: a table alias and a dot)."""
    return ", ".join(f'{prefix}"{f.column}"' for f in model._meta.concrete_fields)


@functools.cache
def _layout(model: Any) -> tuple[list[str], tuple[bool, ...]]:
    fields = model._meta.concrete_fields
    return [f.attname for f in fields], tuple(f.get_internal_type() == "JSONField" for f in fields)


def instance(model: Any, using: str, values: Sequence[Any]) -> Any:
    """A model instance from a row selected with ``select_list()`` (JSON fields decoded)."""
    names, is_json = _layout(model)
    decoded = [loads(v) if j else v for v, j in zip(values, is_json, strict=True)]
    return model.from_db(using, names, decoded)


@functools.cache
def _claim_sql(with_queues: bool) -> str:
    table, event_table = Run._meta.db_table, Event._meta.db_table
    queue_clause = "AND queue = ANY(%s)" if with_queues else ""
    return f"""
        WITH picked AS (
            SELECT id, started_at IS NULL AS fresh FROM "{table}"
            WHERE status IN ('queued', 'waiting') AND available_at <= %s
              AND function_id = ANY(%s) {queue_clause}
            ORDER BY priority DESC, available_at, id
            LIMIT %s
            FOR UPDATE SKIP LOCKED
        ), leased AS (
            UPDATE "{table}" AS run
            SET status = 'running', lease_owner = %s, lease_token = %s, updated_at = %s,
                started_at = COALESCE(run.started_at, %s)
            FROM picked WHERE run.id = picked.id
            RETURNING run.*, picked.fresh
        )
        SELECT leased.fresh, {select_list(Run, "leased.")}, {select_list(Event, "e.")}
        FROM leased LEFT JOIN "{event_table}" AS e ON e.id = leased.event_id
        ORDER BY leased.priority DESC, leased.available_at, leased.id
    """  # noqa: S608 - only table and column names are interpolated


# A row lock, not an update: no new row version, so no index entries to write.
_FENCE_PG = f"""
    SELECT cancel_requested FROM "{Run._meta.db_table}"
    WHERE id = %s AND lease_token = %s AND status = 'running'
    FOR NO KEY UPDATE
"""  # noqa: S608 - only the table name is interpolated


_STEP_FIELDS = [f for f in Step._meta.concrete_fields if f.attname not in ("id", "run_id")]
_CHECKPOINT_PG = f"""
    WITH fence AS ({_FENCE_PG})
    INSERT INTO "{Step._meta.db_table}" (run_id, {", ".join(f.column for f in _STEP_FIELDS)})
    SELECT %s, {", ".join("%s" for _ in _STEP_FIELDS)} FROM fence
    RETURNING id, (SELECT cancel_requested FROM fence)
"""  # noqa: S608 - only table and column names are interpolated


_GROUP_PG = f"""
    WITH watched AS (
        SELECT EXISTS (
            SELECT 1 FROM "{WaitPath._meta.db_table}" WHERE event_name = ANY(%s::varchar[])
        ) OR EXISTS (
            SELECT 1 FROM "{Wait._meta.db_table}"
            WHERE status = 'pending' AND event_name = ANY(%s::varchar[]) AND match_key = ''
        ) AS yes
    ), go AS (
        SELECT NOT (%s AND yes) AS ok FROM watched
    ), fenced AS (
        SELECT id, cancel_requested FROM "{Run._meta.db_table}"
        WHERE id = ANY(%s::varchar[]) AND lease_token = %s AND status = 'running'
          AND (SELECT ok FROM go)
        FOR NO KEY UPDATE
    ), held AS (
        SELECT id FROM "{Run._meta.db_table}"
        WHERE id = ANY(%s::varchar[]) AND lease_token = %s AND status = 'running'
          AND (SELECT ok FROM go)
    ), done AS (
        UPDATE "{Run._meta.db_table}" AS run
        SET status = 'completed', output = v.output, ended_at = %s, updated_at = %s,
            lease_owner = NULL, lease_token = NULL, available_at = NULL
        FROM unnest(%s::varchar[], %s::jsonb[]) AS v(id, output)
        WHERE run.id = v.id AND run.lease_token = %s AND run.status = 'running'
          AND NOT run.cancel_requested AND (SELECT ok FROM go)
        RETURNING run.id
    ), checkpoints AS (
        INSERT INTO "{Step._meta.db_table}"
            (run_id, name, kind, status, position, output, error, attempts, started_at, ended_at)
        SELECT * FROM unnest(
            %s::varchar[], %s::varchar[], %s::varchar[], %s::varchar[], %s::int[],
            %s::jsonb[], %s::jsonb[], %s::int[], %s::timestamptz[], %s::timestamptz[]
        ) AS s(run_id)
        WHERE s.run_id IN (SELECT id FROM fenced UNION ALL SELECT id FROM held)
        ON CONFLICT (run_id, name) DO NOTHING
    ), lifecycle AS (
        INSERT INTO "{Event._meta.db_table}" (received_at, id, name, data, ts)
        SELECT %s, e.id, e.name, e.data, e.ts FROM unnest(
            %s::varchar[], %s::varchar[], %s::jsonb[], %s::bigint[], %s::varchar[]
        ) AS e(id, name, data, ts, run_id)
        WHERE e.run_id IN (SELECT id FROM done)
    )
    SELECT (SELECT ok FROM go), (SELECT yes FROM watched),
        ARRAY(SELECT id FROM done), ARRAY(SELECT id FROM fenced),
        ARRAY(
            SELECT id FROM fenced WHERE cancel_requested
            UNION ALL (SELECT id FROM held EXCEPT SELECT id FROM done)
        ),
        (SELECT pg_notify('{FINISHED_CHANNEL}', '') FROM (SELECT 1 FROM done LIMIT 1) AS d)
"""  # noqa: S608 - only table names are interpolated


_PATHS_PG = f"""
    SELECT event_name, path FROM "{WaitPath._meta.db_table}" WHERE event_name = ANY(%s)
    UNION ALL (
        SELECT event_name, NULL FROM "{Wait._meta.db_table}"
        WHERE status = 'pending' AND event_name = ANY(%s) AND match_key = ''
        LIMIT 1
    )
"""  # noqa: S608 - only table names are interpolated
