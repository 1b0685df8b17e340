"""The engine's hottest statements on PostgreSQL, written out and prepared.

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
from collections.abc import Sequence
from typing import Any

from django.db import connections

from ..conf import flow_settings


def is_postgres(using: str) -> bool:
    return connections[using].vendor == "postgresql"


def execute(using: str, sql: str, params: Sequence[Any] = ()) -> tuple[list[tuple[Any, ...]], int]:
    """Run ``sql`` (``%s`` placeholders) and return (rows, rowcount); errors are Django's."""
    connection = connections[using]
    connection.ensure_connection()
    with connection.wrap_database_errors:
        cursor = _cursor(connection)
        cursor.execute(sql, params, prepare=bool(flow_settings.PREPARED_STATEMENTS))
        rows = cursor.fetchall() if cursor.description else []
        return rows, cursor.rowcount


def _cursor(connection: Any) -> Any:
    """A server-binding cursor on the Django connection's driver connection, kept with it."""
    import psycopg

    raw = connection.connection
    cursor = getattr(connection, "_durable_flows_cursor", None)
    if cursor is None or cursor.connection is not raw or cursor.closed:
        cursor = psycopg.Cursor(raw)
        connection._durable_flows_cursor = cursor
    return cursor


def jsonb(value: Any) -> Any:
    """A parameter for a jsonb column (None stays SQL NULL, as the ORM stores it)."""
    from psycopg.types.json import Jsonb

    return None if value is None else Jsonb(value)


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
