"""What the workers do: the workers page (alive or not, threads, queues, functions,
runs in hand, last heartbeat), each queue's depth and lag, and the functions known
to the web process or to any live worker."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Count, Min
from django.http import HttpRequest, HttpResponse

from .. import clock
from ..conf import db_alias, flow_settings
from ..definitions.functions import registry
from ..engine import workers
from ..models import Run, RunStatus, Worker
from ..templatetags.durable_flows import format_duration
from .common import render_page, requires

# The workers page lists at most this many rows (dead rows are deleted by the living).
MAX_WORKERS = 500


def known_functions(now: datetime) -> list[str]:
    """The ids of the functions this web process defines and of those live workers
    execute (a worker deployed with a newer flows.py knows functions the web process
    does not, until it restarts)."""
    return sorted(set(registry.ids()) | workers.served(db_alias(), now))


def queue_stats(now: datetime) -> list[dict[str, Any]]:
    """Per queue: queued runs due now (its depth) and how long the oldest of them has
    waited (its lag); queues with nothing due are left out."""
    due = Run.objects.filter(status=RunStatus.QUEUED, available_at__lte=now)
    rows = due.values("queue").annotate(depth=Count("id"), oldest=Min("available_at"))
    return [
        {
            "queue": row["queue"],
            "depth": row["depth"],
            "lag": format_duration(now - row["oldest"]) if row["oldest"] else "",
        }
        for row in rows.order_by("queue")
    ]


@requires("view_runs")
def workers_page(request: HttpRequest) -> HttpResponse:
    now = clock.now()
    lease = float(flow_settings.LEASE_SECONDS)
    rows = list(Worker.objects.order_by("-heartbeat_at", "id")[:MAX_WORKERS])
    held = dict(
        Run.objects.filter(status=RunStatus.RUNNING, lease_owner__in=[w.pk for w in rows])
        .values_list("lease_owner")
        .annotate(n=Count("id"))
        .values_list("lease_owner", "n")
    )
    shown = [
        {
            "worker": worker,
            "alive": (now - worker.heartbeat_at).total_seconds() <= lease,
            "functions": worker.functions if isinstance(worker.functions, list) else [],
            "queues": worker.queues if isinstance(worker.queues, list) else [],
            "runs": held.get(worker.pk, 0),
            "beat_ago": format_duration(now - worker.heartbeat_at),
            "up": format_duration(now - worker.started_at),
        }
        for worker in rows
    ]
    served = workers.served(db_alias(), now)
    context = {
        "rows": shown,
        "web_only": sorted(set(registry.ids()) - served),
        "queues": queue_stats(now),
        "unserved": sorted(workers.unserved_queued(db_alias(), now).items()),
        "lease": lease,
        "nav": "workers",
    }
    return render_page(request, "workers.html", context)
