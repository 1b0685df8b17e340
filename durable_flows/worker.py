"""The ``runflows`` loop: claim, execute, heartbeat, wake-ups, graceful stop."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.db import DatabaseError, InterfaceError, OperationalError, connections

from . import clock, maintenance, notify, storage
from .async_worker import AsyncRuns
from .conf import db_alias
from .definitions.functions import registry
from .engine import bridge, group_commit, leases, step_tasks, workers
from .engine.executor import Execution
from .engine.group_commit import CommitGroup
from .exceptions import LeaseLost
from .faults import fault_point
from .liveness import PRUNE_INTERVAL, Batch, Liveness, log_db_error
from .models import Run
from .models import Worker as WorkerRow

log = logging.getLogger("durable_flows.worker")

# In --burst mode, queued runs due this soon (a retry's short backoff) keep the
# worker alive; sleeping and waiting runs never do.
BURST_LOOKAHEAD = timedelta(seconds=2)
# Group commit (engine/group_commit.py): a thread claims up to MAX_BATCH runs at
# once while the runs it claims complete in one commit within BATCH_SECONDS.
MAX_BATCH = 32
BATCH_SECONDS = 0.1


class Worker(Liveness, AsyncRuns):
    """Executes runs with ``concurrency`` threads until stopped (or, in burst mode, idle)."""

    def __init__(
        self,
        *,
        concurrency: int = 1,
        queues: list[str] | None = None,
        burst: bool = False,
        name: str | None = None,
        using: str | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.concurrency = concurrency
        self.queues = list(queues or [])
        self.burst = burst
        self.using = using or db_alias()
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.row: WorkerRow | None = None
        self.stopping = threading.Event()  # graceful stop requested
        self._done = threading.Event()  # executor threads have finished
        self._wakeups = [threading.Event() for _ in range(concurrency)]
        self._idle = [False] * concurrency
        self._signals = 0
        self.executed = 0
        # Runs to hand back once the database answers, with their engine failures so far.
        self._stranded: list[tuple[Run, str, int]] = []
        self._engine_failures: dict[str, int] = {}
        self._batches: dict[int, Batch] = {}  # per executor thread: what it holds
        self._lock = threading.Lock()
        self._local = threading.local()
        self._next_prune = time.monotonic() + PRUNE_INTERVAL
        self.storage = storage.of(self.using)
        self.poll_interval = self.storage.poll_interval

    # --- lifecycle --------------------------------------------------------------

    def run(self) -> None:
        """Block until stopped; returns normally after a graceful stop or an idle burst.

        The calling thread is executor 0 (so ``call_command("runflows", "--burst")``
        in a test sees the test's transaction); ``concurrency - 1`` threads join it.
        """
        self._register()
        for wakeup in self._wakeups:
            notify.subscribe(wakeup)
        others = [
            threading.Thread(target=self._executor, args=(i,), name=f"df-exec-{i}", daemon=True)
            for i in range(1, self.concurrency)
        ]
        helpers = [
            threading.Thread(target=self._heartbeat, name="df-heartbeat", daemon=True),
            threading.Thread(target=self._maintain, name="df-maintenance", daemon=True),
            threading.Thread(target=self._watch, name="df-watchdog", daemon=True),
        ]
        if self.storage.listens:
            helpers.append(threading.Thread(target=self._listen, name="df-listen", daemon=True))
        for thread in helpers + others:
            thread.start()
        try:
            self._executor(0)
            for thread in others:
                thread.join()
        finally:
            self._release_stranded()
            self._done.set()
            for wakeup in self._wakeups:
                notify.unsubscribe(wakeup)
            for thread in helpers:
                thread.join(timeout=5)
            self._unregister()

    def drain(self) -> int:
        """Burst mode in the calling thread (no threads, no signals): returns runs executed.

        Used by ``durable_flows.testing``; it sees the caller's uncommitted data.
        """
        self._register()
        try:
            while not self.stopping.is_set():
                if self._step_once():
                    self._local.was_idle = False
                    continue
                self._local.was_idle = True
                if maintenance.run(self.using):
                    continue  # it started (cron) or ended (timeouts) runs
                if not self._work_soon():
                    break
                time.sleep(0.01)
            return self.executed
        finally:
            self._unregister()

    def stop(self) -> None:
        self.stopping.set()
        self._wake_all()

    def install_signal_handlers(self) -> Callable[[], None]:
        """SIGTERM/SIGINT stop gracefully, a second one at once. Returns a function that
        puts the previous handlers back."""

        def handle(signum: int, frame: Any) -> None:
            self._signals += 1
            if self._signals > 1:
                log.warning("second signal: exiting at once")
                os._exit(1)
            log.info("signal %s: finishing the steps in hand, then exiting", signum)
            self.stop()

        previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}

        def restore() -> None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        return restore

    def _register(self, patience: float = 30.0) -> None:
        """Create this worker's row; a database that is restarting gets ``patience`` seconds."""
        deadline = time.monotonic() + patience
        while True:
            try:
                row = workers.register(
                    self.using, self.name, self.queues, self.concurrency, registry.ids()
                )
                break
            except (OperationalError, InterfaceError) as exc:
                if time.monotonic() > deadline:
                    raise
                log_db_error("cannot reach the database to start", exc)
                self._reset_connection()
                time.sleep(1.0)
        self.row = row
        if not registry.ids():
            log.warning("no durable functions are registered: this worker has nothing to run")
        settings = connections[self.using].settings_dict
        log.info(
            "worker %s (%s) started: %d thread(s), queues %s, database %r (%s %s), functions: %s",
            self.name,
            self.row.pk,
            self.concurrency,
            ", ".join(self.queues) or "all",
            self.using,
            connections[self.using].display_name,
            settings.get("NAME"),
            ", ".join(sorted(registry.ids())) or "none",
        )

    def _unregister(self) -> None:
        if self.row is not None:
            try:
                workers.unregister(self.using, self.row)
            except DatabaseError as exc:
                log_db_error("could not remove the worker row; it will expire", exc)

    def _wake_all(self) -> None:
        for wakeup in self._wakeups:
            wakeup.set()

    # --- executing ----------------------------------------------------------------

    def _executor(self, index: int) -> None:
        wakeup = self._wakeups[index]
        # In burst mode an idle thread looks again soon: a retry may be due any moment.
        idle_wait = min(self.poll_interval, 0.05) if self.burst else self.poll_interval
        try:
            while not self.stopping.is_set():
                # Not idle from before the claim: a burst worker that saw every
                # thread idle and nothing queued must not stop while a run just
                # claimed (no longer queued) is still executing.
                self._idle[index] = False
                if self._step_once():
                    self._local.was_idle = False
                    continue
                self._idle[index] = True
                self._local.was_idle = True
                if self.burst and self._burst_finished():
                    log.info("burst: nothing left to run")
                    self.stop()
                    break
                wakeup.wait(idle_wait)
                wakeup.clear()
        finally:
            if index:  # a thread of ours; the calling thread's connections are the caller's
                connections.close_all()
                bridge.close_this_thread()

    def _step_once(self) -> bool:
        """Claim and execute one parallel step task or run; False when nothing was runnable."""
        assert self.row is not None
        if self._stranded:
            self._release_stranded()
        idle = getattr(self._local, "was_idle", True)
        if not idle and self._tasks_due() and self._step_task_once():
            return True
        # Woken from idle, new runs first (their latency is what a sender sees), then
        # parallel step tasks if there was no run.
        return self._claim_runs() or (idle and self._step_task_once())

    def _claim_runs(self) -> bool:
        """Claim a batch of runs and execute them; False when none was runnable."""
        assert self.row is not None
        limit = getattr(self._local, "batch", 1)
        began = time.monotonic()
        # The claim commits at once (its own statement): a run that kills its worker
        # then reads "running", is taken back after the lease, and the crash counts.
        group = CommitGroup(self.using, self._release_after_error)
        try:
            token, runs = leases.claim(
                self.using, self.row.pk, self.queues or None, registry.ids(), limit=limit
            )
        except DatabaseError as exc:
            log_db_error("claiming failed", exc)
            self._reset_connection()
            failures = getattr(self._local, "claim_failures", 0) + 1
            self._local.claim_failures = failures
            time.sleep(min(self.poll_interval * 2 ** (failures - 1), 5.0))
            return False
        self._local.claim_failures = 0
        group.token = token
        batch = Batch(runs, token, group)
        with self._lock:
            self._batches[threading.get_ident()] = batch
        try:
            while (run := batch.next()) is not None:
                fault_point("after_claim")
                if self._is_async(run):
                    # Its pool takes the thread (engine/async_runs.py): the rest goes back.
                    self._hand_back(batch.take_rest(), token, group)
                    group.commit()
                    self._run_async(run, token)
                elif not self._execute(run, token, group):
                    # Not a quick run: the rest of the batch goes back to the queue, for
                    # any free worker, rather than wait behind it.
                    self._hand_back(batch.take_rest(), token, group)
            group.commit()
        finally:
            with self._lock:
                self._batches.pop(threading.get_ident(), None)
        self._adapt_batch(len(runs), group.completed, time.monotonic() - began)
        return bool(runs)

    def _adapt_batch(self, claimed: int, grouped: int, seconds: float) -> None:
        """Claim more runs at once while they all complete in group commits within
        BATCH_SECONDS, fewer when they take longer, and one as soon as a run needs more
        (so that claimed runs do not wait long behind the others)."""
        if claimed and grouped == claimed:
            fast = seconds < BATCH_SECONDS
            self._local.batch = min(MAX_BATCH, claimed * 2) if fast else max(1, claimed // 2)
        elif claimed:
            self._local.batch = 1

    def _execute(self, run: Run, token: str, group: CommitGroup) -> bool:
        """Execute one claimed run; returns whether it stayed in the group commit."""
        function = registry.get(run.function_id)
        assert function is not None  # claim only selects registered functions
        # PostgreSQL only: SQLite has one writer, and a worker that holds the write lock
        # for whole groups would starve the others (its commits are cheap in WAL mode).
        shared = self.storage.group_commit and group_commit.eligible(function)
        grouped = group if shared else None
        try:
            if grouped is None:
                group.commit()  # what is pending is not kept waiting behind this run
            execution = Execution(run, token, function, self.using, self.stopping, grouped)
            execution.execute()
            if self._engine_failures:
                with self._lock:
                    self._engine_failures.pop(run.pk, None)
            return execution.group is not None
        except LeaseLost as exc:
            self._execution_failed(run, token, exc)
        except BaseException as exc:  # the engine's, or the database's: never the thread's end
            group.abort(exc)
            self._execution_failed(run, token, exc)
        finally:
            with self._lock:
                self.executed += 1
        return False

    def _hand_back(self, runs: list[Run], token: str, group: CommitGroup) -> None:
        if not runs:
            return
        try:
            group.commit()
            leases.hand_back(runs, token, self.using)
        except DatabaseError as exc:
            log_db_error("could not hand back %d claimed run(s)", exc, len(runs))
            self._reset_connection()
            for run in runs:
                self._release_after_error(run, token)

    def _tasks_due(self) -> bool:
        """A busy thread looks for parallel step tasks before every 8th claim (and an
        idle one whenever it finds no run): it does not pay a query per run for a
        feature most runs do not use, and tasks still wait at most a few runs."""
        count = getattr(self._local, "claims", 0)
        self._local.claims = count + 1
        return count % 8 == 0

    def _step_task_once(self) -> bool:
        """Parallel steps first: they belong to runs that have already started."""
        assert self.row is not None
        try:
            claimed = step_tasks.claim_task(
                self.using, self.row.pk, self.queues or None, registry.ids()
            )
        except DatabaseError as exc:
            log_db_error("claiming a step task failed", exc)
            self._reset_connection()
            return False
        if claimed is None:
            return False
        task, token = claimed
        function = registry.get(task.function_id)
        assert function is not None
        try:
            step_tasks.TaskExecution(task, token, function, self.using, self.stopping).execute()
        except LeaseLost as exc:
            log.warning("step task %s: lease lost (%s)", task.pk, exc)
        except Exception as exc:
            log_db_error("step task %s: could not execute; requeueing it", exc, task.pk)
            self._reset_connection()
            try:
                step_tasks.release_task(task, token, self.using)
            except DatabaseError:
                log.error("step task %s: could not requeue; it moves on when we stop", task.pk)
        return True

    def _burst_finished(self) -> bool:
        if not all(self._idle):
            return False
        try:
            if self._work_soon():
                return False
        except DatabaseError:
            self._reset_connection()
            return False
        return all(self._idle)

    def _work_soon(self) -> bool:
        """Is a run claimable now, or a queued one (a retry) due within the lookahead?"""
        return workers.work_soon(
            self.using, registry.ids(), self.queues or None, clock.now(), BURST_LOOKAHEAD
        )
