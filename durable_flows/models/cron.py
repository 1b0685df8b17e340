"""Cron ticks: each scheduled start of a cron-triggered function, made once."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from .ids import FlowManager
from .runs import Run


class CronTick(models.Model):
    """One scheduled tick of a cron-triggered function; the unique pair makes it start once."""

    function_id = models.CharField(max_length=255)
    tick = models.DateTimeField()
    run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    objects = FlowManager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["function_id", "tick"], name="df_crontick_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.function_id} @ {self.tick.isoformat()}"
