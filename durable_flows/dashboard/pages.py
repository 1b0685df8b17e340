"""The pages that only read: runs, a run's step waterfall, events, functions.

Server-rendered; ``static/durable_flows/dashboard.js`` refreshes the live parts
by fetching the same URL with ``?fragment=1``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Count, Prefetch
from django.http import Http404, HttpRequest, HttpResponse

from .. import clock, display, permissions
from ..conf import db_alias
from ..definitions.payloads import RESERVED_PREFIX
from ..engine import workers
from ..models import FINISHED, Event, Run, RunStatus, Step
from ..templatetags.durable_flows import format_duration
from .common import paginate, param, render_page, requires
from .waterfall import waterfall
from .workers import known_functions, queue_stats


def _raw_json(request: HttpRequest, run: Run) -> HttpResponse:
    """``?json=output|error|event`` (``&step=<id>`` for a step's): the stored value whole."""
    field, step_id = request.GET.get("json"), request.GET.get("step")
    if step_id is not None:
        step = next((s for s in run.steps.all() if str(s.pk) == step_id), None)
        if step is None or field not in ("output", "error"):
            raise Http404("no such step value")
        return display.raw_response(getattr(step, field))
    if field in ("output", "error"):
        return display.raw_response(getattr(run, field))
    if field == "event" and run.event is not None:
        if not permissions.can_view_events(request.user):
            return HttpResponse(
                "Forbidden: this needs the durable_flows.view_event permission.",
                status=403,
                content_type="text/plain",
            )
        return display.raw_response(run.event.as_dict())
    raise Http404("no such value")


def _any_queued(runs: list[Run]) -> bool:
    return any(run.status == RunStatus.QUEUED for run in runs)


def progress(run: Run, now: datetime) -> str:
    """How long a run has been in its state, for a table cell: its duration when it
    has ended, else "queued 4 s", "running 2.1 s", "waiting 3m 2s, until 14:05:09"."""
    if run.ended_at:
        return format_duration(run.ended_at - (run.started_at or run.created_at))
    if run.status == RunStatus.WAITING:
        text = f"waiting {format_duration(now - run.updated_at)}"
        if run.available_at:
            text += f", until {run.available_at:%b %-d, %H:%M:%S} UTC"
        return text
    if run.status == RunStatus.RUNNING:
        return f"running {format_duration(now - (run.started_at or run.created_at))}"
    return f"{run.status} {format_duration(now - run.created_at)}"


@requires("view_runs")
def runs(request: HttpRequest) -> HttpResponse:
    status = param(request, "status")
    function_id = param(request, "function")
    event_name = param(request, "event_name")
    # Stored JSON is never read for a list: a page of runs stays as cheap however large.
    rows = (
        Run.objects.select_related("event")
        .defer("output", "error", "event__data")
        .order_by("-created_at", "-id")
    )
    if status in RunStatus.values:
        rows = rows.filter(status=status)
    if function_id:
        rows = rows.filter(function_id=function_id)
    if event_name:
        rows = rows.filter(event__name=event_name)
    if param(request, "event"):
        rows = rows.filter(event_id=param(request, "event"))
    rows = rows.annotate(**display.error_heads())
    page = paginate(request, rows)
    now = clock.now()
    served = workers.served(db_alias(), now) if _any_queued(page["items"]) else set()
    for run in page["items"]:
        run.progress = progress(run, now)
        run.reason = display.error_line(display.error_head(run))
        run.unserved = run.status == RunStatus.QUEUED and run.function_id not in served
    since = now - timedelta(days=1)
    counts = dict(
        Run.objects.filter(created_at__gte=since)
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    context = {
        "page": page,
        "statuses": RunStatus.choices,
        "function_ids": known_functions(now),
        "queues": queue_stats(now),
        "filters": {"status": status, "function": function_id, "event_name": event_name},
        "live": page["number"] == 1,
        "summary": [(label, value, counts.get(value, 0)) for value, label in RunStatus.choices],
        "total_day": sum(counts.values()),
        "nav": "runs",
    }
    return render_page(request, "runs.html", context, fragment="_runs_table.html")


@requires("view_runs")
def run_detail(request: HttpRequest, run_id: str) -> HttpResponse:
    # Stored JSON is read as the start of its text and its length (display.stored):
    # the page's time is bounded however large the values and however many steps.
    steps_shown = (
        Step.objects.order_by("position", "id")
        .defer("output", "error")
        .annotate(**display.stored("output", "error"), **display.error_heads())
    )
    try:
        run = (
            Run.objects.select_related("event")
            .defer("output", "error", "event__data")
            .annotate(**display.stored("output", "error", "event__data"))
            .prefetch_related(Prefetch("steps", steps_shown))
            .get(pk=run_id)
        )
    except Run.DoesNotExist:
        raise Http404("no such run")
    if "json" in request.GET:
        return _raw_json(request, run)
    steps = list(run.steps.all())
    for step in steps:
        step.shown_output = display.Stored.of(step, "output")
        step.shown_error = display.Stored.of(step, "error")
    end = run.ended_at or clock.now()
    bars, ticks = waterfall(run, steps)
    related = ("id", "status", "function_id", "created_at")
    context = {
        "run": run,
        "shown": {
            field: display.Stored.of(run, field) for field in ("output", "error", "event__data")
        },
        "bars": bars,
        "ticks": ticks,
        "unserved": run.status == RunStatus.QUEUED
        and run.function_id not in workers.served(db_alias(), clock.now()),
        "reruns": list(run.reruns.only(*related).order_by("-created_at")[:20]),
        "children": list(run.children.only(*related).order_by("created_at")[:50]),
        "total": format_duration(end - (run.started_at or run.created_at)),
        "queued_for": format_duration((run.started_at or end) - run.created_at),
        "live": run.status not in FINISHED,
        "can_cancel": run.status not in FINISHED,
        "nav": "runs",
    }
    return render_page(request, "run.html", context, fragment="_run_body.html")


@requires("view_events")
def events(request: HttpRequest) -> HttpResponse:
    name = param(request, "name")
    sender_id = param(request, "sender_id")
    rows = (
        Event.objects.defer("data")
        .annotate(**display.stored("data", head=200))
        .order_by("-received_at", "-id")
    )
    # The app's own lifecycle events (``durable_flows/...``) are shown when asked for,
    # or when filtering by one of their names.
    system = param(request, "system") == "1" or name.startswith(RESERVED_PREFIX)
    if name:
        rows = rows.filter(name=name)
    if sender_id:
        rows = rows.filter(sender_id=sender_id)
    if not system:
        rows = rows.exclude(name__startswith=RESERVED_PREFIX)
    page = paginate(request, rows)
    for event in page["items"]:
        event.data_line = display.one_line(display.Stored.of(event, "data"))
    filters = {"name": name, "sender_id": sender_id, "system": system}
    context = {"page": page, "filters": filters, "nav": "events"}
    return render_page(request, "events.html", context)


@requires("view_events")
def event_detail(request: HttpRequest, event_id: str) -> HttpResponse:
    try:
        event = Event.objects.defer("data").annotate(**display.stored("data")).get(pk=event_id)
    except Event.DoesNotExist:
        raise Http404("no such event")
    if "json" in request.GET:
        if request.GET["json"] != "data":
            raise Http404("no such value")
        return display.raw_response(event.data)
    shown = permissions.can_view_runs(request.user)
    related = ("id", "status", "function_id", "created_at", "started_at", "ended_at", "rerun_of")
    started = event.runs.only(*related).order_by("created_at", "id")
    event_runs = list(started[:200]) if shown else []
    live = any(run.status not in FINISHED for run in event_runs)
    context = {
        "event": event,
        "data": display.Stored.of(event, "data"),
        "runs": event_runs,
        "live": live,
        "nav": "events",
    }
    return render_page(request, "event.html", context, fragment="_event_runs.html")
