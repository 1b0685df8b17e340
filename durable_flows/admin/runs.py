"""Runs with their steps and waits; cancel, rerun and retry are actions that call
``durable_flows.control``."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from .. import clock, control, display, permissions
from ..conf import db_alias
from ..definitions.functions import registry
from ..engine import workers
from ..exceptions import RunNotFound
from ..models import FINISHED, Event, Run, RunStatus, Step, Wait
from ..templatetags.durable_flows import format_duration
from .base import ReadOnlyAdmin, ReadOnlyInline, link, precise, raw_json_url, status_badge


class FunctionFilter(admin.SimpleListFilter):
    """Choices from the registry and the live workers' rows (a worker may run a newer
    flows.py than this web process), not from a DISTINCT over the whole table."""

    title = "function"
    parameter_name = "function_id"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        served = workers.served(db_alias(), clock.now())
        return [(f, f) for f in sorted(set(registry.ids()) | served)]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value() or ""
        return queryset.filter(function_id=value) if value else queryset


class OutcomeColumns:
    """Duration, output and error of a record that has them (a run, a step)."""

    @admin.display(description="duration")
    def duration(self, record: Run | Step) -> str:
        if record.started_at and record.ended_at:
            return format_duration(record.ended_at - record.started_at)
        return ""

    @admin.display(description="output")
    def output_json(self, record: Run | Step) -> SafeString:
        shown = display.Stored.of(record, "output")
        return display.json_block(shown, self._raw_url(record, "output"))

    @admin.display(description="error")
    def error_html(self, record: Run | Step) -> SafeString:
        shown = display.Stored.of(record, "error")
        return display.error_block(shown, self._raw_url(record, "error"))

    @staticmethod
    def _raw_url(record: Run | Step, field: str) -> str:
        if isinstance(record, Step):
            return raw_json_url("run", record.run_id, f"step-{record.pk}-{field}")
        return raw_json_url("run", record.pk, field)


class StepInline(OutcomeColumns, ReadOnlyInline):
    model = Step
    json_fields = shown_json_fields = ("output", "error")
    ordering = ["position", "id"]
    fields = ["position", "name", "kind", "step_status", "attempts", "started", "duration"]
    fields += ["output_json", "error_html"]
    readonly_fields = fields  # type: ignore[assignment]  # stubs type `fields` more broadly

    @admin.display(description="status")
    def step_status(self, step: Step) -> SafeString:
        return status_badge(step.status)

    @admin.display(description="started")
    def started(self, step: Step) -> str:
        return precise(step.started_at)


class WaitInline(ReadOnlyInline):
    """What the run waits for: its wait steps and its armed cancel rules."""

    model = Wait
    ordering = ["created_at", "id"]
    fields = ["kind", "step_name", "event_name", "match", "if_exp", "wait_status", "expires"]
    fields += ["resolved_by"]
    readonly_fields = fields  # type: ignore[assignment]  # stubs type `fields` more broadly

    @admin.display(description="status")
    def wait_status(self, wait: Wait) -> SafeString:
        return status_badge(wait.status)

    @admin.display(description="expires")
    def expires(self, wait: Wait) -> str:
        return precise(wait.expires_at)

    @admin.display(description="resolved by")
    def resolved_by(self, wait: Wait) -> SafeString | str:
        if not wait.event_id:
            return "—"
        return link("admin:durable_flows_event_change", wait.event_id, wait.event_id)


@admin.register(Run)
class RunAdmin(OutcomeColumns, ReadOnlyAdmin):
    # Narrow columns: the list fits 1400 px beside the admin's sidebar and filters.
    list_display = ["id", "function_and_event", "run_status", "created_short", "duration"]
    list_filter = ["status", FunctionFilter, "created_at"]
    search_fields = ["=id", "=function_id", "=event__id", "=event__name"]
    search_help_text = "An exact run id, event id, function id or event name."
    list_select_related = ["event"]
    ordering = ["-created_at", "-id"]
    inlines = [StepInline, WaitInline]
    actions = ["cancel_runs", "rerun_runs", "retry_runs"]
    fields = [
        "id",
        "function_id",
        "run_status",
        "event_link",
        "event_data",
        "rerun_of_link",
        "reruns_links",
        "parent_link",
        "children_links",
        "created",
        "started",
        "ended",
        "duration",
        "output_json",
        "error_html",
        "queue",
        "priority",
        "attempt",
        "available_at",
        "cancel_requested",
        "lease_owner",
        "dashboard_link",
    ]
    readonly_fields = fields  # type: ignore[assignment]  # stubs type `fields` more broadly

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str):
        # Exact matches, each served by an index. An OR that reaches across the
        # join to the event's name would scan the whole table, so a term that is
        # an event name is searched on its own.
        term = search_term.strip()
        if not term:
            return queryset, False
        if Event.objects.filter(name=term).exists():
            return queryset.filter(event_id__in=Event.objects.filter(name=term).values("id")), False
        return queryset.filter(Q(pk=term) | Q(function_id=term) | Q(event_id=term)), False

    @admin.display(description="status", ordering="status")
    def run_status(self, run: Run) -> SafeString:
        return status_badge(run.status)

    @admin.display(description="event", ordering="event__name")
    def event_link(self, run: Run) -> SafeString | str:
        if run.event_id is None:
            return "—"
        return link(
            "admin:durable_flows_event_change", run.event_id, run.event.name if run.event else ""
        )

    @admin.display(description="function / event", ordering="function_id")
    def function_and_event(self, run: Run) -> SafeString:
        if run.event_id is None:
            return format_html("{}", run.function_id)
        return format_html("{}<br><small>{}</small>", run.function_id, self.event_link(run))

    @admin.display(description="event data")
    def event_data(self, run: Run) -> SafeString:
        data = display.Stored.of(run, "event__data") if run.event_id else None
        return display.json_block(data, raw_json_url("run", run.pk, "event"))

    def raw_json(self, request: HttpRequest, run: Run, field: str) -> Any:
        if field in ("output", "error"):
            return getattr(run, field)
        if field == "event" and run.event is not None:
            if not permissions.can_view_events(request.user):
                raise PermissionDenied
            return run.event.data
        step_id, _, step_field = field.removeprefix("step-").partition("-")
        step = run.steps.filter(pk=step_id).first() if step_id.isdigit() else None
        if step is None or step_field not in ("output", "error"):
            raise Http404("no such value")
        return getattr(step, step_field)

    @admin.display(description="rerun of")
    def rerun_of_link(self, run: Run) -> SafeString | str:
        return run_link(run.rerun_of_id)

    @admin.display(description="reruns")
    def reruns_links(self, run: Run) -> SafeString | str:
        return run_links(run.reruns.all())

    @admin.display(description="invoked by")
    def parent_link(self, run: Run) -> SafeString | str:
        if not run.parent_run_id:
            return "—"
        return format_html("{} (step {})", run_link(run.parent_run_id), run.parent_step)

    @admin.display(description="invoked runs")
    def children_links(self, run: Run) -> SafeString | str:
        return run_links(run.children.all())

    @admin.display(description="created", ordering="created_at")
    def created_short(self, run: Run) -> str:
        return timezone.localtime(run.created_at).strftime("%b %d %H:%M:%S")

    @admin.display(description="created at")
    def created(self, run: Run) -> str:
        return precise(run.created_at)

    @admin.display(description="started at")
    def started(self, run: Run) -> str:
        return precise(run.started_at)

    @admin.display(description="ended at")
    def ended(self, run: Run) -> str:
        return precise(run.ended_at)

    @admin.display(description="dashboard")
    def dashboard_link(self, run: Run) -> SafeString:
        try:
            url = reverse("durable_flows:run", args=[run.pk])
        except Exception:  # the dashboard is not mounted
            return format_html("{}", "—")
        return format_html('<a href="{}">Open the step timeline</a>', url)

    json_fields = ("output", "error", "event__data")
    shown_json_fields = json_fields

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("event")

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None
    ):
        run = self.get_object(request, object_id)
        actions = [("rerun_runs", "Rerun")]
        if run is not None and run.status not in FINISHED:
            actions.insert(0, ("cancel_runs", "Cancel"))
        if run is not None and run.status == RunStatus.FAILED:
            actions.append(("retry_runs", "Retry from the failed step"))
        extra_context = {
            **(extra_context or {}),
            "can_control": self.has_control_permission(request),
            "run_actions": actions,
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def has_control_permission(self, request: HttpRequest) -> bool:
        return permissions.can_control_runs(request.user)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        fields = list(super().get_fields(request, obj))
        if not permissions.can_view_events(request.user):
            fields.remove("event_data")  # an event's data needs view_event
        return fields

    @admin.action(description="Cancel selected runs", permissions=["control"])
    def cancel_runs(self, request: HttpRequest, queryset: QuerySet) -> None:
        cancelled = requested = unchanged = 0
        for run_id, status in queryset.values_list("id", "status")[:1000]:
            if status in FINISHED:
                unchanged += 1
                continue
            try:
                run = control.cancel(run_id)
            except RunNotFound:
                continue
            if run.status == "cancelled":
                cancelled += 1
            elif run.cancel_requested:
                requested += 1
        self.message_user(
            request,
            f"Cancelled {cancelled} run(s); {requested} will stop after their current step; "
            f"{unchanged} had already ended.",
            messages.SUCCESS,
        )

    @admin.action(
        description="Rerun selected runs (new runs from the same events)", permissions=["control"]
    )
    def rerun_runs(self, request: HttpRequest, queryset: QuerySet) -> None:
        started = [control.rerun(run_id) for run_id in queryset.values_list("id", flat=True)[:1000]]
        self.message_user(request, f"Started {len(started)} new run(s).", messages.SUCCESS)

    @admin.action(
        description="Retry selected failed runs from their failed step", permissions=["control"]
    )
    def retry_runs(self, request: HttpRequest, queryset: QuerySet) -> None:
        retried = skipped = 0
        for run_id in queryset.values_list("id", flat=True)[:1000]:
            try:
                control.retry(run_id)
                retried += 1
            except (control.NotRetriable, RunNotFound):
                skipped += 1
        self.message_user(
            request,
            f"Retrying {retried} run(s) from their failed step; {skipped} had not failed.",
            messages.SUCCESS,
        )


def run_link(run_id: str | None) -> SafeString | str:
    return link("admin:durable_flows_run_change", run_id, run_id) if run_id else "—"


def run_links(runs: QuerySet) -> SafeString | str:
    """Links to up to 50 related runs, with their status."""
    rows = list(runs.order_by("created_at").values_list("id", "status")[:50])
    if not rows:
        return "—"
    return format_html_join(
        ", ",
        '<a href="{}">{}</a> ({})',
        ((reverse("admin:durable_flows_run_change", args=[pk]), pk, s) for pk, s in rows),
    )
