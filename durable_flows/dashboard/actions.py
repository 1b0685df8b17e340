"""The views that change something: cancel, rerun and retry a run (through
``durable_flows.control``, as the admin does), and the form that sends an event."""

from __future__ import annotations

from typing import Any

from django import forms
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_http_methods, require_POST

from .. import control, permissions
from ..definitions.functions import registry
from ..definitions.values import parse_json_body
from ..events import send
from ..exceptions import EventValidationError, RunNotFound
from ..models import FINISHED, Event, Run, RunStatus
from .common import notify, render_page, requires


def _control(action: Any, run_id: str) -> Any:
    """Call a ``durable_flows.control`` action on a run; an unknown run is a 404."""
    try:
        return action(run_id)
    except RunNotFound:
        raise Http404("no such run")


@require_http_methods(["GET", "POST"])
@requires("control_runs")
def run_cancel(request: HttpRequest, run_id: str) -> HttpResponse:
    """GET: a page that asks to confirm (no JavaScript needed); POST: cancel."""
    if request.method == "GET":
        run = Run.objects.filter(pk=run_id).only("id", "function_id", "status").first()
        if run is None:
            raise Http404("no such run")
        context = {"run": run, "ended": run.status in FINISHED, "nav": "runs"}
        return render_page(request, "cancel.html", context)
    run = _control(control.cancel, run_id)
    if run.status == RunStatus.CANCELLED:
        notify(request, "Run cancelled.")
    elif run.cancel_requested and run.status == RunStatus.RUNNING:
        notify(request, "Cancel requested: the run stops after its current step.")
    else:
        notify(request, f"The run had already ended ({run.status}).", error=True)
    return redirect("durable_flows:run", run_id=run.pk)


@require_POST
@requires("control_runs")
def run_rerun(request: HttpRequest, run_id: str) -> HttpResponse:
    new_id = _control(control.rerun, run_id)
    notify(request, f"Started a new run from the same event (rerun of {run_id}).")
    return redirect("durable_flows:run", run_id=new_id)


@require_POST
@requires("control_runs")
def run_retry(request: HttpRequest, run_id: str) -> HttpResponse:
    try:
        run = _control(control.retry, run_id)
    except control.NotRetriable as exc:
        notify(request, str(exc), error=True)
        return redirect("durable_flows:run", run_id=run_id)
    notify(request, "Retrying the run from its failed step.")
    return redirect("durable_flows:run", run_id=run.pk)


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
            for field, messages in exc.fields.items():
                form.add_error("data", [f"{field}: {message}" for message in messages])
        else:
            started = Event.objects.get(pk=event_id).runs.count()
            notify(request, f"Event sent; it started {started} run(s).")
            if permissions.can_view_events(request.user):
                return redirect("durable_flows:event", event_id=event_id)
            return redirect("durable_flows:send-event")
    triggers = sorted({t.event for f in registry.all() for t in f.triggers if hasattr(t, "event")})
    context = {"form": form, "triggers": triggers, "nav": "send"}
    return render_page(request, "send.html", context, status=400 if form.errors else 200)
