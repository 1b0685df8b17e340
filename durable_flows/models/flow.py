"""Tables behind flow control and parallel steps.

- ``FlowKey``: one row per (rule, function, key value): the state of a throttle
  or rate limit (GCRA's theoretical arrival time), the open batch or debounced
  run, the active singleton run, an idempotency key until it expires. Locking
  the row serialises the senders of one key.
- ``RunEvent``: the events of a batched run, in order.
- ``StepTask``: a planned parallel step, claimable by any worker on its own.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from .events import Event
from .ids import FlowManager, new_id
from .runs import Run


class FlowKey(models.Model):
    key = models.CharField(primary_key=True, max_length=255)
    run_id = models.CharField(max_length=26, null=True, blank=True)  # noqa: DJ001
    tat = models.DateTimeField(null=True, blank=True, help_text="GCRA theoretical arrival time")
    opened_at = models.DateTimeField(null=True, blank=True, help_text="First event of a debounce")
    size = models.PositiveIntegerField(default=0, help_text="Events in the open batch")
    expires_at = models.DateTimeField(null=True, blank=True)

    objects = FlowManager()

    def __str__(self) -> str:
        return self.key


class RunEvent(models.Model):
    """An event of a batched run (``ctx.events``); ``position`` 0 is ``run.event``."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="batch")
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="+")
    position = models.PositiveIntegerField()

    objects = FlowManager()

    class Meta:
        ordering = ["position"]
        constraints = [
            models.UniqueConstraint(fields=["run", "position"], name="df_runevent_position"),
        ]

    def __str__(self) -> str:
        return f"{self.run_id}[{self.position}] {self.event_id}"


class StepTaskStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    """Planned, waiting for a worker (now, or at ``available_at`` after a failure)."""
    RUNNING = "running", "Running"
    """Leased by a worker that is executing the step."""


class StepTask(models.Model):
    """One step of a ``ctx.group.parallel`` call, executed apart from its run."""

    id = models.CharField(primary_key=True, max_length=26, default=new_id, editable=False)
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="step_tasks")
    step_name = models.CharField(max_length=300)
    status = models.CharField(
        max_length=16, choices=StepTaskStatus.choices, default=StepTaskStatus.QUEUED
    )
    queue = models.CharField(max_length=100, default="default")
    function_id = models.CharField(max_length=255)
    available_at = models.DateTimeField(default=timezone.now)
    lease_owner = models.CharField(max_length=26, null=True, blank=True)  # noqa: DJ001
    lease_token = models.CharField(max_length=26, null=True, blank=True)  # noqa: DJ001
    concurrency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    concurrency_limit = models.PositiveIntegerField(null=True, blank=True)
    concurrency_key_2 = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    concurrency_limit_2 = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = FlowManager()

    class Meta:
        indexes = [
            models.Index(
                fields=["available_at"],
                name="df_steptask_claimable",
                condition=Q(status="queued"),
            ),
            models.Index(fields=["lease_owner"], name="df_steptask_leased"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["run", "step_name"], name="df_steptask_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.run_id} {self.step_name} ({self.status})"
