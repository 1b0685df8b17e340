"""A staff member in a real browser (Playwright driving Debian's Chromium) against a live
server, with a real ``runflows`` worker: send an event, watch the run complete, open its
timeline, rerun it. Screenshots go to test-artifacts/ (gitignored)."""

from __future__ import annotations

import re
import shutil
import signal
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.db import connections
from playwright.sync_api import Page, expect, sync_playwright

import durable_flows as df
from durable_flows.models import Run
from tests.conftest import ROOT
from tests.http_fixtures import PASSWORD

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture
def browser(monkeypatch):
    # Playwright's sync API runs an event loop in this thread; the test's own ORM
    # calls are still plain synchronous code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()
        # The ORM calls made while Playwright runs get a connection of their own
        # (Django's connections are per context): close it, or PostgreSQL cannot
        # drop the test database.
        connections.close_all()


def shot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"dashboard-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def test_staff_send_an_event_watch_it_complete_and_rerun_it(live_server, start_worker, browser):
    User.objects.create_user("ops", password=PASSWORD, is_staff=True, is_superuser=True)
    df.send(df.Event(name="test/catches"))  # a run with a failed step, for the pictures
    worker = start_worker()
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)

    # Anonymous: refused, sent to the login page; the API says 401.
    page.goto(live_server.url + "/flows/")
    expect(page).to_have_url(re.compile(r"/admin/login/\?next=/flows/"))
    assert page.locator("#runs-table").count() == 0
    assert page.request.get(live_server.url + "/flows/api/runs/").status == 401

    page.fill("#id_username", "ops")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page).to_have_url(live_server.url + "/flows/")
    expect(page.locator("h1")).to_have_text("Runs")

    page.click("text=Send event")
    page.fill("#id_name", "test/three")
    page.fill("#id_data", '{"order": 42, "customer": "ada@example.com"}')
    shot(page, "send-form")
    page.click("button[type=submit]")
    expect(page.locator(".messages")).to_contain_text("started 1 run")
    shot(page, "event")

    page.click("table.grid a.mono")  # the run this event started
    run_url = page.url
    # The page refreshes itself until the worker has finished the run.
    expect(page.locator("h1 .status")).to_have_text("completed", timeout=30_000)
    expect(page.locator(".wf-row")).to_have_count(3)
    expect(page.locator(".wf-name")).to_contain_text(["a", "b", "c"])
    expect(page.locator(".wf-bar.bar-completed")).to_have_count(3)
    page.locator(".wf-row summary").first.click()
    expect(page.locator(".wf-row").first.locator("pre.json")).to_be_visible()
    shot(page, "run-timeline")
    original = Run.objects.get(pk=run_url.rstrip("/").rsplit("/", 1)[-1])
    assert original.status == "completed"

    page.click("button:has-text('Rerun')")
    expect(page).not_to_have_url(run_url)
    expect(page.locator(".messages")).to_contain_text("rerun of")
    expect(page.locator("h1 .status")).to_have_text("completed", timeout=30_000)
    rerun = Run.objects.get(rerun_of=original)
    assert rerun.status == "completed" and rerun.event_id == original.event_id
    assert rerun.pk in page.url
    shot(page, "rerun")

    failed = Run.objects.get(function_id="catches")
    page.goto(f"{live_server.url}/flows/runs/{failed.pk}/")
    expect(page.locator("h1 .status")).to_have_text("completed", timeout=30_000)
    expect(page.locator(".wf-row.status-row-failed .traceback")).to_be_visible()
    shot(page, "run-with-failed-step")

    page.goto(live_server.url + "/flows/")
    expect(page.locator("tr[data-run]")).to_have_count(3)
    shot(page, "runs")
    page.goto(live_server.url + "/flows/functions/")
    expect(page.locator("#three-steps")).to_contain_text("test/three")
    shot(page, "functions")
    page.goto(f"{live_server.url}/admin/durable_flows/run/{failed.pk}/change/")
    expect(page.locator(".field-name p")).to_have_text(["doomed", "fallback"])
    shot(page, "admin-run")
    page.goto(f"{live_server.url}/admin/durable_flows/run/")
    expect(page.locator("#result_list tbody tr")).to_have_count(3)
    shot(page, "admin-runs")
    context.close()
    worker.signal(signal.SIGTERM)  # a graceful stop closes its database connection
    assert worker.wait(30) == 0
