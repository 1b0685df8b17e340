"""Parallel step tasks: any worker thread claims a task like a run (concurrency keys
included) and executes it as a ``TaskExecution``: the function is replayed from its
checkpoints with only the task's step targeted; other new steps raise ``Skip``, and
once the target has been checkpointed ``TargetDone`` ends the pass. A failing
target retries on its own (the task is requeued at the retry time, the run stays
parked). The task that finishes last puts the run back in the queue.
"""

from __future__ import annotations

import logging
from typing import Any, NoReturn

from django.db import transaction
from django.db.models import F

from .. import clock, notify, storage
from ..definitions.functions import Function
from ..exceptions import Interrupt, LeaseLost, RunCancelled, StepError
from ..models import Run, RunStatus, Step, StepKind, StepStatus, StepTask, StepTaskStatus, new_id
from . import slots
from .executor import Execution
from .parallel import Skip, TargetDone
from .signals import DONE, Released, Suspended

log = logging.getLogger("durable_flows.worker")


def claim_task(
    using: str, worker_id: str, queues: list[str] | None, function_ids: list[str]
) -> tuple[StepTask, str] | None:
    """Lease one due step task, or None (one cheap read when there is none)."""
    now = clock.now()
    due = StepTask.objects.using(using).filter(
        status=StepTaskStatus.QUEUED, available_at__lte=now, function_id__in=function_ids
    )
    if queues:
        due = due.filter(queue__in=queues)
    if not due.exists():
        return None
    due = due.order_by("available_at", "id")
    token = new_id()
    with transaction.atomic(using=using):
        if slots.limits_claims(function_ids):
            ids = slots.pick(using, due, 1)
        else:
            store = storage.of(using)
            store.lock_for_write()
            ids = list(store.skip_locked(due).values_list("id", flat=True)[:1])
        if not ids:
            return None
        StepTask.objects.using(using).filter(id__in=ids).update(
            status=StepTaskStatus.RUNNING, lease_owner=worker_id, lease_token=token
        )
    task = StepTask.objects.using(using).select_related("run", "run__event").get(pk=ids[0])
    return task, token


def tasks_due(using: str, function_ids: list[str], queues: list[str] | None, when: Any) -> bool:
    due = StepTask.objects.using(using).filter(
        status=StepTaskStatus.QUEUED, available_at__lte=when, function_id__in=function_ids
    )
    if queues:
        due = due.filter(queue__in=queues)
    return due.exists()


def rescue_orphan_tasks(using: str, live_worker_ids: Any) -> int:
    """Requeue step tasks held by workers that stopped heartbeating. The worker died
    while it executed the task's step: a failed attempt of that step, so a step that
    kills its process fails after its retries."""
    with transaction.atomic(using=using):
        orphans = list(
            StepTask.objects.using(using)
            .select_for_update()
            .filter(status=StepTaskStatus.RUNNING)
            .exclude(lease_owner__in=live_worker_ids)
            .values_list("pk", "run_id", "step_name")
        )
        for _, run_id, step_name in orphans:
            Step.objects.using(using).filter(
                run_id=run_id, name=step_name, status=StepStatus.RUNNING
            ).update(attempts=F("attempts") + 1)
        return (
            StepTask.objects.using(using)
            .filter(pk__in=[pk for pk, _, _ in orphans], status=StepTaskStatus.RUNNING)
            .update(status=StepTaskStatus.QUEUED, lease_owner=None, lease_token=None)
        )


def release_task(task: StepTask, token: str, using: str) -> None:
    """Give a step task back after an engine error (not a step failure)."""
    StepTask.objects.using(using).filter(
        pk=task.pk, lease_token=token, status=StepTaskStatus.RUNNING
    ).update(status=StepTaskStatus.QUEUED, lease_owner=None, lease_token=None)


class TaskExecution(Execution):
    """Replay a parked run's function to execute exactly one planned step."""

    one_statement_checkpoints = False

    def __init__(
        self, task: StepTask, token: str, function: Function, using: str, stopping: Any = None
    ) -> None:
        super().__init__(task.run, token, function, using, stopping)
        self.task = task
        self.target = task.step_name
        self.reached = False
        self.targeted = True
        self._crashes = 0  # a task's crashes are its own (rescue_orphan_tasks)

    def execute(self) -> None:
        try:
            if self.run.status != RunStatus.WAITING:
                raise RunCancelled()  # cancelled (or finished) while its steps were queued
            self.boundary()
            self.call_function()
        except (TargetDone, Skip, RunCancelled):
            pass
        except Released:
            self._requeue(clock.now())
            return
        except (Suspended, LeaseLost):
            return
        except Interrupt:
            raise
        except BaseException as exc:
            # Code outside the target failed on replay: the run itself will meet it.
            log.info("run %s: step task %s ended early: %r", self.run.pk, self.target, exc)
        self._finish()

    def _intercept(self, name: str, position: int, memo: Step | None, kind: StepKind) -> None:
        if name == self.target:
            self.reached = True
            if memo is not None and memo.status in DONE:
                raise TargetDone()
        elif memo is None or memo.status not in DONE:
            raise Skip()

    def _stored(self, step: Step, output: Any, cancel: bool) -> Any:
        output = super()._stored(step, output, cancel)
        if self.reached:
            raise TargetDone()
        return output

    def _step_failed(self, exc: BaseException, memo: Step | None, checkpoint: Any) -> NoReturn:
        try:
            super()._step_failed(exc, memo, checkpoint)
        except StepError:
            if self.reached:
                raise TargetDone() from None
            raise

    def _held(self):
        return StepTask.objects.using(self.using).filter(
            pk=self.task.pk, lease_token=self.token, status=StepTaskStatus.RUNNING
        )

    def fence(self) -> bool:
        if self._held().update(lease_token=self.token) != 1:
            raise LeaseLost(f"step task {self.task.pk} is no longer leased to this worker")
        run = Run.objects.using(self.using).filter(pk=self.run.pk)
        if not run.filter(status=RunStatus.WAITING, cancel_requested=False).exists():
            raise RunCancelled()
        return False

    def _retry_later(self, when: Any) -> None:
        self._requeue(when)

    def _requeue(self, when: Any) -> None:
        moved = self._held().update(
            status=StepTaskStatus.QUEUED, available_at=when, lease_owner=None, lease_token=None
        )
        if moved != 1:
            raise LeaseLost(f"step task {self.task.pk} is no longer leased to this worker")
        if when <= clock.now():
            notify.work_available(self.using)

    def _finish(self) -> None:
        """Drop the task; the last one of the run puts the run back in the queue."""
        using, now = self.using, clock.now()
        with transaction.atomic(using=using):
            if not self._held().delete()[0]:
                return
            # Lock the run, then look: of two tasks ending at once, the second
            # to lock sees the first one's deletion.
            runs = Run.objects.using(using).filter(pk=self.run.pk)
            list(runs.select_for_update().values_list("id", flat=True))
            if StepTask.objects.using(using).filter(run_id=self.run.pk).exists():
                return
            woken = runs.filter(status=RunStatus.WAITING, available_at__isnull=True).update(
                status=RunStatus.QUEUED, available_at=now, updated_at=now
            )
            if woken:
                notify.work_available(using)
