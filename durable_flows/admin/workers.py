"""Live and departed ``runflows`` workers, with whether each is alive."""

from __future__ import annotations

from django.contrib import admin

from .. import clock
from ..conf import flow_settings
from ..models import Worker
from .base import ReadOnlyAdmin


@admin.register(Worker)
class WorkerAdmin(ReadOnlyAdmin):
    list_display = [
        "name",
        "hostname",
        "pid",
        "queues",
        "concurrency",
        "functions",
        "started_at",
        "heartbeat_at",
        "alive",
    ]
    ordering = ["-heartbeat_at"]
    fields = list_display  # type: ignore[assignment]
    readonly_fields = fields  # type: ignore[assignment]  # stubs type `fields` more broadly

    @admin.display(boolean=True, description="alive")
    def alive(self, worker: Worker) -> bool:
        """Beat within the lease; after that its runs go to other workers."""
        age = (clock.now() - worker.heartbeat_at).total_seconds()
        return age <= float(flow_settings.LEASE_SECONDS)
