"""Stored events: history, never changed once written."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import Q
from django.utils import timezone

from .ids import FlowManager, new_id


class Event(models.Model):
    """A stored event. Never changed once stored: runs keep the event they started with.

    ``id`` is the sender's id when one was given and is still free, else a ULID;
    ``sender_id`` is the id the sender gave, which deduplicates within
    ``EVENT_DEDUP_SECONDS`` (after that window the same sender id makes a new event).
    """

    id = models.CharField(primary_key=True, max_length=255, default=new_id, editable=False)
    sender_id = models.CharField(  # noqa: DJ001 - NULL: the sender gave no id
        max_length=255,
        null=True,
        blank=True,
        editable=False,
        help_text="The id the sender gave; deduplicates within the window",
    )
    name = models.CharField(max_length=255)
    data = models.JSONField(default=dict)
    ts = models.BigIntegerField(help_text="Milliseconds since the epoch")
    received_at = models.DateTimeField(default=timezone.now)

    objects = FlowManager()

    class Meta:
        indexes = [
            models.Index(fields=["name", "-received_at"], name="df_event_name_recv"),
            models.Index(fields=["-received_at"], name="df_event_recv"),
            # Partial: most events have no sender id.
            models.Index(
                fields=["sender_id", "-received_at"],
                name="df_event_sender",
                condition=Q(sender_id__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Insert only: a stored event is history, and history is not rewritten."""
        if not self._state.adding or kwargs.get("force_update") or kwargs.get("update_fields"):
            raise TypeError(f"event {self.pk} is stored already; stored events never change")
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def as_dict(self) -> dict[str, Any]:
        """The event as CEL expressions and ``ctx.event`` see it."""
        return {"id": self.id, "name": self.name, "data": self.data, "ts": self.ts}
