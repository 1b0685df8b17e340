"""Who may call the API: staff (session or HTTP Basic), per ``API_PERMISSION_CLASSES``;
event-key holders (``Authorization: Bearer <key>``) may only send events."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.utils.module_loading import import_string
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from ..conf import flow_settings
from ..keys import authenticate
from ..models import EventKey


class EventKeyAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer <event key>``; a wrong or revoked key is a 401."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[AnonymousUser, EventKey] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Authorization: Bearer needs exactly one key")
        try:
            raw = header[1].decode()
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("invalid event key")
        key = authenticate(raw)
        if key is None:
            raise exceptions.AuthenticationFailed("invalid or revoked event key")
        return AnonymousUser(), key

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="durable_flows"'


# Basic first: its WWW-Authenticate header makes an anonymous request a 401, not a 403.
# An explicit Authorization header (Basic or Bearer) wins over a session cookie.
AUTHENTICATION_CLASSES = [
    authentication.BasicAuthentication,
    EventKeyAuthentication,
    authentication.SessionAuthentication,
]


def configured_permissions() -> list[permissions.BasePermission]:
    """Instances of the classes named by ``DURABLE_FLOWS["API_PERMISSION_CLASSES"]``."""
    return [
        import_string(path)() if isinstance(path, str) else path()
        for path in flow_settings.API_PERMISSION_CLASSES
    ]


class EventKeyOrConfigured(permissions.BasePermission):
    """A valid event key, or whatever the configured classes allow (staff by default)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if isinstance(request.auth, EventKey):
            return True
        return all(p.has_permission(request, view) for p in configured_permissions())
