"""What every page of the app's admin shares: read-only model admins and inlines,
capped counts, bounded JSON, status badges and links."""

from __future__ import annotations

from typing import Any, cast

from django.contrib import admin
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.safestring import SafeString

from .. import display, permissions
from ..middleware import reject_malformed_urls

COUNT_LIMIT = 10_000


class CappedPaginator(Paginator):
    """Counts at most COUNT_LIMIT rows: a changelist of a million runs never counts them all."""

    @cached_property
    def count(self) -> int:
        try:
            return cast(QuerySet, self.object_list).order_by()[:COUNT_LIMIT].count()
        except (AttributeError, TypeError):
            return len(self.object_list)


def raw_json_url(model: str, pk: Any, field: str) -> str:
    """The admin's URL of a stored JSON value shown (cut short) on its pages."""
    return reverse(f"admin:durable_flows_{model}_json", args=[quote(pk), field])


STATUS_COLOURS = {
    "queued": "#6b7489",
    "running": "#2f7de1",
    "waiting": "#8a4fd6",
    "completed": "#1f9d62",
    "failed": "#dc3b4b",
    "cancelled": "#b36d0c",
    "skipped": "#9aa1b1",
}


def status_badge(status: str) -> SafeString:
    return format_html(
        '<span style="color:{};font-weight:600;white-space:nowrap">● {}</span>',
        STATUS_COLOURS.get(status, "#6b7489"),
        status,
    )


def precise(when: Any) -> str:
    """A timestamp to the millisecond, in the current time zone: steps take milliseconds."""
    if when is None:
        return "—"
    return timezone.localtime(when).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def link(viewname: str, pk: Any, text: Any) -> SafeString:
    return format_html('<a href="{}">{}</a>', reverse(viewname, args=[pk]), text)


class ReadOnlyAdmin(admin.ModelAdmin):
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER  # a count per filter choice is a scan per choice
    paginator = CappedPaginator
    list_per_page = 50

    class Media:
        css = {"all": ["durable_flows/admin.css"]}

    # JSON columns: deferred on every page, read on an object's page as the start of
    # their text and its length (display.stored), so that no page loads them whole.
    json_fields: tuple[str, ...] = ()
    shown_json_fields: tuple[str, ...] = ()

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).defer(*self.json_fields)

    def get_object(self, request: HttpRequest, object_id: str, from_field: Any = None) -> Any:
        queryset = self.get_queryset(request).annotate(**display.stored(*self.shown_json_fields))
        field: Any = self.opts.pk if from_field is None else self.opts.get_field(from_field)
        try:
            return queryset.get(**{field.name: field.to_python(object_id)})
        except (self.model.DoesNotExist, ValidationError, ValueError):
            return None

    def raw_json(self, request: HttpRequest, obj: Any, field: str) -> Any:
        """The stored JSON value ``field`` of ``obj`` (``<id>/json/<field>/``); Http404 if none."""
        raise Http404("no such value")

    def raw_json_view(self, request: HttpRequest, object_id: str, field: str) -> HttpResponse:
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404("no such object")
        if not self.has_view_permission(request, obj):
            raise PermissionDenied
        return display.raw_response(self.raw_json(request, obj, field))

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None
    ) -> HttpResponse:
        with display.page_budget():  # all the JSON on one page: bounded (display.py)
            response = super().change_view(request, object_id, form_url, extra_context)
            if isinstance(response, TemplateResponse):
                response.render()
        return response

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        opts = self.opts
        raw = path(
            "<path:object_id>/json/<str:field>/",
            self.admin_site.admin_view(self.raw_json_view),
            name=f"{opts.app_label}_{opts.model_name}_json",
        )
        urls = [raw, *super().get_urls()]
        # NUL in an id or a filter reaches PostgreSQL as a DataError (a server error)
        # from Django's own views: each page refuses such a URL first.
        for url in urls:
            url.callback = reject_malformed_urls(url.callback)
        return urls


class ReadOnlyInline(admin.TabularInline):
    """Rows shown beside their parent, never added, changed or deleted from here.

    Shown to whoever may read runs (``view_run``): steps and waits are part of a
    run, not models with permissions of their own (durable_flows.permissions)."""

    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return permissions.can_view_runs(request.user)

    json_fields: tuple[str, ...] = ()  # deferred: never loaded whole for a page
    shown_json_fields: tuple[str, ...] = ()  # shown (bounded) from the start of their text

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        rows = super().get_queryset(request).defer(*self.json_fields)
        return rows.annotate(**display.stored(*self.shown_json_fields))

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
