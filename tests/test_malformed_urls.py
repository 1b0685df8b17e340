"""NUL or invalid UTF-8 anywhere in a URL is a 4xx, never a server error.

On PostgreSQL, NUL in a query is a psycopg DataError: Django's admin answered
``/admin/durable_flows/run/%00/change/`` or ``?status__exact=%00`` with a 500.
Every admin, dashboard and API URL is tried here with bad bytes in each path
segment, each query parameter's value and a parameter's name, signed in and
anonymous; with ``RejectMalformedURLs`` installed every answer is a 400, and
without it the app's own pages still answer 400 or 404.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.contenttypes.models import ContentType
from django.test import Client, override_settings

from durable_flows.keys import create_key
from durable_flows.testing import run_until_idle
from tests.conftest import start

pytestmark = pytest.mark.django_db

BAD = ["%00", "a%00b", "%FF", "%C3%28", "%ED%A0%80"]  # NUL; invalid UTF-8 (a surrogate last)
MIDDLEWARE = "durable_flows.middleware.RejectMalformedURLs"

ADMIN_QUERIES = {
    "run": [
        "q",
        "status__exact",
        "function_id",
        "created_at__gte",
        "event__id__exact",
        "id__exact",
    ],
    "event": ["q", "received_at__gte", "id__exact", "name"],
    "eventkey": ["q", "revoked_at__isnull", "id__exact"],
    "worker": ["q", "id__exact"],
}
ADMIN_COMMON = ["o", "p", "e", "_changelist_filters", "all"]
DASHBOARD = {
    "/flows/": ["status", "function", "event_name", "event", "page", "fragment"],
    "/flows/runs/{id}/": ["fragment"],
    "/flows/events/": ["name", "sender_id", "page"],
    "/flows/events/{id}/": ["fragment"],
    "/flows/events/send/": ["name"],
    "/flows/functions/": [],
}
DASHBOARD_POSTS = ["/flows/runs/{id}/cancel/", "/flows/runs/{id}/rerun/", "/flows/runs/{id}/retry/"]
API = {
    "/flows/api/runs/": ["status", "function_id", "event_name", "event", "page", "page_size"],
    "/flows/api/runs/{id}/": [],
    "/flows/api/events/": ["name", "sender_id", "page"],
    "/flows/api/events/{id}/": [],
    "/flows/api/functions/": ["page"],
    "/flows/api/schema/": ["format"],
}
API_POSTS = [
    "/flows/api/runs/{id}/cancel/",
    "/flows/api/runs/{id}/rerun/",
    "/flows/api/runs/{id}/retry/",
    "/flows/api/events/",
]


def variants(template: str, params: list[str], good_id: str, *, segment=True) -> Iterator[str]:
    """The URL with each bad value in its id, its last segment, each parameter, a name."""
    base = template.replace("{id}", good_id)
    for bad in BAD:
        if "{id}" in template:
            yield template.replace("{id}", bad)
        if segment:
            yield base.rstrip("/") + bad + ("/" if base.endswith("/") else "")
        for param in params:
            yield f"{base}?{param}={bad}"
        yield f"{base}?{bad}=1"


def admin_urls(run_id: str, *, own_only: bool = False) -> Iterator[tuple[str, str]]:
    """The admin pages of the app's models (``own_only``: not the paths that, with a bad
    last segment, fall through to Django's admin catch-all view)."""
    for model, params in ADMIN_QUERIES.items():
        base = f"/admin/durable_flows/{model}/"
        for url in variants(base, params + ADMIN_COMMON, run_id, segment=not own_only):
            yield "GET", url
        for page in ("{id}/change/", "{id}/history/", "{id}/delete/", "{id}/"):
            for url in variants(base + page, [], run_id):
                yield "GET", url
        yield "POST", base + "%00/delete/"
        for bad in BAD:
            yield "GET", base + f"add/?_changelist_filters={bad}"


def django_admin_urls(run_id: str) -> Iterator[tuple[str, str]]:
    """Django's own admin views that touch these models: only the middleware covers them."""
    for model in ("run", "event"):
        ct = ContentType.objects.get(app_label="durable_flows", model=model).pk
        for url in variants(f"/admin/r/{ct}/{{id}}/", [], run_id):
            yield "GET", url
    for url in variants("/admin/durable_flows/", ["x"], run_id):
        yield "GET", url
    for url in variants("/admin/login/", ["next"], run_id):
        yield "GET", url


def dashboard_urls(run_id: str) -> Iterator[tuple[str, str]]:
    for template, params in DASHBOARD.items():
        for url in variants(template, params, run_id):
            yield "GET", url
    for template in DASHBOARD_POSTS:
        for url in variants(template, [], run_id):
            yield "POST", url


def api_urls(run_id: str, key: str) -> Iterator[tuple[str, str]]:
    for template, params in API.items():
        for url in variants(template, params, run_id):
            yield "GET", url
    for template in API_POSTS:
        for url in variants(template, [], run_id):
            yield "POST", url
    for bad in BAD:
        yield "POST", f"/e/{bad}"
        yield "POST", f"/e/{key}?{bad}=1"
        yield "GET", f"/e/{key}{bad}"


def answers(urls: Iterator[tuple[str, str]], *, json: bool = False) -> list[tuple[str, int]]:
    """(request, status) of every URL, signed in as a superuser and anonymous."""
    superuser = User.objects.get_or_create(username="root", is_staff=True, is_superuser=True)[0]
    signed_in, anonymous = Client(), Client()
    signed_in.force_login(superuser)
    seen = []
    for method, url in urls:
        for client in (signed_in, anonymous):
            send = client.get if method == "GET" else client.post
            response = send(url)
            if json and url.startswith(("/flows/api/", "/e/")) and response.status_code == 400:
                assert "json" in response["Content-Type"], url
                assert "Bad request" in response.json()["error"], url
            seen.append((f"{method} {url}", response.status_code))
    return seen


@pytest.fixture
def ids():
    failed = start("test/nonretriable")
    run_until_idle()
    return failed.pk, create_key("k")[1]


INTERFACES = ["admin", "dashboard", "api"]


def urls_of(interface: str, run_id: str, key: str, own_only=False) -> Iterator[tuple[str, str]]:
    if interface == "admin":
        return admin_urls(run_id, own_only=own_only)
    if interface == "dashboard":
        return dashboard_urls(run_id)
    return api_urls(run_id, key)


@pytest.mark.parametrize("interface", [*INTERFACES, "django admin"])
def test_with_the_middleware_every_bad_url_is_a_400(ids, interface):
    assert MIDDLEWARE in settings.MIDDLEWARE
    run_id, key = ids
    urls = django_admin_urls(run_id) if interface == "django admin" else urls_of(interface, *ids)
    seen = answers(urls, json=True)
    assert len(seen) > 50
    assert [(url, status) for url, status in seen if status != 400] == []


@pytest.mark.parametrize("interface", INTERFACES)
def test_without_the_middleware_the_apps_own_pages_still_answer_400_or_404(ids, interface):
    without = [m for m in settings.MIDDLEWARE if m != MIDDLEWARE]
    with override_settings(MIDDLEWARE=without):
        seen = answers(urls_of(interface, *ids, own_only=True), json=True)
    assert [(url, status) for url, status in seen if status not in (400, 404)] == []
    assert {status for _, status in seen} >= {400}


def test_the_issues_examples(client):
    root = User.objects.create_superuser("admin", password="x")
    client.force_login(root)
    for url in (
        "/admin/durable_flows/run/?status__exact=%00",
        "/admin/durable_flows/run/%00/change/",
        "/admin/durable_flows/event/%00/change/",
    ):
        response = client.get(url)
        assert response.status_code == 400, url
        assert b"contains a NUL character" in response.content


def test_good_urls_are_untouched(client):
    run = start("test/one")
    client.force_login(User.objects.create_superuser("admin", password="x"))
    for url in (
        "/flows/?event_name=caf%C3%A9",
        f"/flows/runs/{run.pk}/",
        "/admin/durable_flows/run/?q=%E2%9C%93",
        "/flows/api/events/?name=%F0%9F%A6%84",
    ):
        assert client.get(url).status_code == 200, url


def test_a_project_without_the_middleware_is_warned():
    from durable_flows.checks import check_settings

    without = [m for m in settings.MIDDLEWARE if m != MIDDLEWARE]
    with override_settings(MIDDLEWARE=without):
        assert "durable_flows.W004" in [m.id for m in check_settings()]
    assert "durable_flows.W004" not in [m.id for m in check_settings()]
