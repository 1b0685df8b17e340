"""The event loop of a worker thread, and the way back from it to the ORM.

Each worker thread that executes async functions gets a ``Bridge``: an event
loop running in a thread of its own, made once and reused. The run's coroutine
executes on the loop; every database call it needs (a step's checkpoint, an
atomic step's transaction and function, the run's outcome) is sent back to the
worker thread with ``await on_worker(fn, ...)`` and executed there, on the
worker thread's connection, while the worker thread serves (``Bridge.serve``).
So Django's rule holds: the ORM is never used from the event loop's thread,
and each worker thread still uses exactly one connection (in a test, the one
holding the test's transaction).
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")

_Call = tuple[Callable[[], Any], "asyncio.Future[Any]"]

_current: contextvars.ContextVar[Bridge] = contextvars.ContextVar("durable_flows_bridge")
_per_thread = threading.local()


class Bridge:
    """An event loop in a thread of its own, serving one worker thread."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        # Calls for the worker thread; None wakes it when a coroutine has finished.
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name=f"{name}-loop", daemon=True
        )
        self._thread.start()

    def start(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        """Schedule ``coro`` on the loop; its ``on_worker`` calls come to this bridge."""

        async def bridged() -> T:
            _current.set(self)
            return await coro

        future = asyncio.run_coroutine_threadsafe(bridged(), self.loop)
        future.add_done_callback(lambda _: self._calls.put(None))
        return future

    def serve(self, timeout: float | None = None) -> bool:
        """On the worker thread: execute the calls the loop sends until one coroutine
        finishes or ``timeout`` passes without a call. Returns whether a call came."""
        try:
            item = self._calls.get(timeout=timeout)
        except queue.Empty:
            return False
        while item is not None:
            self._execute(item)
            try:
                item = self._calls.get_nowait()
            except queue.Empty:
                return True
        return True

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Execute ``coro`` to its end, serving its calls (one coroutine at a time)."""
        future = self.start(coro)
        while not future.done():
            self.serve()
        return future.result()

    def _execute(self, item: _Call) -> None:
        fn, waiter = item
        try:
            result = fn()
        except BaseException as exc:  # delivered to the awaiting coroutine, whatever it is
            self.loop.call_soon_threadsafe(_settle, waiter, None, exc)
        else:
            self.loop.call_soon_threadsafe(_settle, waiter, result, None)

    async def call(self, fn: Callable[[], T]) -> T:
        waiter: asyncio.Future[T] = self.loop.create_future()
        self._calls.put((fn, waiter))
        return await waiter

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        self.loop.close()


def _settle(waiter: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if waiter.done():  # the awaiting coroutine was cancelled meanwhile
        return
    if error is not None:
        waiter.set_exception(error)
    else:
        waiter.set_result(result)


async def on_worker(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``fn(*args, **kwargs)`` on the worker thread that started this coroutine."""
    bridge = _current.get(None)
    if bridge is None:
        raise RuntimeError(
            "an async durable function's steps run only under a durable_flows worker"
        )
    return await bridge.call(lambda: fn(*args, **kwargs))


def of_this_thread() -> Bridge:
    """This thread's bridge, made on first use and then reused."""
    bridge: Bridge | None = getattr(_per_thread, "bridge", None)
    if bridge is None:
        bridge = _per_thread.bridge = Bridge(threading.current_thread().name)
    return bridge


def close_this_thread() -> None:
    """Stop this thread's loop, if it has one (a worker thread that ends)."""
    bridge: Bridge | None = getattr(_per_thread, "bridge", None)
    if bridge is not None:
        _per_thread.bridge = None
        bridge.close()
