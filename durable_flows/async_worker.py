"""A worker thread's async runs: the glue between ``runflows`` and ``engine.async_runs``
(mixed into ``worker.Worker``)."""

from __future__ import annotations

import logging
import threading
from typing import Any

from django.db import DatabaseError

from .definitions.functions import registry
from .engine import async_runs, leases
from .engine.async_runs import Claimed
from .engine.executor import Execution
from .exceptions import LeaseLost
from .liveness import log_db_error
from .models import Run

log = logging.getLogger("durable_flows.worker")


class AsyncRuns:
    """Executing the runs of ``async def`` functions, many at once per thread."""

    using: str
    row: Any
    queues: list[str]
    stopping: threading.Event
    poll_interval: float
    executed: int
    _lock: threading.Lock
    _batches: dict[int, Any]
    _engine_failures: dict[str, int]

    def _reset_connection(self) -> None:
        raise NotImplementedError

    def _release_after_error(self, run: Run, token: str) -> None:
        raise NotImplementedError

    def _execution_failed(self, run: Run, token: str, exc: BaseException) -> None:
        """The engine could not execute a run: another worker has it, or it goes back."""
        if isinstance(exc, LeaseLost):
            log.warning("run %s: lease lost (%s)", run.pk, exc)
            return
        log_db_error("run %s: could not execute; releasing it", exc, run.pk)
        self._reset_connection()
        self._release_after_error(run, token)

    @staticmethod
    def _is_async(run: Run) -> bool:
        function = registry.get(run.function_id)
        return function is not None and function.is_async

    def _run_async(self, run: Run, token: str) -> None:
        """Execute an async run, with the async runs this thread claims meanwhile."""
        pool = async_runs.Pool(
            self._prepare, self._claim_async, self._async_ended, self.poll_interval, self.stopping
        )
        with self._lock:
            self._batches[threading.get_ident()] = pool  # the runs it holds, for the sweep
        pool.run((run, token))

    def _prepare(self, run: Run, token: str) -> Execution:
        function = registry.get(run.function_id)
        assert function is not None  # claim only selects registered functions
        return Execution(run, token, function, self.using, self.stopping)

    def _claim_async(self, limit: int) -> list[Claimed]:
        assert self.row is not None
        ids = [function.id for function in registry.all() if function.is_async]
        try:
            token, runs = leases.claim(self.using, self.row.pk, self.queues or None, ids, limit)
        except DatabaseError as exc:
            log_db_error("claiming failed", exc)
            self._reset_connection()
            return []
        return [(run, token) for run in runs]

    def _async_ended(self, run: Run, token: str, exc: BaseException | None) -> None:
        with self._lock:
            self.executed += 1
            if exc is None:
                self._engine_failures.pop(run.pk, None)
        if exc is not None:
            self._execution_failed(run, token, exc)
