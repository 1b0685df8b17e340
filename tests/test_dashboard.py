"""The staff dashboard, through Django's test client (the browser test drives it for real)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse

import durable_flows as df
from durable_flows.models import Event, Run
from durable_flows.testing import run_until_idle
from tests.conftest import start
from tests.http_fixtures import PASSWORD, basic, member, staff

__all__ = ["member", "staff"]  # fixtures

pytestmark = pytest.mark.django_db

PAGES = [
    "/flows/",
    "/flows/events/",
    "/flows/functions/",
    "/flows/events/send/",
    "/flows/workers/",
    "/flows/search/?q=nothing",
]


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


@pytest.mark.parametrize("path", PAGES)
def test_anonymous_visitors_go_to_login_and_non_staff_are_refused(client, member, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    client.force_login(member)
    assert client.get(path).status_code == 403


@pytest.mark.parametrize("path", PAGES)
def test_staff_see_every_page(staff_client, path):
    assert staff_client.get(path).status_code == 200


def test_runs_list_filters_and_its_live_fragment(staff_client):
    done = start("test/one")
    failed = start("test/nonretriable")
    run_until_idle()
    page = staff_client.get("/flows/").content.decode()
    assert done.pk in page and failed.pk in page and 'data-refresh="3000"' in page
    page = staff_client.get("/flows/?status=failed").content.decode()
    assert failed.pk in page and done.pk not in page
    page = staff_client.get("/flows/?function=one-step").content.decode()
    assert done.pk in page and failed.pk not in page
    page = staff_client.get("/flows/?event_name=test/nonretriable").content.decode()
    assert failed.pk in page and done.pk not in page
    fragment = staff_client.get("/flows/?fragment=1").content.decode()
    assert done.pk in fragment and "<html" not in fragment


def test_pages_do_not_count_the_whole_table(staff_client):
    for _ in range(55):
        start("test/one")
    first = staff_client.get("/flows/").content.decode()
    assert len(re.findall(r"data-run=", first)) == 50
    assert "?page=2" in first
    second = staff_client.get("/flows/?page=2").content.decode()
    assert len(re.findall(r"data-run=", second)) == 5 and "?page=3" not in second


def test_a_run_page_has_a_waterfall_of_its_steps_and_the_error(staff_client):
    run = start("test/catches")
    run_until_idle()
    page = staff_client.get(reverse("durable_flows:run", args=[run.pk])).content.decode()
    names = re.findall(r'class="wf-name"><span class="kind[^"]*">[^<]*</span> ([^<]+)</span>', page)
    assert names == ["doomed", "fallback"]
    # One bar per attempt: "doomed" failed twice (retries=1), then "fallback" ran.
    bars = re.findall(r'class="wf-bar bar-(\w+)"[^>]*title="attempt (\d): ([^"]*)"', page)
    assert [(status, n) for status, n, _ in bars] == [
        ("failed", "1"),
        ("failed", "2"),
        ("completed", "1"),
    ]
    assert bars[0][2].endswith("ValueError: flaky failure 1"), bars[0]
    assert bars[1][2].endswith("ValueError: flaky failure 2"), bars[1]
    attempts = re.findall(r'<tr class="attempt"><td>(\d)</td>.*?</tr>', page, re.S)
    assert attempts == ["1", "2"]  # the table of doomed's attempts (open: it failed)
    assert "flaky failure 2" in page and "Traceback" in page
    # A time axis over the bars: five ticks from 0 to the run's span.
    ticks = re.findall(r'<i style="left: ([\d.]+)%">([^<]+)</i>', page)
    assert [at for at, _ in ticks] == ["0.00", "25.00", "50.00", "75.00", "100.00"]
    assert ticks[0][1] == "0 ms" and ticks[-1][1] != "0 ms"
    assert 'data-final="1"' in page and "data-refresh" not in page  # finished: no polling
    assert reverse("durable_flows:event", args=[run.event_id]) in page


def test_an_unfinished_run_page_refreshes_and_offers_cancel(staff_client):
    run = start("test/one")
    page = staff_client.get(reverse("durable_flows:run", args=[run.pk])).content.decode()
    assert "data-refresh" in page and reverse("durable_flows:run-cancel", args=[run.pk]) in page
    fragment = staff_client.get(reverse("durable_flows:run", args=[run.pk]) + "?fragment=1")
    assert "<html" not in fragment.content.decode()
    assert staff_client.get(reverse("durable_flows:run", args=["nope"])).status_code == 404


def test_cancel_and_rerun_are_csrf_protected_posts(staff):
    client = Client(enforce_csrf_checks=True)
    client.login(username=staff.username, password=PASSWORD)
    run = start("test/one")
    cancel = reverse("durable_flows:run-cancel", args=[run.pk])
    rerun = reverse("durable_flows:run-rerun", args=[run.pk])
    confirm = client.get(cancel)  # the confirmation step: a page with a form
    assert confirm.status_code == 200
    assert f'<form method="post" action="{cancel}">' in confirm.content.decode()
    assert "Yes, cancel the run" in confirm.content.decode()
    run.refresh_from_db()
    assert run.status == "queued"  # asking is not cancelling
    assert client.post(cancel).status_code == 403  # no CSRF token
    run.refresh_from_db()
    assert run.status == "queued"
    client.get(reverse("durable_flows:run", args=[run.pk]))
    token = client.cookies["csrftoken"].value
    response = client.post(cancel, {"csrfmiddlewaretoken": token})
    assert response.status_code == 302
    run.refresh_from_db()
    assert run.status == "cancelled"
    response = client.post(rerun, {"csrfmiddlewaretoken": token})
    new = Run.objects.get(rerun_of=run)
    assert response["Location"] == reverse("durable_flows:run", args=[new.pk])


def test_the_send_form_sends_an_event_and_shows_it(staff_client):
    response = staff_client.post(
        "/flows/events/send/", {"name": "test/three", "data": '{"order": 5}', "id": ""}
    )
    event = Event.objects.get(name="test/three")
    assert response.status_code == 302
    assert response["Location"] == reverse("durable_flows:event", args=[event.pk])
    assert event.data == {"order": 5}
    page = staff_client.get(response["Location"]).content.decode()
    assert "three-steps" in page and Run.objects.get(event=event).pk in page


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ({"name": "test/one", "data": "{nope"}, "Not valid JSON"),
        ({"name": "test/one", "data": '{"x": NaN}'}, "Not valid JSON"),
        ({"name": "test/one", "data": "[1, 2]"}, "JSON object"),
        ({"name": "", "data": "{}"}, "required"),
        ({"name": "durable_flows/function.failed", "data": "{}"}, "reserved"),
    ],
)
def test_the_send_form_explains_bad_input_and_stores_nothing(staff_client, data, says):
    response = staff_client.post("/flows/events/send/", data)
    assert response.status_code == 400
    assert says in response.content.decode()
    assert not Event.objects.exists()


def test_functions_page_shows_triggers_counts_and_failure_rate(staff_client):
    start("test/nonretriable")
    start("test/nonretriable")
    run_until_idle()
    page = staff_client.get("/flows/functions/").content.decode()
    card = page[page.index('id="non-retriable"') :]
    card = card[: card.index("</article>")]
    assert "test/nonretriable" in card and "100.0%" in card
    assert "event.data.plan == &#x27;pro&#x27;" in page


def test_odd_query_strings_are_not_server_errors(staff_client):
    for query in ("?page=99999999999999999999", "?page=-3", "?status=nope", "?function=%20"):
        assert staff_client.get("/flows/" + query).status_code == 200
    # NUL: a 400 (tests/test_malformed_urls.py tries every dashboard URL).
    for url in ("/flows/?event=a%00b", "/flows/events/?name=%00", "/flows/runs/a%00b/"):
        assert staff_client.get(url).status_code == 400


def test_an_event_page_refreshes_until_its_runs_have_finished(staff_client):
    run = start("test/one")
    url = reverse("durable_flows:event", args=[run.event_id])
    assert "data-refresh" in staff_client.get(url).content.decode()
    fragment = staff_client.get(url + "?fragment=1").content.decode()
    assert run.pk in fragment and 'data-final="0"' in fragment and "<html" not in fragment
    run_until_idle()
    page = staff_client.get(url).content.decode()
    assert "data-refresh" not in page and "status-completed" in page


def test_staff_by_http_basic_open_the_dashboard_and_wrong_credentials_get_a_401(
    client, staff, member
):
    assert client.get(reverse("durable_flows:dashboard"), **basic(staff)).status_code == 200
    assert client.get(reverse("durable_flows:functions"), **basic(staff)).status_code == 200
    assert client.get(reverse("durable_flows:dashboard"), **basic(member)).status_code == 403
    wrong = {"HTTP_AUTHORIZATION": "Basic " + "c3RhZmY6bm9wZQ=="}  # staff:nope
    response = client.get(reverse("durable_flows:dashboard"), **wrong)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Basic")


# --- what each page says -------------------------------------------------------------


def test_lifecycle_events_are_hidden_unless_asked_for(staff_client):
    run = start("test/one")
    run_until_idle()
    page = staff_client.get("/flows/events/").content.decode()
    assert "test/one" in page and "durable_flows/function.finished" not in page
    shown = staff_client.get("/flows/events/?system=1").content.decode()
    assert "durable_flows/function.finished" in shown and "test/one" in shown
    assert 'name="system" value="1" checked' in shown
    by_name = staff_client.get("/flows/events/?name=durable_flows/function.finished")
    assert run.pk in by_name.content.decode()  # its data names the run


def test_an_events_ts_is_a_utc_datetime_with_the_ms_in_its_title(staff_client):
    (event_id,) = df.send(df.Event(name="test/nothing", data={"n": 1}, ts=1767225600123))
    page = staff_client.get(reverse("durable_flows:event", args=[event_id])).content.decode()
    assert 'title="1767225600123 ms since the epoch">2026-01-01 00:00:00.123 UTC<' in page
    assert "&quot;n&quot;: 1" in page  # the data as pretty JSON


def test_the_functions_page_shows_only_the_options_that_are_set(staff_client):
    page = staff_client.get("/flows/functions/").content.decode()
    card = page[page.index('id="throttled"') :].split("</article>")[0]
    options = dict(re.findall(r'<span class="opt"><b>([^<]+)</b> ([^<]*)</span>', card))
    assert "None" not in card and "{" not in card and "[" not in card
    assert options["retries"].isdigit() and "throttle" in options
    assert "debounce" not in options and "timeouts" not in options


def test_a_failed_row_says_why_and_a_waiting_row_how_long(staff_client):
    failed = start("test/nonretriable")
    sleeping = start("test/sleep", duration="1h")
    run_until_idle()
    page = staff_client.get("/flows/").content.decode()
    row = page[page.index(f'data-run="{failed.pk}"') :].split("</tr>")[0]
    error = Run.objects.get(pk=failed.pk).error
    reason = f"{error['type']}: {error['message'].splitlines()[0]}"
    assert f'<div class="reason" title="{reason}">{reason}</div>' in row
    row = page[page.index(f'data-run="{sleeping.pk}"') :].split("</tr>")[0]
    assert re.search(r"waiting \d+ ms, until \w{3} \d+, \d\d:\d\d:\d\d UTC", row), row
    assert "running" not in row


def test_search_opens_a_run_or_an_event_and_says_when_nothing_matches(staff_client):
    run = start("test/one")
    (event_id,) = df.send(df.Event(name="test/nothing", id="sender-42"))
    response = staff_client.get("/flows/search/", {"q": f"  {run.pk} "})
    assert response["Location"] == reverse("durable_flows:run", args=[run.pk])
    response = staff_client.get("/flows/search/", {"q": run.event_id})
    assert response["Location"] == reverse("durable_flows:event", args=[run.event_id])
    response = staff_client.get("/flows/search/", {"q": "sender-42"})
    assert response["Location"] == reverse("durable_flows:event", args=[event_id])
    missing = staff_client.get("/flows/search/", {"q": "no-such-id"})
    assert (
        missing.status_code == 200 and "No run and no event has the id" in missing.content.decode()
    )
    assert staff_client.get("/flows/search/", {"q": "x" * 5000}).status_code == 200


def test_search_sends_those_who_cannot_read_events_to_the_runs_of_one(client):
    from django.contrib.auth.models import Permission, User

    user = User.objects.create_user("runs-only", password="x", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_run"))
    client.force_login(user)
    run = start("test/one")
    response = client.get("/flows/search/", {"q": run.event_id})
    assert response["Location"] == f"/flows/?event={run.event_id}"


def test_the_runs_page_shows_each_queues_depth_and_lag(staff_client):
    start("test/one")
    start("test/one")
    page = staff_client.get("/flows/").content.decode()
    assert re.search(r'<span class="queue"><b>default</b> 2 due, oldest waited \d+ ms</span>', page)
    run_until_idle()
    assert 'class="queue"' not in staff_client.get("/flows/").content.decode()


def test_the_workers_page_shows_alive_and_dead_workers(staff_client):
    from durable_flows import clock
    from durable_flows.engine import workers
    from durable_flows.models import Worker

    live = workers.register("default", "live-one", ["emails"], 4, ["one-step"])
    dead = workers.register("default", "gone", [], 1, [])
    Worker.objects.filter(pk=dead.pk).update(heartbeat_at=clock.now() - timedelta(minutes=5))
    page = staff_client.get("/flows/workers/").content.decode()
    row = page[page.index(f'data-worker="{live.pk}"') :].split("</tr>")[0]
    assert "alive" in row and ">4<" in row and "emails" in row and ">one-step<" in row
    row = page[page.index(f'data-worker="{dead.pk}"') :].split("</tr>")[0]
    assert "dead" in row and "5m 0s ago" in row
