"""Hostile payloads cannot make huge staff pages.

A 64 KB event of arrays nested 800 deep, pretty-printed, made a 51.5 MB page.
Every page that shows stored JSON (an event's data, a run's input, output and
error, its steps' outputs and errors) prints a bounded amount of it, folds deep
levels, cuts long strings, and links to the raw JSON, which is served whole.
"""

from __future__ import annotations

import json
import time

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

import durable_flows as df
from durable_flows import display
from durable_flows.models import Run
from durable_flows.testing import run_until_idle

pytestmark = pytest.mark.django_db

PAGE_LIMIT = 512 * 1024  # bytes: the JSON budget (256 KiB) plus the page around it
TIME_LIMIT = 3.0  # seconds, generous for a shared machine: the bounded page takes ~0.1 s


def nested(depth: int) -> list:
    value: list = [0]
    for _ in range(depth - 1):
        value = [value]
    return value


def hostile() -> dict:
    """About 64 KB: arrays nested 800 deep, markup to escape, a long string."""
    return {
        "deep": [nested(800) for _ in range(36)],
        "html": "<script>alert(1)</script>" * 200,
        "long": "x" * 3000,
    }


@pytest.fixture
def runs(client):
    payload = hostile()
    assert 60_000 < len(json.dumps(payload)) < 70_000
    ok, bad = (
        df.send(df.Event(name="test/echo", data={"payload": payload, "steps": 12, "fail": fail}))[0]
        for fail in (False, True)
    )
    run_until_idle()
    completed = Run.objects.get(event_id=ok)
    failed = Run.objects.get(event_id=bad)
    assert (completed.status, failed.status) == ("completed", "failed")
    assert completed.steps.count() == 12 and completed.output == payload
    client.force_login(User.objects.create_superuser("root", password="x"))
    return completed, failed


def pages(completed: Run, failed: Run) -> list[str]:
    urls = []
    for run in (completed, failed):
        urls += [
            reverse("admin:durable_flows_run_change", args=[run.pk]),
            reverse("admin:durable_flows_event_change", args=[run.event_id]),
            reverse("durable_flows:run", args=[run.pk]),
            reverse("durable_flows:run", args=[run.pk]) + "?fragment=1",
            reverse("durable_flows:event", args=[run.event_id]),
        ]
    return urls + [
        reverse("admin:durable_flows_run_changelist"),
        reverse("admin:durable_flows_event_changelist"),
        reverse("durable_flows:dashboard"),
        reverse("durable_flows:events"),
        reverse("durable_flows:events") + "?system=1",
        reverse("durable_flows:functions"),
        reverse("durable_flows:workers"),
        reverse("durable_flows:run-cancel", args=[completed.pk]),
        reverse("durable_flows:search") + "?q=" + "%3Cscript%3Ealert(1)%3C/script%3E" * 8,
    ]


def test_every_page_showing_a_hostile_payload_stays_small_and_fast(client, runs):
    for url in pages(*runs):
        started = time.monotonic()
        response = client.get(url)
        elapsed = time.monotonic() - started
        page = response.content.decode()
        assert response.status_code == 200, url
        assert len(response.content) < PAGE_LIMIT, (url, len(response.content))
        assert elapsed < TIME_LIMIT, (url, elapsed)
        assert "<script>alert" not in page, url  # escaped, never markup


def test_what_is_cut_links_to_the_raw_json_which_is_whole(client, runs):
    completed, failed = runs
    admin_page = client.get(reverse("admin:durable_flows_run_change", args=[completed.pk]))
    dashboard_page = client.get(reverse("durable_flows:run", args=[completed.pk]))
    for page in (admin_page, dashboard_page):
        assert b"Cut short" in page.content and b"Raw JSON" in page.content
    step = completed.steps.first()
    error_step = failed.steps.get(name="explode")
    raw = {
        f"/admin/durable_flows/run/{completed.pk}/json/output/": completed.output,
        f"/admin/durable_flows/run/{completed.pk}/json/event/": completed.event.data,
        f"/admin/durable_flows/run/{completed.pk}/json/step-{step.pk}-output/": step.output,
        f"/admin/durable_flows/run/{failed.pk}/json/error/": failed.error,
        f"/admin/durable_flows/event/{completed.event_id}/json/data/": completed.event.data,
        f"/flows/runs/{completed.pk}/?json=output": completed.output,
        f"/flows/runs/{completed.pk}/?json=event": completed.event.as_dict(),
        f"/flows/runs/{completed.pk}/?json=output&step={step.pk}": step.output,
        f"/flows/runs/{failed.pk}/?json=error&step={error_step.pk}": error_step.error,
        f"/flows/events/{completed.event_id}/?json=data": completed.event.data,
    }
    for url, value in raw.items():
        response = client.get(url)
        assert response.status_code == 200, url
        assert response["Content-Type"] == "application/json", url
        assert response["X-Content-Type-Options"] == "nosniff"
        assert json.loads(response.content) == value, url
    for url in (
        f"/flows/runs/{completed.pk}/?json=nope",
        f"/flows/runs/{completed.pk}/?json=output&step=0",
        f"/admin/durable_flows/run/{completed.pk}/json/nope/",
        f"/admin/durable_flows/run/{completed.pk}/json/step-0-output/",
    ):
        assert client.get(url).status_code == 404, url


def test_a_small_but_deep_value_is_folded_past_max_depth(client):
    client.force_login(User.objects.create_superuser("root", password="x"))
    (event_id,) = df.send(df.Event(name="nobody/listens", data={"deep": nested(300)}))
    for url in (f"/flows/events/{event_id}/", f"/admin/durable_flows/event/{event_id}/change/"):
        page = client.get(url).content.decode()
        assert "[… 1 items]" in page and "Cut short" in page, url
        assert page.count("[\n") == display.MAX_DEPTH - 1, url  # printed levels, then folded


def test_the_raw_json_needs_the_pages_permissions(client, runs):
    from django.contrib.auth.models import Permission

    completed, _ = runs
    viewer = User.objects.create_user("runs-only", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_run"))
    client.force_login(viewer)
    assert client.get(f"/flows/runs/{completed.pk}/?json=output").status_code == 200
    assert client.get(f"/flows/runs/{completed.pk}/?json=event").status_code == 403
    assert client.get(f"/admin/durable_flows/run/{completed.pk}/json/event/").status_code == 403
    assert client.get(f"/flows/events/{completed.event_id}/?json=data").status_code == 403
    client.logout()
    response = client.get(f"/admin/durable_flows/run/{completed.pk}/json/output/")
    assert response.status_code == 302  # to the admin's login


def test_one_value_is_bounded_and_deep_levels_fold():
    block = display.json_block({"deep": nested(800), "big": ["y" * 100] * 5000}, "/raw")
    assert len(block.encode()) < display.VALUE_BYTES + 512
    assert "[… 1 items]" in block and 'href="/raw"' in block
    small = display.json_block({"a": [1, {"b": "<i>"}]}, "/raw")
    assert small == (
        '<pre class="json">{\n  &quot;a&quot;: [\n    1,\n    {\n'
        "      &quot;b&quot;: &quot;&lt;i&gt;&quot;\n    }\n  ]\n}</pre>"
    )


def test_a_page_shares_one_budget():
    value = ["z" * 1000] * 200  # about 200 KB printed
    with display.page_budget(total=100 * 1024):
        first = display.json_block(value, "/1")
        second = display.json_block(value, "/2")
        third = display.json_block(value, "/3")
    assert len(first) < display.VALUE_BYTES + 512 and "Cut short" in first
    assert len(second) < 100 * 1024 - display.VALUE_BYTES + 512 and "Cut short" in second
    assert third.startswith('<pre class="json">…</pre>') and 'href="/3"' in third
    total = sum(len(block.encode()) for block in (first, second, third))
    assert total < 100 * 1024 + 2048
