"""Starting a function directly, and waiting for its result: ``start()``, ``handle()``
and ``RunHandle``.

``start()`` stores a ``durable_flows/function.invoked`` event and one run of the
function, in the caller's transaction (so a run started inside ``transaction.atomic()``
commits or rolls back with the caller). A ``RunHandle`` reads the run; ``result()``
waits for it to finish, woken by NOTIFY on PostgreSQL (one listening connection per
process, shared by every waiting handle) and by polling on SQLite.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.db import transaction

from . import clock, notify
from .conf import db_alias
from .definitions.functions import Function, registry
from .definitions.payloads import INVOKED_EVENT, normalise
from .engine import inbox, waits
from .exceptions import RunCancelledError, RunFailedError, RunNotFound, StepUsageError
from .models import Run, RunStatus

_RECHECK_SECONDS = 5.0  # a waiting handle reads its run at least this often


class RunHandle:
    """A run of a durable function: its id, its status now, and its result."""

    def __init__(self, run_id: str, *, using: str | None = None) -> None:
        self.id = str(run_id)
        self._using = using or db_alias()

    def __repr__(self) -> str:
        return f"<RunHandle {self.id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunHandle) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    @property
    def status(self) -> str:
        """The run's status now (``queued``, ``running``, ``waiting``, ``completed``,
        ``failed``, ``cancelled`` or ``skipped``): read from the database each time."""
        return self._read()[0]

    def result(self, timeout: float | None = None) -> Any:
        """Block until the run has finished and return its output.

        Raises ``RunFailedError`` (``.error`` is the run's error dict) for a failed
        run, ``RunCancelledError`` for a cancelled or skipped one, ``TimeoutError``
        when ``timeout`` seconds pass first, and ``RunNotFound`` if the run is gone.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            seen = notify.generation(self._using)
            status, output, error = self._read()
            if status in _FINISHED:
                return self._outcome(status, output, error)
            notify.wait_finished(self._using, seen, self._remaining(deadline))

    async def aresult(self, timeout: float | None = None) -> Any:
        """``result()`` for async code: the event loop runs on while the run does."""
        deadline = None if timeout is None else time.monotonic() + timeout
        read = sync_to_async(self._read)
        while True:
            seen = notify.generation(self._using)
            status, output, error = await read()
            if status in _FINISHED:
                return self._outcome(status, output, error)
            await notify.await_finished(self._using, seen, self._remaining(deadline))

    def _remaining(self, deadline: float | None) -> float:
        if deadline is None:
            return _RECHECK_SECONDS
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"run {self.id} did not finish in time")
        return min(left, _RECHECK_SECONDS)

    def _read(self) -> tuple[str, Any, dict[str, Any] | None]:
        row = (
            Run.objects.using(self._using)
            .filter(pk=self.id)
            .values_list("status", "output", "error")
            .first()
        )
        if row is None:
            raise RunNotFound(f"no run with id {self.id!r}")
        return row

    def _outcome(self, status: str, output: Any, error: dict[str, Any] | None) -> Any:
        if status == RunStatus.COMPLETED:
            return output
        if status == RunStatus.FAILED:
            raise RunFailedError(self.id, error)
        raise RunCancelledError(self.id, error, status)


_FINISHED = {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.SKIPPED}


def handle(run_id: str) -> RunHandle:
    """A handle for an existing run; ``RunNotFound`` if there is none."""
    found = RunHandle(run_id)
    found.status  # noqa: B018 - raises RunNotFound for an unknown id
    return found


def start(
    function: Function | str,
    data: dict[str, Any] | None = None,
    *,
    id: str | None = None,  # noqa: A002 - the SDK's name
) -> RunHandle:
    """Start one run of ``function`` (a durable function or its id), whatever its
    triggers, and return its ``RunHandle``.

    The run's ``ctx.event`` is a ``durable_flows/function.invoked`` event whose
    ``data`` is ``data``. Inside ``transaction.atomic()`` the run commits or rolls
    back with the caller. ``id`` deduplicates as an event's id does: the same ``id``
    within ``EVENT_DEDUP_SECONDS`` (24 h) returns the first run's handle and starts
    nothing.
    """
    target = registry.resolve(function, "start(function=...)")
    return start_run(target, data, id=id)


def start_run(
    target: Function,
    data: dict[str, Any] | None,
    *,
    id: str | None = None,  # noqa: A002 - as start()'s
    queue: str | None = None,
    priority: int = 0,
    available_at: datetime | None = None,
) -> RunHandle:
    """``start()`` with the run's queue, priority and earliest start given (the Tasks
    backend's ``queue_name``, ``priority`` and ``run_after``)."""
    item = normalise({"name": INVOKED_EVENT, "data": data, "id": id}, 0, system=True)
    using = db_alias()
    now = clock.now()
    with transaction.atomic(using=using):
        ids, stored = inbox.store([item], using)
        if not stored:  # a duplicate within the window: the first run stands
            return RunHandle(_first_run(ids[0], target, using), using=using)
        run = Run.start(target, stored[0], now, max(available_at or now, now), priority=priority)
        if queue is not None:
            run.queue = queue
        run.save(using=using, force_insert=True)
        waits.arm_cancel_rules([run], using)
        notify.work_available(using)
    return RunHandle(run.pk, using=using)


def _first_run(event_id: str, target: Function, using: str) -> str:
    run_id = (
        Run.objects.using(using)
        .filter(event_id=event_id, function_id=target.id)
        .order_by("created_at", "pk")
        .values_list("pk", flat=True)
        .first()
    )
    if run_id is None:
        raise StepUsageError(
            f"start(id=...): the id was used within the deduplication window by event "
            f"{event_id}, which started no run of {target.id!r}"
        )
    return run_id
