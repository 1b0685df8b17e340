"""Live ``runflows`` processes and their heartbeats."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from .ids import FlowManager, new_id


class Worker(models.Model):
    """A live ``runflows`` process; its heartbeat is the lease of every run it holds."""

    id = models.CharField(primary_key=True, max_length=26, default=new_id, editable=False)
    name = models.CharField(max_length=255)
    hostname = models.CharField(max_length=255, blank=True)
    pid = models.IntegerField(null=True)
    queues = models.JSONField(default=list, blank=True)
    concurrency = models.PositiveIntegerField(default=1)
    functions = models.JSONField(
        default=list, blank=True, help_text="The ids of the functions this worker executes"
    )
    started_at = models.DateTimeField(default=timezone.now)
    heartbeat_at = models.DateTimeField(default=timezone.now)

    objects = FlowManager()

    def __str__(self) -> str:
        return f"{self.name} (pid {self.pid})"
