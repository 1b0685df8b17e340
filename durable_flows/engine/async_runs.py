"""Many async runs on one worker thread: their coroutines share the thread's event loop.

A worker thread that claims a run of an ``async def`` function executes it in a
``Pool``: the run's coroutine starts on the thread's loop (``bridge``), and
while the runs wait on I/O the thread claims more async runs (up to
``MAX_RUNS`` at once, for ``CLAIM_SECONDS``) and starts them beside it. The
thread serves the database calls of all of them, one at a time, each run with
its own lease, checkpoints and outcome, as if it executed alone. When the
claim window closes, the pool finishes the runs it holds and the thread goes
back to claiming any run (synchronous functions' too).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

from ..models import Run
from .async_context import checked
from .bridge import Bridge, of_this_thread, on_worker
from .executor import Execution

# Async runs one worker thread executes at once.
MAX_RUNS = 256
# How long a pool takes new runs; then it drains, so that other work gets the thread.
CLAIM_SECONDS = 1.0


async def execute(execution: Execution) -> None:
    """``Execution.execute`` for an async function, as a coroutine on the thread's loop."""
    try:
        await on_worker(execution.enter)
        value = await checked(execution.ctx, execution.function.fn(execution.ctx))
    except BaseException as exc:  # user code's too: SystemExit, KeyboardInterrupt
        await on_worker(execution.conclude, None, exc)
    else:
        await on_worker(execution.conclude, value, None)


Claimed = tuple[Run, str]  # a run and its lease token


class Pool:
    """The async runs one worker thread executes at once."""

    since = None  # not one slow run: the watchdog leaves a pool alone

    def __init__(
        self,
        prepare: Callable[[Run, str], Execution],
        claim: Callable[[int], list[Claimed]],
        ended: Callable[[Run, str, BaseException | None], None],
        poll_interval: float,
        stopping: threading.Event,
    ) -> None:
        self._prepare, self._claim, self._ended = prepare, claim, ended
        self._poll_interval = poll_interval
        self._stopping = stopping
        self._running: dict[Future[None], Claimed] = {}
        self._lock = threading.Lock()

    def held(self) -> list[str]:
        """The runs the pool holds (so that the worker's sweep leaves them alone)."""
        with self._lock:
            return [run.pk for run, _ in self._running.values()]

    def take_rest(self) -> list[Run]:
        return []  # a pool holds no run that waits behind another

    def run(self, first: Claimed) -> None:
        """Execute ``first`` and the async runs claimed meanwhile, until all have ended."""
        bridge = of_this_thread()
        self._start(bridge, [first])
        closes = time.monotonic() + CLAIM_SECONDS
        next_claim = 0.0
        while self._running:
            claiming = not self._stopping.is_set() and time.monotonic() < closes
            # Serve the runs' calls; while the pool takes runs, look for more when
            # they all wait (on I/O), at most every poll interval when there were none.
            bridge.serve(timeout=max(0.0, next_claim - time.monotonic()) if claiming else None)
            self._reap()
            room = MAX_RUNS - len(self._running)
            if claiming and room > 0 and time.monotonic() >= next_claim:
                claimed = self._claim(room)
                next_claim = 0.0 if claimed else time.monotonic() + self._poll_interval
                self._start(bridge, claimed)

    def _start(self, bridge: Bridge, claimed: list[Claimed]) -> None:
        for run, token in claimed:
            try:
                execution = self._prepare(run, token)
            except BaseException as exc:  # the database's: the run goes back
                self._ended(run, token, exc)
                continue
            future = bridge.start(execute(execution))
            with self._lock:
                self._running[future] = (run, token)

    def _reap(self) -> None:
        for future in [f for f in self._running if f.done()]:
            with self._lock:
                run, token = self._running.pop(future)
            self._ended(run, token, future.exception())
