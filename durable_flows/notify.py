"""Telling workers that new work is runnable, and result waiters that runs finished:
PostgreSQL NOTIFY/LISTEN, and in-process wake-ups."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from django.db import DatabaseError, transaction

from . import storage

log = logging.getLogger("durable_flows")

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


# --- finished runs: waking ``RunHandle.result()`` ----------------------------------------
#
# A process-wide generation counter, bumped whenever runs may have finished: by the one
# LISTEN connection the process opens (on the first wait, where the database can
# announce), or at the commit of a run finished in this process. A waiter reads the
# generation, then the run, and waits for the generation to move on.

_finished = threading.Condition()
_generation = 0
_async_waiters: set[tuple[Any, Any]] = set()  # (event loop, future)
_listeners: dict[str, tuple[threading.Event, threading.Thread]] = {}  # alias -> (close, thread)


def run_finished(using: str) -> None:
    """Call inside the transaction that finished runs; waiters hear it at commit."""
    storage.of(using).notify_finished()
    transaction.on_commit(_bump, using=using)


def _bump() -> None:
    global _generation
    with _finished:
        _generation += 1
        _finished.notify_all()
        waiters = list(_async_waiters)
    for loop, future in waiters:
        loop.call_soon_threadsafe(_settle, future)


def _settle(future: Any) -> None:
    if not future.done():
        future.set_result(None)


def generation(using: str) -> int:
    """The current generation; starts this process's listener on first use."""
    _ensure_listener(using)
    return _generation


def wait_finished(using: str, seen: int, timeout: float) -> None:
    """Block until runs may have finished since ``seen`` or ``timeout`` seconds pass
    (at most one poll interval where the database cannot announce)."""
    if not storage.of(using).listens:
        timeout = min(timeout, POLL_SECONDS)
    with _finished:
        _finished.wait_for(lambda: _generation != seen, timeout)


async def await_finished(using: str, seen: int, timeout: float) -> None:
    """``wait_finished`` for a coroutine: the event loop is not blocked."""
    if not storage.of(using).listens:
        timeout = min(timeout, POLL_SECONDS)
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    waiter = (loop, future)
    with _finished:
        if _generation != seen:
            return
        _async_waiters.add(waiter)
    try:
        await asyncio.wait_for(future, timeout)
    except TimeoutError:
        pass
    finally:
        with _finished:
            _async_waiters.discard(waiter)


POLL_SECONDS = 0.02  # SQLite: how often a waiting handle reads its run


def close_listeners() -> None:
    """Close the result listeners' connections (within a second); a later wait opens
    them again. For the end of a test session, before its databases are dropped."""
    with _local_lock:
        closing = list(_listeners.values())
        _listeners.clear()
    for done, thread in closing:
        done.set()
        thread.join(timeout=5)


def _ensure_listener(using: str) -> None:
    if using in _listeners or not storage.of(using).listens:
        return
    with _local_lock:
        if using in _listeners:
            return
        done = threading.Event()
        thread = threading.Thread(
            target=_listen_finished, args=(using, done), name="df-results", daemon=True
        )
        _listeners[using] = (done, thread)
        thread.start()


def _listen_finished(using: str, done: threading.Event) -> None:
    """One connection listening for finished runs, opened on the first wait and kept
    (re-opened when lost); each (re)connection wakes the waiters, who read their runs
    again, so nothing sent meanwhile is missed."""
    while not done.is_set():
        try:
            storage.of(using).listen(_bump, done, finished=True)
        except DatabaseError as exc:
            log.warning("result listener lost its connection (%s); reconnecting", exc)
            _bump()
            done.wait(1.0)
