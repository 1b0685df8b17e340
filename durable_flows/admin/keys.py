"""Event keys: listed by prefix, never shown whole; revoking is an action."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from .. import keys
from ..models import EventKey
from .base import ReadOnlyAdmin


@admin.register(EventKey)
class EventKeyAdmin(ReadOnlyAdmin):
    list_display = ["name", "prefix", "created_at", "last_used_at", "revoked_at", "active"]
    list_filter = ["revoked_at"]
    search_fields = ["name", "prefix"]
    fields = ["name", "prefix", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = fields  # type: ignore[assignment]  # stubs type `fields` more broadly
    actions = ["revoke"]

    @admin.display(boolean=True)
    def active(self, key: EventKey) -> bool:
        return key.is_active

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("durable_flows.change_eventkey")

    @admin.action(description="Revoke selected event keys", permissions=["revoke"])
    def revoke(self, request: HttpRequest, queryset: QuerySet) -> None:
        revoked = keys.revoke(queryset)
        self.message_user(request, f"Revoked {revoked} event key(s).", messages.SUCCESS)
