"""Web and workers that know different functions say so: a ``runflows`` worker records
the functions it serves, and a queued run of a function no live worker serves is
flagged on the dashboard, in the API and in the workers' log."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

import durable_flows as df
from durable_flows import clock
from durable_flows.definitions.functions import registry
from durable_flows.engine import workers
from durable_flows.models import Run, Worker
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def added_after_the_workers_started():
    """A function the web process defines and no worker does (flows.py changed, the
    web process restarted, the workers not yet)."""

    @df.function(id="added-later", trigger=df.TriggerEvent(event="test/added-later"))
    def added_later(ctx: df.Context) -> str:
        return "done"

    yield added_later
    registry.remove("added-later")


def test_a_worker_records_its_functions_and_a_run_no_worker_serves_is_flagged(
    start_worker, added_after_the_workers_started, admin_user
):
    worker = start_worker()
    wait_until(lambda: Worker.objects.filter(pid=worker.pid).exists(), timeout=30)
    row = Worker.objects.get(pid=worker.pid)
    known = sorted(set(registry.ids()) - {"added-later"})
    assert row.functions == known  # what the process defines, not the web process

    (served_event,) = df.send(df.Event(name="test/one"))
    (event_id,) = df.send(df.Event(name="test/added-later"))
    served = Run.objects.get(event_id=served_event)
    stuck = Run.objects.get(event_id=event_id)
    wait_until(lambda: Run.objects.get(pk=served.pk).status == "completed", timeout=30)
    assert workers.unserved_queued("default", clock.now()) == {"added-later": 1}

    # The worker's log says so, once it looks (at its first heartbeat, then every minute).
    line = "1 run(s) of added-later are queued; no worker serves added-later"
    wait_until(lambda: line in worker.output(), timeout=30)
    assert worker.output().count(line) == 1

    client = Client()
    client.force_login(admin_user)
    listing = client.get(reverse("durable_flows:dashboard")).content.decode()
    row_html = listing[listing.index(f'data-run="{stuck.pk}"') :].split("</tr>")[0]
    assert "no worker serves this function" in row_html
    served_html = listing[listing.index(f'data-run="{served.pk}"') :].split("</tr>")[0]
    assert "no worker serves" not in served_html
    page = client.get(reverse("durable_flows:run", args=[stuck.pk])).content.decode()
    assert "No live worker executes <b>added-later</b>" in page
    assert Run.objects.get(pk=stuck.pk).status == "queued"

    api = client.get("/flows/api/runs/").json()["results"]
    flags = {run["id"]: run["unserved"] for run in api}
    assert flags[stuck.pk] is True and flags[served.pk] is False
    assert client.get(f"/flows/api/runs/{stuck.pk}/").json()["unserved"] is True

    # The workers page lists the worker, alive, with what it serves.
    workers_page = client.get(reverse("durable_flows:workers")).content.decode()
    assert row.pk in workers_page and "alive" in workers_page
    assert "<b>1</b> run(s) of <b>added-later</b> are queued" in workers_page


def test_functions_known_only_to_a_live_worker_are_listed(admin_client):
    # A worker deployed with a newer flows.py: its row names a function this web
    # process does not define.
    workers.register("default", "newer", [], 1, ["newer-function", "one-step"])
    page = admin_client.get(reverse("durable_flows:functions")).content.decode()
    assert 'id="newer-function"' in page and "not defined in this web process" in page
    runs = admin_client.get(reverse("durable_flows:dashboard")).content.decode()
    assert "<option >newer-function</option>" in runs
    changelist = admin_client.get("/admin/durable_flows/run/").content.decode()
    assert "?function_id=newer-function" in changelist
    # A function the web process defines and no live worker serves is flagged.
    assert "no worker serves it" in card(page, "echo")
    assert "no worker serves it" not in card(page, "one-step")


def card(page: str, function_id: str) -> str:
    return page[page.index(f'id="{function_id}"') :].split("</article>")[0]
