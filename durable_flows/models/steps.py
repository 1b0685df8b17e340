"""Steps: a run's checkpoints, each written once and replayed from memory."""

from __future__ import annotations

from django.db import models

from .ids import FlowManager
from .runs import Run


class StepKind(models.TextChoices):
    """Which ``ctx.step`` method made the step."""

    RUN = "run", "Run"
    SLEEP = "sleep", "Sleep"
    WAIT_FOR_EVENT = "wait_for_event", "Wait for event"
    SEND_EVENT = "send_event", "Send event"
    INVOKE = "invoke", "Invoke"
    WAIT_FOR_SIGNAL = "wait_for_signal", "Wait for signal"
    PATCH = "patch", "Patch marker"


class StepStatus(models.TextChoices):
    """``Step.status``."""

    RUNNING = "running", "Running"
    """Attempted and failed at least once; a retry is scheduled."""
    WAITING = "waiting", "Waiting"
    """Sleeping or waiting; resolved later."""
    COMPLETED = "completed", "Completed"
    """Done; ``output`` is memoized and never recomputed."""
    FAILED = "failed", "Failed"
    """Retries exhausted or not retriable; replays raise ``StepError``."""
    CANCELLED = "cancelled", "Cancelled"
    """A sleep, wait or invoke left open when its run was cancelled."""


class Step(models.Model):
    """A run's checkpoint: one ``ctx.step`` call, unique per (run, name), with its
    memoized ``output`` or its ``error``."""

    # Looked up by run through the (run, name) unique index: no index of its own.
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="steps", db_index=False)
    name = models.CharField(max_length=300)
    kind = models.CharField(max_length=20, choices=StepKind.choices, default=StepKind.RUN)
    status = models.CharField(max_length=16, choices=StepStatus.choices)
    position = models.PositiveIntegerField(help_text="Order in which the function reached it")
    output = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # The row is the latest attempt (its start, end, error); earlier attempts that
    # raised are kept here, written with the retry (no write of their own).
    failed_attempts = models.JSONField(
        null=True, blank=True, help_text="Earlier attempts that raised: start, end, error"
    )
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    wake_at = models.DateTimeField(
        null=True, blank=True, help_text="A waiting step: when it wakes up or times out"
    )

    objects = FlowManager()

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            # A checkpoint is written once: a second writer gets an IntegrityError
            # ("someone else already recorded this"), never a second effect.
            models.UniqueConstraint(fields=["run", "name"], name="df_step_unique_name"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind}, {self.status})"
