"""Stored events, with the runs each one started."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import Http404, HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from .. import display, permissions
from ..models import Event, Run
from .base import ReadOnlyAdmin, ReadOnlyInline, link, raw_json_url, status_badge


class RunInline(ReadOnlyInline):
    model = Run
    fk_name = "event"
    json_fields = ("output", "error")
    fields = ["run_link", "function_id", "run_status", "created_at", "ended_at"]
    readonly_fields = fields  # type: ignore[assignment]  # stubs type `fields` more broadly
    ordering = ["created_at", "id"]

    @admin.display(description="run")
    def run_link(self, run: Run) -> SafeString:
        return link("admin:durable_flows_run_change", run.pk, run.pk)

    @admin.display(description="status")
    def run_status(self, run: Run) -> SafeString:
        return status_badge(run.status)


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ["id", "name", "sender_id", "received_at", "ts", "runs_link"]
    list_filter = ["received_at"]
    search_fields = ["=id", "=name", "=sender_id"]
    search_help_text = "An exact event id, name or sender id."
    ordering = ["-received_at", "-id"]
    fields = ["id", "sender_id", "name", "ts", "received_at", "data_json", "runs_link"]
    readonly_fields = fields  # type: ignore[assignment]  # stubs type `fields` more broadly
    inlines = [RunInline]
    json_fields = ("data",)
    shown_json_fields = json_fields

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        fields = list(super().get_fields(request, obj))
        if not permissions.can_view_runs(request.user):
            fields.remove("runs_link")  # the runs it started need view_run
        return fields

    def get_list_display(self, request: HttpRequest) -> list[Any]:
        shown = list(super().get_list_display(request))
        return shown if permissions.can_view_runs(request.user) else shown[:-1]

    @admin.display(description="data")
    def data_json(self, event: Event) -> SafeString:
        shown = display.Stored.of(event, "data")
        return display.json_block(shown, raw_json_url("event", event.pk, "data"))

    def raw_json(self, request: HttpRequest, event: Event, field: str) -> Any:
        if field != "data":
            raise Http404("no such value")
        return event.data

    @admin.display(description="runs")
    def runs_link(self, event: Event) -> SafeString:
        url = reverse("admin:durable_flows_run_changelist") + f"?event__id__exact={event.pk}"
        return format_html('<a href="{}">runs it started</a>', url)
