"""Who may call the API: whoever ``API_PERMISSION_CLASSES`` allows (staff, by session or
HTTP Basic, by default) and holds the model permission of the endpoint, the same as in
the admin and the dashboard (``durable_flows.permissions``); event-key holders
(``Authorization: Bearer <key>``) may only send events."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.utils.module_loading import import_string
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from .. import permissions as flow_permissions
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


class ModelPermission(permissions.BasePermission):
    """The model permission of the endpoint: ``view.permission_rules`` maps its action
    (``list``, ``cancel``...; ``None`` for a plain view) to a rule of
    ``durable_flows.permissions``."""

    def has_permission(self, request: Request, view: Any) -> bool:
        rules = view.permission_rules
        rule = rules.get(getattr(view, "action", None), rules.get(None))
        if flow_permissions.allowed(request.user, rule):
            return True
        self.message = f"This needs the {flow_permissions.needed(rule)} permission."
        return False


def user_permissions() -> list[permissions.BasePermission]:
    """What a signed-in user needs: the configured classes, then the model permission."""
    return [*configured_permissions(), ModelPermission()]


class EventKeyOrUser(permissions.BasePermission):
    """A valid event key, or a user as ``user_permissions()`` allows."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if isinstance(request.auth, EventKey):
            return True
        for permission in user_permissions():
            if not permission.has_permission(request, view):
                self.message = getattr(permission, "message", None)
                return False
        return True
