"""The functions page: each function's triggers, its counts over a day, and the options
that are set, in words. It lists the functions of this web process and those live
workers execute (a worker may run a newer flows.py than the web process)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from .. import clock
from ..conf import db_alias
from ..definitions.functions import registry
from ..engine import workers
from ..models import Run, RunStatus
from .common import render_page, requires

SHOWN_ELSEWHERE = ("id", "name", "triggers")


def readable(value: Any) -> str:
    """An option's value in words: what is set, durations in seconds, no ``None``s."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {readable(v)}" for k, v in value.items() if _is_set(v))
    if isinstance(value, list):
        return "; ".join(readable(v) for v in value if _is_set(v))
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g} s"
    return str(value)


def _is_set(value: Any) -> bool:
    return value is not None and value != "" and value != [] and value != {}


def options(described: dict[str, Any]) -> list[tuple[str, str]]:
    """``(option, value in words)`` for the options of a described function that are set."""
    return [
        (key.replace("_", " "), readable(value))
        for key, value in described.items()
        if key not in SHOWN_ELSEWHERE and _is_set(value) and readable(value)
    ]


def _counts(since: Any) -> dict[str, dict[str, int]]:
    stats: dict[str, dict[str, int]] = {}
    for function_id, status, n in (
        Run.objects.filter(created_at__gte=since)
        .values_list("function_id", "status")
        .annotate(n=Count("id"))
        .values_list("function_id", "status", "n")
    ):
        stats.setdefault(function_id, {})[status] = n
    return stats


@requires("view_runs")
def functions(request: HttpRequest) -> HttpResponse:
    now = clock.now()
    stats = _counts(now - timedelta(days=1))
    served = workers.served(db_alias(), now)
    here = {function.id: function.describe() for function in registry.all()}
    rows = []
    for function_id in sorted(set(here) | served):
        counts = stats.get(function_id, {})
        failed = counts.get(RunStatus.FAILED, 0)
        finished = failed + counts.get(RunStatus.COMPLETED, 0)
        described = here.get(function_id)
        rows.append(
            {
                "id": function_id,
                "function": described,
                "options": options(described) if described else [],
                "served": function_id in served,
                "runs_url": reverse("durable_flows:dashboard")
                + "?"
                + urlencode({"function": function_id}),
                "total": sum(counts.values()),
                "completed": counts.get(RunStatus.COMPLETED, 0),
                "failed": failed,
                "active": sum(counts.get(s, 0) for s in ("queued", "running", "waiting")),
                "failure_rate": (failed / finished * 100) if finished else None,
            }
        )
    return render_page(request, "functions.html", {"rows": rows, "nav": "functions"})
