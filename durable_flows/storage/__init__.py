"""Storage: every statement the engine sends that the ORM cannot say, and every
difference between the databases the engine runs on.

The engine asks ``of(using)`` for the ``Storage`` of a database alias, chosen
once per alias from its vendor, and never looks at the vendor itself:

- ``base.Storage``: what every database can do through the ORM (SQLite, and any
  other database Django supports, gets this, with SQLite's locking in ``sqlite``);
- ``postgres.PostgresStorage``: the hot statements written out and prepared
  (claim, fence, checkpoint, group write), ``SKIP LOCKED``, advisory locks,
  ``NOTIFY``/``LISTEN``, and the shared commits of ``engine/group_commit.py``;
- ``sqlite.SqliteStorage``: the claim on its partial index, and transactions
  that take SQLite's single write lock first, or as late as possible.
"""

from __future__ import annotations

import functools

from django.db import connections

from .base import Storage
from .sqlite import SqliteStorage


def of(using: str) -> Storage:
    """The storage of the database alias ``using``."""
    return _for(using, connections[using].vendor)


@functools.cache
def _for(using: str, vendor: str) -> Storage:
    if vendor == "postgresql":
        # psycopg is an optional dependency: imported only for PostgreSQL.
        from .postgres import PostgresStorage

        return PostgresStorage(using)
    if vendor == "sqlite":
        return SqliteStorage(using)
    return Storage(using)
