"""The staff dashboard: runs, a run's step waterfall, events, functions, and a send form.

Server-rendered; ``static/durable_flows/dashboard.js`` refreshes the live parts
by fetching the same URL with ``?fragment=1``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.apps import apps
from django.contrib.auth.views import redirect_to_login
from django.db.models import Count, Prefetch, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_POST

from . import clock, control, display, permissions
from .definitions.functions import registry
from .definitions.payloads import parse_json_body
from .events import send
from .exceptions import EventValidationError, RunNotFound
from .middleware import bad_url_response, url_problem
from .models import FINISHED, Event, Run, RunStatus, Step
from .templatetags.durable_flows import format_duration

PAGE_SIZE = 50


View = Callable[..., HttpResponse]


def requires(rule: str) -> Callable[[View], View]:
    """Staff holding the permission of ``rule`` (``durable_flows.permissions``), as in the
    admin: anonymous visitors go to the admin's login page, anyone else gets a 403."""

    def decorate(view: View) -> View:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            problem = url_problem(request)
            if problem:  # NUL or invalid UTF-8 can name nothing; PostgreSQL refuses NUL
                return bad_url_response(request, problem)
            user = request.user
            if not user.is_authenticated:
                try:
                    login_url = reverse("admin:login")
                except NoReverseMatch:
                    return HttpResponse("Staff only: sign in first.", status=401)
                return redirect_to_login(request.get_full_path(), login_url)
            if not permissions.is_staff(user):
                return HttpResponse("Staff only.", status=403, content_type="text/plain")
            if not permissions.allowed(user, rule):
                text = f"Forbidden: this needs the {permissions.needed(rule)} permission."
                return HttpResponse(text, status=403, content_type="text/plain")
            return view(request, *args, **kwargs)

        return wrapper

    return decorate


def _param(request: HttpRequest, name: str) -> str:
    """A filter value (NUL never gets here: ``requires`` answers 400 to it)."""
    return request.GET.get(name, "").strip()


def _notify(request: HttpRequest, text: str, *, error: bool = False) -> None:
    if apps.is_installed("django.contrib.messages"):
        from django.contrib import messages

        (messages.error if error else messages.success)(request, text)


def _page(request: HttpRequest, rows: QuerySet) -> dict[str, Any]:
    """One page without counting the table: fetch one row more to know if there is a next."""
    try:
        number = min(max(1, int(request.GET.get("page", "1"))), 100_000)
    except ValueError:
        number = 1
    start = (number - 1) * PAGE_SIZE
    items = list(rows[start : start + PAGE_SIZE + 1])
    query = request.GET.copy()
    query.pop("fragment", None)

    def link(n: int) -> str:
        query["page"] = str(n)
        return "?" + query.urlencode()

    return {
        "items": items[:PAGE_SIZE],
        "number": number,
        "previous_url": link(number - 1) if number > 1 else None,
        "next_url": link(number + 1) if len(items) > PAGE_SIZE else None,
    }


def _render(
    request: HttpRequest,
    page: str,
    context: dict[str, Any],
    *,
    fragment: str | None = None,
    status: int = 200,
) -> HttpResponse:
    """A page, or its live ``fragment`` (``?fragment=1``), with what the user may do."""
    template = fragment if fragment and request.GET.get("fragment") else page
    context = {**context, "can": permissions.for_user(request.user)}
    with display.page_budget():  # all the JSON of one page: bounded (display.py)
        return render(request, f"durable_flows/{template}", context, status=status)


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


@requires("view_runs")
def runs(request: HttpRequest) -> HttpResponse:
    status = _param(request, "status")
    function_id = _param(request, "function")
    event_name = _param(request, "event_name")
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
    if _param(request, "event"):
        rows = rows.filter(event_id=_param(request, "event"))
    page = _page(request, rows)
    since = clock.now() - timedelta(days=1)
    counts = dict(
        Run.objects.filter(created_at__gte=since)
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    context = {
        "page": page,
        "statuses": RunStatus.choices,
        "function_ids": sorted(registry.ids()),
        "filters": {"status": status, "function": function_id, "event_name": event_name},
        "live": page["number"] == 1,
        "summary": [(label, value, counts.get(value, 0)) for value, label in RunStatus.choices],
        "total_day": sum(counts.values()),
        "nav": "runs",
    }
    return _render(request, "runs.html", context, fragment="_runs_table.html")


def waterfall(run: Run, steps: list[Step]) -> list[dict[str, Any]]:
    """Each step's bar: offset and width in % of the run's span, with its duration."""
    now = clock.now()
    t0 = run.started_at or run.created_at
    t1 = run.ended_at or now
    for step in steps:
        if step.ended_at and step.ended_at > t1:
            t1 = step.ended_at
    span = max((t1 - t0).total_seconds(), 0.001)
    bars = []
    for step in steps:
        start = step.started_at or t0
        end = step.ended_at or (now if not run.is_finished else t1)
        offset = max(0.0, (start - t0).total_seconds() / span * 100)
        width = max(0.6, (end - start).total_seconds() / span * 100)
        bars.append(
            {
                "step": step,
                "offset": round(min(offset, 99.4), 2),
                "width": round(min(width, 100 - min(offset, 99.4)), 2),
                "duration": format_duration(end - start),
                "start": format_duration(start - t0),
            }
        )
    return bars


@requires("view_runs")
def run_detail(request: HttpRequest, run_id: str) -> HttpResponse:
    # Stored JSON is read as the start of its text and its length (display.stored):
    # the page's time is bounded however large the values and however many steps.
    steps_shown = (
        Step.objects.order_by("position", "id")
        .defer("output", "error")
        .annotate(**display.stored("output", "error"))
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
    related = ("id", "status", "function_id", "created_at")
    context = {
        "run": run,
        "shown": {
            field: display.Stored.of(run, field) for field in ("output", "error", "event__data")
        },
        "bars": waterfall(run, steps),
        "reruns": list(run.reruns.only(*related).order_by("-created_at")[:20]),
        "children": list(run.children.only(*related).order_by("created_at")[:50]),
        "total": format_duration(end - (run.started_at or run.created_at)),
        "queued_for": format_duration((run.started_at or end) - run.created_at),
        "live": run.status not in FINISHED,
        "can_cancel": run.status not in FINISHED,
        "nav": "runs",
    }
    return _render(request, "run.html", context, fragment="_run_body.html")


def _control(action: Any, run_id: str) -> Any:
    """Call a ``durable_flows.control`` action on a run; an unknown run is a 404."""
    try:
        return action(run_id)
    except RunNotFound:
        raise Http404("no such run")


@require_POST
@requires("control_runs")
def run_cancel(request: HttpRequest, run_id: str) -> HttpResponse:
    run = _control(control.cancel, run_id)
    if run.status == RunStatus.CANCELLED:
        _notify(request, "Run cancelled.")
    elif run.cancel_requested and run.status == RunStatus.RUNNING:
        _notify(request, "Cancel requested: the run stops after its current step.")
    else:
        _notify(request, f"The run had already ended ({run.status}).", error=True)
    return redirect("durable_flows:run", run_id=run.pk)


@require_POST
@requires("control_runs")
def run_rerun(request: HttpRequest, run_id: str) -> HttpResponse:
    new_id = _control(control.rerun, run_id)
    _notify(request, f"Started a new run from the same event (rerun of {run_id}).")
    return redirect("durable_flows:run", run_id=new_id)


@require_POST
@requires("control_runs")
def run_retry(request: HttpRequest, run_id: str) -> HttpResponse:
    try:
        run = _control(control.retry, run_id)
    except control.NotRetriable as exc:
        _notify(request, str(exc), error=True)
        return redirect("durable_flows:run", run_id=run_id)
    _notify(request, "Retrying the run from its failed step.")
    return redirect("durable_flows:run", run_id=run.pk)


@requires("view_events")
def events(request: HttpRequest) -> HttpResponse:
    name = _param(request, "name")
    sender_id = _param(request, "sender_id")
    rows = (
        Event.objects.defer("data")
        .annotate(**display.stored("data", head=200))
        .order_by("-received_at", "-id")
    )
    if name:
        rows = rows.filter(name=name)
    if sender_id:
        rows = rows.filter(sender_id=sender_id)
    page = _page(request, rows)
    for event in page["items"]:
        event.data_line = display.one_line(display.Stored.of(event, "data"))
    filters = {"name": name, "sender_id": sender_id}
    context = {"page": page, "filters": filters, "nav": "events"}
    return _render(request, "events.html", context)


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
    return _render(request, "event.html", context, fragment="_event_runs.html")


@requires("view_runs")
def functions(request: HttpRequest) -> HttpResponse:
    since = clock.now() - timedelta(days=1)
    stats: dict[str, dict[str, int]] = {}
    for function_id, status, n in (
        Run.objects.filter(created_at__gte=since)
        .values_list("function_id", "status")
        .annotate(n=Count("id"))
        .values_list("function_id", "status", "n")
    ):
        stats.setdefault(function_id, {})[status] = n
    rows = []
    for function in sorted(registry.all(), key=lambda f: f.id):
        counts = stats.get(function.id, {})
        failed = counts.get(RunStatus.FAILED, 0)
        finished = failed + counts.get(RunStatus.COMPLETED, 0)
        rows.append(
            {
                "function": function.describe(),
                "runs_url": reverse("durable_flows:dashboard")
                + "?"
                + urlencode({"function": function.id}),
                "total": sum(counts.values()),
                "completed": counts.get(RunStatus.COMPLETED, 0),
                "failed": failed,
                "active": sum(counts.get(s, 0) for s in ("queued", "running", "waiting")),
                "failure_rate": (failed / finished * 100) if finished else None,
            }
        )
    return _render(request, "functions.html", {"rows": rows, "nav": "functions"})


class SendEventForm(forms.Form):
    name = forms.CharField(
        max_length=255,
        widget=forms.TextInput(
            attrs={"placeholder": "user/signup", "list": "event-names", "autocomplete": "off"}
        ),
    )
    data = forms.CharField(  # type: ignore[assignment]  # a field, not BaseForm.data
        required=False,
        initial="{}",
        widget=forms.Textarea(attrs={"rows": 10, "spellcheck": "false"}),
        help_text="A JSON object.",
    )
    id = forms.CharField(
        required=False,
        max_length=255,
        label="Id (optional)",
        help_text="The same id within 24 hours is stored once and starts no further runs.",
    )

    def clean_data(self) -> dict[str, Any]:
        text = self.cleaned_data["data"].strip() or "{}"
        try:
            value = parse_json_body(text)
        except ValueError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc}")
        if not isinstance(value, dict):
            raise forms.ValidationError('Must be a JSON object, e.g. {"user_id": 7}.')
        return value


@requires("send_events")
def send_event(request: HttpRequest) -> HttpResponse:
    form = SendEventForm(request.POST or None, initial={"name": request.GET.get("name", "")})
    if request.method == "POST" and form.is_valid():
        event = {"name": form.cleaned_data["name"], "data": form.cleaned_data["data"]}
        if form.cleaned_data["id"]:
            event["id"] = form.cleaned_data["id"]
        try:
            (event_id,) = send([event])
        except EventValidationError as exc:
            form.add_error(None, str(exc))
        else:
            started = Event.objects.get(pk=event_id).runs.count()
            _notify(request, f"Event sent; it started {started} run(s).")
            if permissions.can_view_events(request.user):
                return redirect("durable_flows:event", event_id=event_id)
            return redirect("durable_flows:send-event")
    triggers = sorted({t.event for f in registry.all() for t in f.triggers if hasattr(t, "event")})
    context = {"form": form, "triggers": triggers, "nav": "send"}
    return _render(request, "send.html", context, status=400 if form.errors else 200)
