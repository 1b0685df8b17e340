"""Telling workers that new work is runnable: PostgreSQL NOTIFY, and in-process wake-ups."""

from __future__ import annotations

import threading

from django.db import connections, transaction

CHANNEL = "durable_flows"

_local_lock = threading.Lock()
_local_wakeups: set[threading.Event] = set()


def subscribe(wakeup: threading.Event) -> None:
    """Have ``wakeup`` set whenever this process commits new runnable work."""
    with _local_lock:
        _local_wakeups.add(wakeup)


def unsubscribe(wakeup: threading.Event) -> None:
    with _local_lock:
        _local_wakeups.discard(wakeup)


def _wake_local() -> None:
    with _local_lock:
        for wakeup in _local_wakeups:
            wakeup.set()


def work_available(using: str) -> None:
    """Call inside the transaction that made work runnable; the signal goes out at commit."""
    connection = connections[using]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, '')", [CHANNEL])
    if _local_wakeups:
        transaction.on_commit(_wake_local, using=using)
