"""Signals: messages to one run, kept in its mailbox until a step takes them."""

from __future__ import annotations

from django.db import models

from .ids import FlowManager, new_id
from .runs import Run


class Signal(models.Model):
    """A message sent to one run with ``df.signal``. Kept until the run reaches a
    ``ctx.step.wait_for_signal`` of its name, which takes the oldest (each once)."""

    id = models.CharField(primary_key=True, max_length=26, default=new_id, editable=False)
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="signals")
    name = models.CharField(max_length=255)
    data = models.JSONField(default=dict, blank=True)
    sent_at = models.DateTimeField()
    delivered_at = models.DateTimeField(null=True, blank=True)
    step = models.CharField(
        max_length=255, blank=True, default="", help_text="The step that took it"
    )

    objects = FlowManager()

    class Meta:
        indexes = [
            models.Index(
                fields=["run", "name", "sent_at", "id"],
                name="df_signal_pending",
                condition=models.Q(delivered_at__isnull=True),
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} -> {self.run_id}"
