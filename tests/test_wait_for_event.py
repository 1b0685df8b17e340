"""wait_for_event and send_event: matching, timeouts, races, and cheap lookups."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection, connections

import durable_flows as df
from durable_flows import testing
from durable_flows.models import Event, Run, Wait
from durable_flows.testing import advance, run_until_idle
from tests.conftest import effects, start, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def login(**data) -> str:
    (event_id,) = df.send(df.Event(name="test/login", data=data))
    return event_id


def test_a_wait_sees_an_event_sent_after_it_began_and_ignores_one_sent_before():
    early = login(user_id=7)  # before the run exists, so before its wait
    run = start("test/wait", user_id=7)
    run_until_idle()
    run.refresh_from_db()
    assert run.status == "waiting"
    step = run.steps.get(name="login")
    assert (step.kind, step.status) == ("wait_for_event", "waiting")

    login(user_id=8)  # another user: no match
    run_until_idle()
    assert Run.objects.get(pk=run.pk).status == "waiting"

    later = login(user_id=7, source="web")
    run_until_idle()
    run.refresh_from_db()
    assert run.status == "completed", run.error
    assert run.output == {
        "id": later,
        "name": "test/login",
        "data": {"user_id": 7, "source": "web"},
    }
    assert later != early
    assert effects("resumed", run) == 1
    assert effects("after-wait", run) == 1
    wait = Wait.objects.get(run=run, kind="event")
    assert (wait.status, wait.event_id) == ("resolved", later)


def test_a_wait_that_times_out_returns_none():
    run = start("test/wait", user_id=1, timeout="2h")
    run_until_idle()
    advance("2h")
    run_until_idle()
    run.refresh_from_db()
    assert (run.status, run.output) == ("completed", None)
    assert Wait.objects.get(run=run).status == "timed_out"
    # An event after the timeout changes nothing.
    login(user_id=1)
    run_until_idle()
    assert effects("after-wait", run) == 1


def test_an_event_after_the_timeout_but_before_the_run_resumes_is_not_delivered():
    run = start("test/wait", user_id=3, timeout="1h")
    run_until_idle()
    advance("2h")
    login(user_id=3)  # the wait has expired; no worker has resumed the run yet
    run_until_idle()
    run.refresh_from_db()
    assert (run.status, run.output) == ("completed", None)


def test_if_exp_is_evaluated_against_the_run_event_and_the_candidate():
    run = start(
        "test/wait",
        user_id=5,
        plan="pro",
        match=None,
        if_exp="async.data.user_id == event.data.user_id && async.data.plan == event.data.plan",
    )
    run_until_idle()
    login(user_id=5, plan="free")
    run_until_idle()
    assert Run.objects.get(pk=run.pk).status == "waiting"
    login(user_id=5, plan="pro")
    run_until_idle()
    run.refresh_from_db()
    assert run.status == "completed"
    assert run.output["data"] == {"user_id": 5, "plan": "pro"}


def test_two_events_sent_at_once_resume_the_run_exactly_once():
    run = start("test/wait", user_id=11)
    run_until_idle()
    ids = df.send([df.Event(name="test/login", data={"user_id": 11, "n": n}) for n in (1, 2)])
    run_until_idle()
    run.refresh_from_db()
    assert run.output["id"] == ids[0]  # the first matching event wins
    assert effects("resumed", run) == 1


def test_two_events_racing_from_two_connections_resume_the_run_exactly_once():
    runs = [start("test/wait", user_id=100 + i) for i in range(4)]
    run_until_idle()
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def send(n: int) -> None:
        try:
            barrier.wait(10)
            for i in range(4):
                df.send(df.Event(name="test/login", data={"user_id": 100 + i, "n": n}))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=send, args=(n,)) for n in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    run_until_idle()
    for run in runs:
        run.refresh_from_db()
        assert run.status == "completed"
        assert run.output["data"]["n"] in (1, 2)
        assert effects("resumed", run) == 1
        assert effects("after-wait", run) == 1
        wait = Wait.objects.get(run=run)
        assert (wait.status, wait.event_id) == ("resolved", run.output["id"])


def test_events_racing_the_timeout_resumption_are_neither_lost_nor_delivered_twice(
    start_worker,
):
    # Runs whose timeouts fall due while events for them are being sent: whichever
    # wins, the run sees exactly one outcome, the one its Wait row records.
    runs = [start("test/wait", user_id=200 + i, timeout="3s") for i in range(6)]
    worker = start_worker("--concurrency", "3")
    wait_until(lambda: all(Run.objects.get(pk=r.pk).status == "waiting" for r in runs), 60)
    due = max(Run.objects.get(pk=r.pk).available_at for r in runs)
    wait_until(lambda: testing.now() >= due - timedelta(milliseconds=150), 30)
    for _ in range(20):
        for i in range(6):
            df.send(df.Event(name="test/login", data={"user_id": 200 + i}))
    wait_until(lambda: all(Run.objects.get(pk=r.pk).status == "completed" for r in runs), 60)
    for run in runs:
        run.refresh_from_db()
        wait = Wait.objects.get(run=run)
        if run.output is None:
            assert wait.status == "timed_out"
        else:
            assert (wait.status, wait.event_id) == ("resolved", run.output["id"])
        assert effects("resumed", run) == 1
        assert effects("after-wait", run) == 1
    worker.stop()


def test_a_wait_with_match_needs_the_field_in_the_run_event():
    run = start("test/wait", other=1)
    run_until_idle()
    run.refresh_from_db()
    assert run.status == "failed"
    assert run.error["type"] == "StepUsageError"
    assert "data.user_id" in run.error["message"]


def test_cancelling_a_waiting_run_disarms_its_wait():
    run = start("test/wait", user_id=21)
    run_until_idle()
    assert df.cancel(run.pk).status == "cancelled"
    assert Wait.objects.get(run=run).status == "closed"
    login(user_id=21)
    run_until_idle()
    run.refresh_from_db()
    assert run.status == "cancelled"
    assert effects("resumed", run) == 0


def test_send_cost_does_not_depend_on_runs_waiting_on_other_keys():
    from django.test.utils import CaptureQueriesContext

    start("test/wait", user_id=999)  # a match path is in use for test/login
    run_until_idle()
    with CaptureQueriesContext(connection) as baseline:
        login(user_id=4)
    for i in range(30):
        start("test/wait", user_id=1000 + i)
    run_until_idle()
    assert Wait.objects.filter(status="pending").count() == 31
    with CaptureQueriesContext(connection) as captured:
        login(user_id=5)
    assert len(captured.captured_queries) == len(baseline.captured_queries)
    # The candidate lookup (the cheap check for unkeyed waits aside; on PostgreSQL
    # that check is a prepared statement, not seen here).
    waits_sql = [
        q["sql"]
        for q in captured.captured_queries
        if 'FROM "durable_flows_wait" ' in q["sql"] and "ORDER BY" in q["sql"]
    ]
    assert len(waits_sql) == 1
    assert "match_key" in waits_sql[0]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET enable_seqscan = off")
            cursor.execute("EXPLAIN " + waits_sql[0].replace("%s", "''"))
            plan = "\n".join(row[0] for row in cursor.fetchall())
            cursor.execute("SET enable_seqscan = on")
        assert "df_wait_pending" in plan


def test_send_event_sends_once_and_memoizes_the_ids():
    run = start("test/send")
    run_until_idle()
    run.refresh_from_db()
    assert run.status == "completed"
    sent = Event.objects.filter(name="test/sent")
    assert sent.count() == 1
    assert run.output[1] == sent.get().id
    step = run.steps.get(name="send")
    assert (step.kind, step.output) == ("send_event", run.output)
    # A replay returns the memoized ids and sends nothing again.
    Run.objects.filter(pk=run.pk).update(status="queued", available_at=run.created_at)
    run_until_idle()
    assert Event.objects.filter(name="test/sent").count() == 1
    assert Run.objects.get(pk=run.pk).output == run.output
    # The sent events triggered functions as any event does.
    assert Run.objects.filter(function_id="one-step", event_id=run.output[0]).exists()
