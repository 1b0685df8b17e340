"""What every dashboard view shares: the permission check, filters, paging, rendering."""

from __future__ import annotations

import base64
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.apps import apps
from django.contrib.auth import authenticate
from django.contrib.auth.views import redirect_to_login
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse

from .. import display, permissions
from ..middleware import bad_url_response, url_problem

PAGE_SIZE = 50


View = Callable[..., HttpResponse]


def requires(rule: str) -> Callable[[View], View]:
    """Staff holding the permission of ``rule`` (``durable_flows.permissions``), as in the
    admin, signed in by session or by HTTP Basic (as the API): anonymous visitors go to
    the admin's login page, wrong Basic credentials get a 401, anyone else a 403."""

    def decorate(view: View) -> View:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            problem = url_problem(request)
            if problem:  # NUL or invalid UTF-8 can name nothing; PostgreSQL refuses NUL
                return bad_url_response(request, problem)
            user: Any = request.user
            if not user.is_authenticated and _basic_credentials(request) is not None:
                user = _basic_user(request)
                if user is None:
                    response = HttpResponse("Wrong user name or password.", status=401)
                    response["WWW-Authenticate"] = 'Basic realm="durable_flows"'
                    return response
                request.user = user
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


def _basic_credentials(request: HttpRequest) -> str | None:
    """The encoded credentials of an ``Authorization: Basic`` header, or None."""
    scheme, _, value = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    return value.strip() if scheme.lower() == "basic" else None


def _basic_user(request: HttpRequest) -> Any | None:
    """The active user those credentials name, or None."""
    try:
        decoded = base64.b64decode(_basic_credentials(request) or "", validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    username, _, password = decoded.partition(":")
    user = authenticate(request, username=username, password=password)
    return user if user is not None and user.is_active else None


def param(request: HttpRequest, name: str) -> str:
    """A filter value (NUL never gets here: ``requires`` answers 400 to it)."""
    return request.GET.get(name, "").strip()


def notify(request: HttpRequest, text: str, *, error: bool = False) -> None:
    if apps.is_installed("django.contrib.messages"):
        from django.contrib import messages

        (messages.error if error else messages.success)(request, text)


def paginate(request: HttpRequest, rows: QuerySet) -> dict[str, Any]:
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


def render_page(
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
