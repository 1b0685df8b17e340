"""``ctx.group.parallel`` with every step kind mixed in one group, through real
``runflows`` workers on both databases: results in order, the run holds no worker while
members wait, a member's failure surfaces after the others are recorded, and a fan-out
of 100 invokes completes with 2 workers."""

from __future__ import annotations

import pytest

import durable_flows as df
from durable_flows.models import Run, Step
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_group_of_every_kind_returns_its_results_in_order(start_worker):
    (event_id,) = df.send(df.Event(name="test/mixed-group", data={"key": "k1"}))
    start_worker("--concurrency", "2")
    run = wait_until(lambda: Run.objects.filter(event_id=event_id).first(), 30)
    # Every member has begun; the run waits for the reply and the signal, holding no
    # worker.
    wait_until(lambda: Step.objects.filter(run_id=run.pk, name="reply").exists(), 60)
    wait_until(lambda: Step.objects.filter(run_id=run.pk, name="nudge").exists(), 60)
    wait_until(lambda: Run.objects.get(pk=run.pk).status == "waiting", 60)
    assert Run.objects.get(pk=run.pk).lease_owner is None
    df.send(df.Event(name="test/group.reply", data={"key": "k1"}))
    df.signal(run.pk, "nudge", {"go": 1})
    assert df.handle(run.pk).result(timeout=60) == [42, None, "k1", 101, {"go": 1}, 1]
    kinds = dict(Step.objects.filter(run_id=run.pk).values_list("name", "kind"))
    assert kinds == {
        "double": "run",
        "nap": "sleep",
        "reply": "wait_for_event",
        "child": "invoke",
        "nudge": "wait_for_signal",
        "tell": "send_event",
    }


def test_a_members_failure_is_the_groups_error_after_the_others_are_recorded(start_worker):
    (event_id,) = df.send(df.Event(name="test/failing-group"))
    start_worker("--concurrency", "2")
    run = wait_until(lambda: Run.objects.filter(event_id=event_id).first(), 30)
    assert df.handle(run.pk).result(timeout=60) == {"caught": "NonRetriableError"}
    statuses = dict(Step.objects.filter(run_id=run.pk).values_list("name", "status"))
    assert statuses == {"nap": "completed", "bad": "failed", "fine": "completed"}


def test_a_fan_out_of_100_invokes_completes_with_2_workers(start_worker):
    (event_id,) = df.send(df.Event(name="test/fan-out-invokes", data={"count": 100}))
    start_worker("--concurrency", "2")
    start_worker("--concurrency", "2")
    run = wait_until(lambda: Run.objects.filter(event_id=event_id).first(), 30)
    assert df.handle(run.pk).result(timeout=180) == sum(i + 100 for i in range(100))
    assert Run.objects.filter(parent_run_id=run.pk, status="completed").count() == 100


def test_an_async_function_awaits_a_group_of_mixed_kinds(start_worker):
    (event_id,) = df.send(df.Event(name="test/async-group"))
    start_worker()
    run = wait_until(lambda: Run.objects.filter(event_id=event_id).first(), 30)
    assert df.handle(run.pk).result(timeout=60) == [4, None, 102]


def test_a_child_that_finishes_before_its_group_is_parked_still_wakes_the_run(start_worker):
    (event_id,) = df.send(df.Event(name="test/invoke-races-park"))
    start_worker("--concurrency", "2")
    start_worker("--concurrency", "2")
    run = wait_until(lambda: Run.objects.filter(event_id=event_id).first(), 30)
    # The child finished while the parent was still planning; the parent, parked for
    # the signal, takes the child's result without waiting for the signal.
    wait_until(
        lambda: Step.objects.filter(run_id=run.pk, name="child", status="completed").exists(), 30
    )
    assert Run.objects.get(pk=run.pk).status in ("waiting", "running")
    df.signal(run.pk, "go", {"ok": 1})
    assert df.handle(run.pk).result(timeout=60) == [105, {"ok": 1}]
