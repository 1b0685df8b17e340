"""The admin: read-only records, steps as a timeline, actions that call durable_flows.control."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from durable_flows.keys import authenticate
from durable_flows.models import EventKey, Run
from durable_flows.testing import run_until_idle
from tests.conftest import start
from tests.http_fixtures import PASSWORD, event_key, member, staff

__all__ = ["event_key", "member", "staff"]  # fixtures

pytestmark = pytest.mark.django_db

RUNS = reverse("admin:durable_flows_run_changelist")
EVENTS = reverse("admin:durable_flows_event_changelist")
KEYS = reverse("admin:durable_flows_eventkey_changelist")


@pytest.fixture
def admin_client(client, staff):
    client.force_login(staff)
    return client


def action(client, url: str, name: str, pks: list) -> None:
    response = client.post(url, {"action": name, "_selected_action": pks}, follow=True)
    assert response.status_code == 200


def test_runs_list_filters_and_searches(admin_client):
    done = start("test/one")
    failed = start("test/nonretriable")
    run_until_idle()
    page = admin_client.get(RUNS).content.decode()
    assert done.pk in page and failed.pk in page
    page = admin_client.get(RUNS + "?status__exact=failed").content.decode()
    assert failed.pk in page and done.pk not in page
    page = admin_client.get(RUNS + "?function_id=one-step").content.decode()
    assert done.pk in page and failed.pk not in page
    page = admin_client.get(RUNS + "?q=test/nonretriable").content.decode()
    assert failed.pk in page and done.pk not in page
    page = admin_client.get(RUNS + f"?q={done.pk}").content.decode()
    assert done.pk in page and failed.pk not in page
    page = admin_client.get(RUNS + f"?event__id__exact={done.event_id}").content.decode()
    assert done.pk in page and failed.pk not in page


def test_the_runs_list_does_a_fixed_number_of_queries(admin_client, django_assert_max_num_queries):
    for _ in range(30):
        start("test/one")
    with django_assert_max_num_queries(12):
        assert admin_client.get(RUNS).status_code == 200


def test_a_run_page_shows_its_steps_in_order_with_outputs_and_the_error(admin_client):
    run = start("test/catches")
    run_until_idle()
    page = admin_client.get(reverse("admin:durable_flows_run_change", args=[run.pk]))
    text = page.content.decode()
    assert page.status_code == 200
    assert re.findall(r'field-name">\s*<p>(.*?)</p>', text) == ["doomed", "fallback"]
    assert "ValueError" in text and "flaky failure 2" in text and "Traceback" in text
    assert "used fallback" in text  # a step's output, as JSON
    assert reverse("admin:durable_flows_event_change", args=[run.event_id]) in text
    assert reverse("durable_flows:run", args=[run.pk]) in text
    # Read-only: no save button, no delete link.
    assert 'name="_save"' not in text and "deletelink" not in text


def test_an_event_page_links_the_runs_it_started(admin_client):
    run = start("test/three", order=7)
    page = admin_client.get(reverse("admin:durable_flows_event_change", args=[run.event_id]))
    text = page.content.decode()
    assert reverse("admin:durable_flows_run_change", args=[run.pk]) in text
    assert "three-steps" in text and "&quot;order&quot;: 7" in text
    assert run.event_id in admin_client.get(EVENTS).content.decode()


def test_cancel_and_rerun_actions(admin_client):
    queued = start("test/one")
    action(admin_client, RUNS, "cancel_runs", [queued.pk])
    queued.refresh_from_db()
    assert queued.status == "cancelled"
    action(admin_client, RUNS, "rerun_runs", [queued.pk])
    rerun = Run.objects.get(rerun_of=queued)
    assert rerun.event_id == queued.event_id and rerun.status == "queued"
    run_until_idle()
    rerun.refresh_from_db()
    assert rerun.status == "completed"
    page = admin_client.get(reverse("admin:durable_flows_run_change", args=[rerun.pk]))
    assert reverse("admin:durable_flows_run_change", args=[queued.pk]) in page.content.decode()


def test_records_cannot_be_added_changed_or_deleted(admin_client):
    run = start("test/one")
    assert admin_client.get(reverse("admin:durable_flows_run_add")).status_code == 403
    url = reverse("admin:durable_flows_run_delete", args=[run.pk])
    assert admin_client.post(url, {"post": "yes"}).status_code == 403
    url = reverse("admin:durable_flows_run_change", args=[run.pk])
    admin_client.post(url, {"function_id": "other", "status": "completed"})
    run.refresh_from_db()
    assert (run.function_id, run.status) == ("one-step", "queued")
    assert "delete_selected" not in admin_client.get(RUNS).content.decode()


def test_a_viewer_without_change_permission_cannot_cancel(client):
    viewer = User.objects.create_user("viewer", password=PASSWORD, is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_run"))
    client.force_login(viewer)
    run = start("test/one")
    assert client.get(RUNS).status_code == 200
    assert "cancel_runs" not in client.get(RUNS).content.decode()
    client.post(RUNS, {"action": "cancel_runs", "_selected_action": [run.pk]})
    run.refresh_from_db()
    assert run.status == "queued"


def test_event_keys_are_listed_and_revoked_by_an_action(admin_client, event_key):
    key = EventKey.objects.get()
    page = admin_client.get(KEYS).content.decode()
    assert key.prefix in page and event_key not in page
    action(admin_client, KEYS, "revoke", [key.pk])
    assert authenticate(event_key) is None
    assert EventKey.objects.get().revoked_at is not None


def test_non_staff_are_sent_to_the_login_page(client, member):
    assert client.get(RUNS).status_code == 302
    client.force_login(member)
    assert client.get(RUNS).status_code == 302


def test_a_run_page_offers_cancel_and_rerun_buttons(admin_client):
    run = start("test/one")
    url = reverse("admin:durable_flows_run_change", args=[run.pk])
    text = admin_client.get(url).content.decode()
    assert 'value="cancel_runs"' in text and 'value="rerun_runs"' in text
    admin_client.post(RUNS, {"action": "cancel_runs", "_selected_action": run.pk})
    run.refresh_from_db()
    assert run.status == "cancelled"
    text = admin_client.get(url).content.decode()
    assert 'value="cancel_runs"' not in text and 'value="rerun_runs"' in text


def test_odd_search_terms_are_not_server_errors(admin_client):
    # NUL: a 400 (tests/test_malformed_urls.py tries every admin URL).
    assert admin_client.get(RUNS + "?q=a%00b").status_code == 400
    assert admin_client.get(RUNS + "?function_id=%00").status_code == 400
    assert admin_client.get(RUNS + "?q=%20%20").status_code == 200


def test_workers_are_listed_with_whether_they_are_alive(admin_client):
    from datetime import timedelta

    from django.utils import timezone

    from durable_flows.models import Worker

    Worker.objects.create(name="live-one", pid=1)
    Worker.objects.create(name="gone-one", pid=2, heartbeat_at=timezone.now() - timedelta(hours=1))
    page = admin_client.get(reverse("admin:durable_flows_worker_changelist")).content.decode()
    assert "live-one" in page and "gone-one" in page
    assert page.count("icon-yes.svg") == 1 and page.count("icon-no.svg") == 1


def test_changelists_never_count_past_the_cap(admin_client, monkeypatch):
    from durable_flows.admin import base as flows_admin

    monkeypatch.setattr(flows_admin, "COUNT_LIMIT", 5)
    for _ in range(8):
        start("test/one")
    page = admin_client.get(RUNS).content.decode()
    assert "5 runs" in page and "8 runs" not in page


def test_retry_action_and_links_between_parent_and_invoked_runs(admin_client):
    from tests.models import Ledger

    failed = start("test/gated")
    run_until_idle()
    Ledger.objects.create(key=f"allow-{failed.pk}")
    action(admin_client, RUNS, "retry_runs", [failed.pk])
    run_until_idle()
    failed.refresh_from_db()
    assert failed.status == "completed"

    parent = start("test/parent", child={"n": 2})
    run_until_idle()
    child = Run.objects.get(parent_run=parent)
    parent_page = admin_client.get(reverse("admin:durable_flows_run_change", args=[parent.pk]))
    assert (
        reverse("admin:durable_flows_run_change", args=[child.pk]) in parent_page.content.decode()
    )
    child_page = admin_client.get(reverse("admin:durable_flows_run_change", args=[child.pk]))
    html = child_page.content.decode()
    assert reverse("admin:durable_flows_run_change", args=[parent.pk]) in html
    assert "call-child" in html


def test_a_waiting_runs_page_shows_what_it_waits_for(admin_client):
    run = start("test/wait", user_id=7)
    run_until_idle()
    run.refresh_from_db()
    assert run.status == "waiting"
    html = admin_client.get(reverse("admin:durable_flows_run_change", args=[run.pk])).content
    page = html.decode()
    assert "test/login" in page and "data.user_id" in page
    assert "pending" in page
