"""Telling workers that new work is runnable: PostgreSQL NOTIFY, and in-process wake-ups."""

from __future__ import annotations

import threading

from django.db import transaction

from . import storage

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
    storage.of(using).notify_work()
    if _local_wakeups:
        transaction.on_commit(_wake_local, using=using)
