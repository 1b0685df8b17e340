"""Runs waiting for an event: wait steps and armed cancel rules, found by index."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from .events import Event
from .ids import FlowManager
from .runs import Run


class WaitKind(models.TextChoices):
    EVENT = "event", "wait_for_event"
    """A ``ctx.step.wait_for_event`` step waiting for its event."""
    CANCEL = "cancel", "cancel rule"
    """A function's ``cancel=[df.Cancel(...)]`` rule, armed for one run."""


class WaitStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    """Armed: a matching event resolves it."""
    RESOLVED = "resolved", "Resolved"
    """An event matched; ``event`` is the one (the first after the wait began)."""
    TIMED_OUT = "timed_out", "Timed out"
    """Its timeout passed before any matching event."""
    CLOSED = "closed", "Closed"
    """The run finished first; no longer armed."""


class Wait(models.Model):
    """A run waiting for an event (a wait step, or a cancel rule), found by indexed lookup.

    ``match_key`` is a hash of (match path, value of the run's event at that path),
    or "" when the wait has no ``match``: an incoming event computes the keys of the
    few match paths in use for its name, so finding candidates is one index probe
    on (event_name, match_key) whatever the number of waiting runs.
    """

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="waits")
    kind = models.CharField(max_length=10, choices=WaitKind.choices)
    step_name = models.CharField(max_length=300, blank=True, default="")
    event_name = models.CharField(max_length=255)
    match = models.CharField(max_length=255, blank=True, default="", help_text="e.g. data.user_id")
    match_key = models.CharField(max_length=40, blank=True, default="")
    if_exp = models.TextField(blank=True, default="")
    status = models.CharField(max_length=10, choices=WaitStatus.choices, default=WaitStatus.PENDING)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    event = models.ForeignKey(
        Event,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The event that resolved it",
    )

    objects = FlowManager()

    class Meta:
        indexes = [
            models.Index(
                fields=["event_name", "match_key"],
                name="df_wait_pending",
                condition=Q(status="pending"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.event_name} ({self.status})"


class WaitPath(models.Model):
    """The match paths in use per event name (a handful): what ``send()`` computes keys for."""

    event_name = models.CharField(max_length=255)
    path = models.CharField(max_length=255)

    objects = FlowManager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["event_name", "path"], name="df_waitpath_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.event_name}: {self.path}"
