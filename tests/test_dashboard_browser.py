"""A staff member in a real browser (Playwright driving Debian's Chromium) against a live
server, with a real ``runflows`` worker: send an event, watch the run complete, open its
timeline, rerun it. Screenshots go to test-artifacts/ (gitignored)."""

from __future__ import annotations

import re
import shutil
import signal
from pathlib import Path
from typing import Any

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


def signed_in(context: Any, url: str) -> Page:
    """A page of ``context`` signed in as "ops", on the runs list."""
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(url + "/admin/login/?next=/flows/")
    page.fill("#id_username", "ops")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("h1")).to_have_text("Runs")
    return page


def no_horizontal_scroll(page: Page, width: int) -> None:
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, (page.url, scroll)


def test_workers_search_lifecycle_toggle_attempts_cancel_and_a_narrow_screen(
    live_server, start_worker, browser
):
    User.objects.create_user("ops", password=PASSWORD, is_staff=True, is_superuser=True)
    (retried,) = df.send(df.Event(name="test/catches"))  # a step that failed twice
    (failing,) = df.send(df.Event(name="test/nonretriable"))
    (sleeping,) = df.send(df.Event(name="test/sleep", data={"duration": "1h"}))
    worker = start_worker()
    retried_run, failed_run, sleeping_run = (
        Run.objects.get(event_id=e) for e in (retried, failing, sleeping)
    )
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = signed_in(context, live_server.url)

    # A failed row says why; a sleeping one that it is waiting, not running.
    failed_row = page.locator(f'tr[data-run="{failed_run.pk}"]')
    expect(failed_row.locator(".reason")).to_contain_text("NonRetriableError", timeout=30_000)
    sleeping_row = page.locator(f'tr[data-run="{sleeping_run.pk}"]')
    expect(sleeping_row).to_contain_text(re.compile(r"waiting .*, until .* UTC"))
    shot(page, "runs-reasons")

    # Each attempt of the retried step is a bar, under a time axis.
    page.goto(f"{live_server.url}/flows/runs/{retried_run.pk}/")
    expect(page.locator("h1 .status")).to_have_text("completed")
    doomed = page.locator(".wf-row").first
    expect(doomed.locator(".wf-bar")).to_have_count(2)
    expect(doomed.locator("tr.attempt")).to_have_count(2)
    expect(doomed.locator("tr.attempt").first).to_contain_text("ValueError: flaky failure 1")
    expect(page.locator(".wf-axis i")).to_have_count(5)
    expect(page.locator(".wf-axis i").first).to_have_text("0 ms")
    shot(page, "run-attempts")

    # The workers page: the live worker, its threads and functions.
    page.click("nav >> text=Workers")
    row = page.locator("tr[data-worker]")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("alive")
    expect(row.locator(".fns")).to_contain_text("catches")
    shot(page, "workers")

    # One search box: a run id opens the run, an event id the event.
    page.fill("header .search input", sleeping_run.pk)
    page.press("header .search input", "Enter")
    expect(page).to_have_url(f"{live_server.url}/flows/runs/{sleeping_run.pk}/")
    page.fill("header .search input", failing)
    page.press("header .search input", "Enter")
    expect(page).to_have_url(f"{live_server.url}/flows/events/{failing}/")

    # Lifecycle events are hidden until asked for.
    page.goto(live_server.url + "/flows/events/")
    expect(page.locator("table.grid")).not_to_contain_text("durable_flows/function.")
    page.check("input[name=system]")
    page.click("button:has-text('Filter')")
    expect(page.locator("table.grid")).to_contain_text("durable_flows/function.finished")
    shot(page, "events-lifecycle")

    # Cancel asks first; "No" keeps the run, "Yes" cancels it and its sleep.
    page.goto(f"{live_server.url}/flows/runs/{sleeping_run.pk}/")
    page.click("a.button:has-text('Cancel')")
    expect(page.locator("h1")).to_have_text("Cancel this run?")
    shot(page, "cancel-confirm")
    page.click("text=No, keep it")
    assert Run.objects.get(pk=sleeping_run.pk).status == "waiting"
    page.click("a.button:has-text('Cancel')")
    page.click("button:has-text('Yes, cancel the run')")
    expect(page.locator("h1 .status")).to_have_text("cancelled")
    expect(page.locator(".wf-row").nth(1).locator(".wf-bar.bar-cancelled")).to_have_count(1)
    assert Run.objects.get(pk=sleeping_run.pk).steps.get(name="nap").status == "cancelled"

    # The admin's runs list fits 1400 px.
    page.goto(f"{live_server.url}/admin/durable_flows/run/")
    expect(page.locator("#result_list tbody tr")).to_have_count(3)
    no_horizontal_scroll(page, 1400)
    results = page.locator("#changelist .results")  # it scrolls, rather than the page
    assert results.evaluate("e => e.scrollWidth <= e.clientWidth"), results.evaluate(
        "e => [e.scrollWidth, e.clientWidth]"
    )
    shot(page, "admin-runs-1400")
    context.close()

    # A phone: every page fits 420 px without scrolling sideways.
    narrow = browser.new_context(viewport={"width": 420, "height": 860})
    phone = signed_in(narrow, live_server.url)
    for name, path in [
        ("runs", "/flows/"),
        ("run", f"/flows/runs/{retried_run.pk}/"),
        ("events", "/flows/events/"),
        ("event", f"/flows/events/{failing}/"),
        ("functions", "/flows/functions/"),
        ("workers", "/flows/workers/"),
        ("send", "/flows/events/send/"),
        ("cancel", f"/flows/runs/{sleeping_run.pk}/cancel/"),
    ]:
        phone.goto(live_server.url + path)
        expect(phone.locator("main h1")).to_be_visible()
        no_horizontal_scroll(phone, 420)
        shot(phone, f"420-{name}")
    narrow.close()
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0
