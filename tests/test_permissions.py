"""One permission model for the admin, the dashboard and the API.

The table in docs/security.md is the specification: each of its cells is a test
here, so the documentation and the behaviour cannot drift apart.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from durable_flows.keys import create_key
from durable_flows.models import Event, Run, Signal
from durable_flows.testing import run_until_idle
from tests.conftest import start

pytestmark = pytest.mark.django_db

DOC = Path(__file__).resolve().parent.parent / "docs" / "security.md"
ROLES = ["anonymous", "staff, no permissions", "view only", "full", "event key"]
PERMISSIONS = {
    "staff, no permissions": [],
    "view only": ["view_run", "view_event"],
    "full": ["view_run", "view_event", "change_run", "add_event"],
}
REQUEST = re.compile(r"^(GET|POST) (.+?)(?: action (\w+) on (<[^>]+>))?$")


def permission_table() -> list[tuple[str, str, str, str]]:
    """(interface, request, role, expected) for every cell of the documented table."""
    text = DOC.read_text()
    table = text[text.index("<!-- permission-table -->") : text.index("<!-- /permission-table -->")]
    rows = [line for line in table.splitlines() if line.startswith("|")][2:]
    cells = []
    for row in rows:
        interface, request, *answers = (c.strip() for c in row.strip("|").split("|"))
        assert len(answers) == len(ROLES), row
        for role, expected in zip(ROLES, answers, strict=True):
            cells.append((interface, request.replace("`", ""), role, expected))
    return cells


CELLS = permission_table()


def test_the_table_covers_every_role_of_every_endpoint():
    assert len(CELLS) == 31 * len(ROLES)


def user_with(name: str, codenames: list[str], *, staff: bool = True) -> User:
    user = User.objects.create_user(name, password="x", is_staff=staff)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="durable_flows", codename__in=codenames)
    )
    return user


def client_for(role: str) -> Client:
    client = Client()
    if role == "event key":
        client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {create_key('perm')[1]}"
    elif role != "anonymous":
        client.force_login(user_with(role.replace(" ", "-").replace(",", ""), PERMISSIONS[role]))
    return client


def effect_of(path: str, action: str | None, run: Run, failed: Run) -> Callable[[], bool]:
    """Whether the request's action happened, checked afterwards."""
    kind = action or path
    if "cancel" in kind:
        return lambda: Run.objects.get(pk=run.pk).status == "cancelled"
    if "rerun" in kind:
        return lambda: Run.objects.filter(rerun_of__in=[run, failed]).exists()
    if "retry" in kind:
        return lambda: Run.objects.get(pk=failed.pk).status != "failed"
    if "events" in kind:
        return lambda: Event.objects.filter(name="test/by-permission").exists()
    if "signal" in kind:
        return lambda: Signal.objects.filter(run_id=run.pk, name="test/by-permission").exists()
    raise AssertionError(f"no effect known for {path}")


@pytest.mark.parametrize(
    ("interface", "request_text", "role", "expected"),
    CELLS,
    ids=[f"{i} {r} [{role}]" for i, r, role, _ in CELLS],
)
def test_each_cell_of_the_permission_table(interface, request_text, role, expected):
    failed = start("test/nonretriable")
    run_until_idle()
    run = start("test/one")
    assert Run.objects.get(pk=failed.pk).status == "failed"
    method, path, action, target = REQUEST.match(request_text).groups()
    objects = {"<run>": run.pk, "<failed run>": failed.pk, "<event>": run.event_id}
    for placeholder, value in objects.items():
        path = path.replace(placeholder, value)
    client = client_for(role)

    if method == "GET":
        response = client.get(path)
        happened = None
    else:
        happened = effect_of(path, action, run, failed)
        if action:
            body = {"action": action, "_selected_action": [objects[target]]}
            response = client.post(path, body)
        elif interface == "api" and path.endswith(("/events/", "/signal/")):
            body = json.dumps({"name": "test/by-permission"})
            response = client.post(path, body, content_type="application/json")
        else:
            response = client.post(path, {"name": "test/by-permission", "data": "{}"})

    location = response.get("Location", "")
    if expected == "login":
        assert response.status_code == 302 and location.startswith("/admin/login/"), location
    elif expected == "done":
        assert response.status_code in (200, 302) and not location.startswith("/admin/login/")
    elif expected == "refused":
        assert response.status_code in (200, 403) and not location.startswith("/admin/login/")
    else:
        assert response.status_code == int(expected), response.content[:300]
    if happened is not None:
        assert happened() == (expected == "done" or expected.startswith("2"))


# --- beyond the table ------------------------------------------------------------------


def test_view_run_alone_reads_runs_but_not_events_nor_a_runs_event_data():
    run = start("test/three", secret="s3cr3t")
    client = Client()
    client.force_login(user_with("runs-only", ["view_run"]))
    for url in (f"/flows/runs/{run.pk}/", f"/admin/durable_flows/run/{run.pk}/change/"):
        page = client.get(url)
        assert page.status_code == 200 and "s3cr3t" not in page.content.decode(), url
    assert client.get(f"/flows/api/runs/{run.pk}/").status_code == 200
    for url in (
        "/flows/events/",
        f"/flows/events/{run.event_id}/",
        "/flows/api/events/",
        "/admin/durable_flows/event/",
    ):
        assert client.get(url).status_code == 403, url


def test_view_event_alone_reads_an_event_without_the_runs_it_started():
    run = start("test/three", order=1)
    client = Client()
    client.force_login(user_with("events-only", ["view_event"]))
    api = client.get(f"/flows/api/events/{run.event_id}/").json()
    assert api["data"] == {"order": 1} and "runs" not in api
    for url in (f"/flows/events/{run.event_id}/", f"/admin/durable_flows/event/{run.event_id}/"):
        page = client.get(url, follow=True)
        assert page.status_code == 200 and run.pk not in page.content.decode(), url
    for url in ("/flows/", "/flows/functions/", "/flows/api/runs/", "/admin/durable_flows/run/"):
        assert client.get(url).status_code == 403, url


def test_the_answer_names_the_missing_permission():
    run = start("test/one")
    client = Client()
    client.force_login(user_with("viewer", ["view_run"]))
    response = client.post(f"/flows/api/runs/{run.pk}/cancel/")
    assert response.status_code == 403
    assert response.json()["error"] == "This needs the durable_flows.change_run permission."
    page = client.post(f"/flows/runs/{run.pk}/cancel/")
    assert page.status_code == 403 and b"durable_flows.change_run" in page.content


def test_permissions_without_staff_status_open_nothing():
    run = start("test/one")
    client = Client()
    client.force_login(user_with("not-staff", PERMISSIONS["full"], staff=False))
    assert client.get("/flows/").status_code == 403
    assert client.get("/flows/api/runs/").status_code == 403
    assert client.get("/admin/durable_flows/run/").status_code == 302  # the admin's login
    client.post(f"/flows/api/runs/{run.pk}/cancel/")
    assert Run.objects.get(pk=run.pk).status == "queued"


def test_a_view_only_run_page_offers_no_controls():
    run = start("test/one")
    client = Client()
    client.force_login(user_with("looker", PERMISSIONS["view only"]))
    page = client.get(f"/flows/runs/{run.pk}/").content.decode()
    assert "/cancel/" not in page and "/rerun/" not in page
    assert "/flows/events/send/" not in page  # no "Send event" link either
