"""A worker's liveness: its heartbeat (and the rescue of dead workers' runs), the
sweep of runs held by none of its threads, the watchdog of slow runs, the cron and
timeout maintenance, and the LISTEN connection. Threads of ``worker.Worker``."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from typing import Any

from django.db import DatabaseError, InterfaceError, OperationalError, connections

from . import clock, maintenance
from .conf import flow_settings
from .engine import admission, leases, outcomes, workers
from .engine.group_commit import CommitGroup
from .exceptions import LeaseLost
from .models import Run, RunStatus

log = logging.getLogger("durable_flows.worker")

# How often a worker deletes flow-control state that has expired.
PRUNE_INTERVAL = 300.0
# How often a worker looks for queued runs of functions no live worker executes, and
# logs them (the first look is at its first heartbeat).
UNSERVED_LOG_INTERVAL = 60.0
# Cron ticks are started, and timeouts enforced, this often (seconds).
MAINTENANCE_INTERVAL = 0.5
# A run executing this long is slow: the runs claimed with it and not started go
# back to the queue (for any free worker), and what is waiting to be committed
# behind it is committed. The watchdog looks this often (seconds).
SLOW_RUN_SECONDS = 0.2
WATCHDOG_INTERVAL = 0.05
# The engine failing to record a run (a database error, not the run's own code)
# backs off exponentially, up to ENGINE_BACKOFF_MAX seconds; after
# MAX_ENGINE_FAILURES in a row the run fails with an engine error.
ENGINE_BACKOFF_MAX = 30.0
MAX_ENGINE_FAILURES = 8


def log_db_error(message: str, exc: BaseException, *args: Any) -> None:
    """A lost or refused connection is expected (a restart, a failover): one line, no
    traceback. Anything else is a bug worth its traceback."""
    if isinstance(exc, OperationalError | InterfaceError):
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        log.warning(message + ": %s (retrying)", *args, first)
    else:
        log.error(message, *args, exc_info=exc)


class Batch:
    """The runs one executor thread claimed together: the one executing, and the ones
    not started, which the watchdog may hand back."""

    def __init__(self, runs: list[Run], token: str, group: CommitGroup) -> None:
        self.token = token
        self.group = group
        self._waiting = list(runs)
        self._lock = threading.Lock()
        self.current: Run | None = None
        self.since: float | None = None  # when the current run began executing

    def next(self) -> Run | None:
        with self._lock:
            self.current = self._waiting.pop(0) if self._waiting else None
            self.since = time.monotonic() if self.current else None
            return self.current

    def take_rest(self) -> list[Run]:
        with self._lock:
            rest, self._waiting = self._waiting, []
            return rest

    def held(self) -> list[str]:
        with self._lock:
            return [run.pk for run in ([self.current] if self.current else []) + self._waiting]


class Liveness:
    """The liveness threads of a worker (mixed into ``worker.Worker``)."""

    using: str
    burst: bool
    row: Any
    storage: Any
    _done: threading.Event
    _lock: threading.Lock
    _batches: dict[int, Any]
    _next_prune: float
    _next_unserved: float = 0.0
    _stranded: list[tuple[Any, str, int]]
    _engine_failures: dict[str, int]

    def _wake_all(self) -> None:
        raise NotImplementedError

    def _reset_connection(self) -> None:
        try:
            connections[self.using].close()
        except DatabaseError:
            pass

    def _heartbeat(self) -> None:
        """Keep this worker's lease alive, and hand dead workers' runs to the living."""
        lease = float(flow_settings.LEASE_SECONDS)
        interval = max(0.05, min(lease / 3, 5.0))
        try:
            while not self._done.wait(interval):
                try:
                    self._beat(lease)
                except DatabaseError as exc:
                    log_db_error("heartbeat failed", exc)
                    self._reset_connection()
        finally:
            connections.close_all()

    def _beat(self, lease: float) -> None:
        assert self.row is not None
        now = clock.now()
        # A burst worker does not rejoin: its row may sit in the caller's uncommitted
        # transaction, in a test.
        workers.beat(self.using, self.row, now, rejoin=not self.burst)
        if time.monotonic() >= self._next_prune:
            self._next_prune = time.monotonic() + PRUNE_INTERVAL
            admission.prune(self.using)
        self._sweep(lease)
        if time.monotonic() >= self._next_unserved:
            self._next_unserved = time.monotonic() + UNSERVED_LOG_INTERVAL
            for function_id, count in sorted(workers.unserved_queued(self.using, now).items()):
                log.warning(
                    "%d run(s) of %s are queued; no worker serves %s (no live worker's "
                    "flows.py defines it: deploy it, or cancel the runs)",
                    count,
                    function_id,
                    function_id,
                )
        rescued = workers.rescue_dead(self.using, now, lease)
        if rescued:
            log.warning("took back %d run(s) from workers that stopped heartbeating", rescued)
            self._wake_all()

    def _sweep(self, lease: float) -> None:
        """Runs leased to this worker that none of its threads holds (a thread that died,
        a lease left behind by a bug) go back to the queue, not stay running forever."""
        assert self.row is not None
        with self._lock:
            held = [pk for batch in self._batches.values() for pk in batch.held()]
        stale = clock.now() - timedelta(seconds=lease)
        swept = leases.sweep(self.using, self.row.pk, held, stale)
        if swept:
            log.warning("handed back %d run(s) leased to this worker but held by none", swept)
            self._wake_all()

    def _watch(self) -> None:
        """The watchdog: when a thread's run is slow, hand back the runs claimed with it,
        and commit what waits behind it (see ``CommitGroup.flush_stalled``)."""
        try:
            while not self._done.wait(WATCHDOG_INTERVAL):
                with self._lock:
                    batches = list(self._batches.values())
                for batch in batches:
                    since = batch.since
                    if since is None or time.monotonic() - since < SLOW_RUN_SECONDS:
                        continue
                    try:
                        rest = batch.take_rest()
                        if rest:
                            leases.hand_back(rest, batch.token, self.using)
                        batch.group.flush_stalled()
                    except DatabaseError as exc:
                        log_db_error("the watchdog could not hand back or commit", exc)
                        self._reset_connection()
        finally:
            connections.close_all()

    def _maintain(self) -> None:
        """Cron ticks and timeouts, about once a second (see ``maintenance``)."""
        try:
            while not self._done.wait(MAINTENANCE_INTERVAL):
                try:
                    if maintenance.run(self.using):
                        self._wake_all()
                except DatabaseError as exc:
                    log_db_error("maintenance failed", exc)
                    self._reset_connection()
        finally:
            connections.close_all()

    def _listen(self) -> None:
        """LISTEN on a connection of its own, where the database can; polling covers any
        gap."""
        while not self._done.is_set():
            try:
                self.storage.listen(self._wake_all, self._done)
            except DatabaseError as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                log.warning("LISTEN connection lost (%s); polling until it is back", first)
                self._done.wait(1.0)

    def _release_after_error(self, run: Run, token: str) -> None:
        """The engine could not record the run: hand it back after a back-off that doubles
        with each failure in a row, and fail it after MAX_ENGINE_FAILURES. While the
        database is unreachable, keep trying from the loop."""
        with self._lock:
            if len(self._engine_failures) > 10_000:
                self._engine_failures.clear()
            failures = self._engine_failures.get(run.pk, 0) + 1
            self._engine_failures[run.pk] = failures
            self._stranded.append((run, token, failures))
        self._release_stranded()

    def _release_stranded(self) -> None:
        with self._lock:
            stranded, self._stranded = self._stranded, []
        for index, (run, token, failures) in enumerate(stranded):
            try:
                if failures >= MAX_ENGINE_FAILURES:
                    log.error("run %s: not recorded %d times; failing it", run.pk, failures)
                    error = _engine_error(failures)
                    outcomes.finish(run, token, self.using, RunStatus.FAILED, error=error)
                    continue
                delay = min(0.1 * 2 ** (failures - 1), ENGINE_BACKOFF_MAX)
                log.warning("run %s: handed back, to execute again in %.1fs", run.pk, delay)
                leases.release(run, token, self.using, clock.now() + timedelta(seconds=delay))
            except LeaseLost:
                continue
            except DatabaseError:
                self._reset_connection()
                with self._lock:
                    self._stranded.extend(stranded[index:])
                return


def _engine_error(failures: int) -> dict[str, Any]:
    return {
        "type": "EngineError",
        "message": f"the worker could not record the run's progress {failures} times in a "
        "row (see the worker's log); it was failed rather than retried forever",
    }
