"""Runs of functions; their status is a written-down state machine."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import Q
from django.utils import timezone

from .events import Event
from .ids import FlowManager, new_id


class RunStatus(models.TextChoices):
    """``Run.status``."""

    QUEUED = "queued", "Queued"
    """Waiting for a worker (now, or at ``available_at``)."""
    RUNNING = "running", "Running"
    """Leased by a worker that is executing it."""
    WAITING = "waiting", "Waiting"
    """Sleeping, or waiting for an event or a child run; holds no worker."""
    COMPLETED = "completed", "Completed"
    """The function returned; ``output`` holds its value."""
    FAILED = "failed", "Failed"
    """Gave up; ``error`` says why."""
    CANCELLED = "cancelled", "Cancelled"
    """Stopped by ``cancel()`` or a cancel rule."""
    SKIPPED = "skipped", "Skipped"
    """Made by rate limiting or a singleton; never executed."""


FINISHED = (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.SKIPPED)
CLAIMABLE = (RunStatus.QUEUED, RunStatus.WAITING)


class RunQuerySet(models.QuerySet):
    def claimable(self, now: Any, queues: list[str] | None, function_ids: list[str]):
        """Runs a worker may take now: queued or waking up, due, of a function it knows."""
        qs = self.filter(status__in=CLAIMABLE, available_at__lte=now, function_id__in=function_ids)
        if queues:
            qs = qs.filter(queue__in=queues)
        return qs

    def finished(self):
        return self.filter(status__in=FINISHED)

    def orphaned(self, live_worker_ids: Any):
        """Running runs whose lease holder is no longer alive."""
        return self.filter(status=RunStatus.RUNNING).exclude(lease_owner__in=live_worker_ids)


class Run(models.Model):
    """One execution of a durable function, started by an event (or a cron tick,
    an invoke, a rerun). Its steps are ``run.steps``, in ``position`` order."""

    id = models.CharField(primary_key=True, max_length=26, default=new_id, editable=False)
    function_id = models.CharField(max_length=255)
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED)
    # Foreign keys without Django's default index (plus a varchar_pattern_ops twin on
    # PostgreSQL): the indexes in Meta serve them, smaller, and every update of a
    # run's status writes to each index of the table.
    event = models.ForeignKey(
        Event,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="runs",
        db_index=False,
    )
    output = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    queue = models.CharField(max_length=100, default="default")
    priority = models.IntegerField(default=0)
    available_at = models.DateTimeField(
        null=True, blank=True, help_text="When a queued or waiting run may next be claimed"
    )
    attempt = models.PositiveIntegerField(
        default=0, help_text="Failed attempts of code outside steps"
    )
    lease_owner = models.CharField(max_length=26, null=True, blank=True)  # noqa: DJ001 - NULL: unleased
    lease_token = models.CharField(max_length=26, null=True, blank=True)  # noqa: DJ001
    cancel_requested = models.BooleanField(default=False)
    rerun_of = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="reruns",
        db_index=False,
    )
    parent_run = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="children",
        help_text="The run whose ctx.step.invoke started this one",
        db_index=False,
    )
    parent_step = models.CharField(
        max_length=300, blank=True, default="", help_text="The parent's invoke step"
    )
    # Concurrency slots (engine/flow_control.py): up to two (key, limit) pairs;
    # the key names the function, the constraint and the CEL key's value.
    concurrency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    concurrency_limit = models.PositiveIntegerField(null=True, blank=True)
    concurrency_key_2 = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    concurrency_limit_2 = models.PositiveIntegerField(null=True, blank=True)
    throttle_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001

    objects = FlowManager.from_queryset(RunQuerySet)()

    # Not a column: set by claim() on a run that had never started, which
    # therefore has no checkpoints to load.
    fresh = False

    class Meta:
        indexes = [
            # The hot path: a partial index over runnable rows only, so it stays
            # small however many finished runs the table holds. In the claim's
            # order, so that a claim reads the first rows and stops, however many
            # are queued (a worker's queue filter is checked on the way).
            models.Index(
                fields=["-priority", "available_at", "id"],
                name="df_run_claimable",
                condition=Q(status__in=["queued", "waiting"]),
            ),
            models.Index(
                fields=["lease_owner"], name="df_run_leased", condition=Q(status="running")
            ),
            models.Index(
                fields=["concurrency_key"],
                name="df_run_slot",
                condition=Q(status="running", concurrency_key__isnull=False),
            ),
            models.Index(
                fields=["concurrency_key_2"],
                name="df_run_slot_2",
                condition=Q(status="running", concurrency_key_2__isnull=False),
            ),
            models.Index(fields=["-created_at"], name="df_run_created"),
            models.Index(fields=["status", "-created_at"], name="df_run_status"),
            models.Index(fields=["function_id", "-created_at"], name="df_run_function"),
            models.Index(fields=["event"], name="df_run_event"),
            # Partial: most runs are neither reruns nor invoked.
            models.Index(
                fields=["rerun_of"], name="df_run_rerun_of", condition=Q(rerun_of__isnull=False)
            ),
            models.Index(
                fields=["parent_run"], name="df_run_parent", condition=Q(parent_run__isnull=False)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.function_id} {self.id} ({self.status})"

    @classmethod
    def start(
        cls, function: Any, event: Event | None, now: Any, available_at: Any = None, **fields: Any
    ) -> Run:
        """A new, unsaved run of ``function`` for ``event``, due at ``available_at`` (now)."""
        return cls(
            function_id=function.id,
            event=event,
            queue=function.queue,
            created_at=now,
            updated_at=now,
            available_at=available_at or now,
            **fields,
        )

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED
