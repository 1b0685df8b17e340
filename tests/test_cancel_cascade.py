"""Cancelling a run cancels the runs it invoked that have not finished, recursively, and
each says which ancestor's cancellation reached it: through real ``runflows`` workers on
both databases, for a waiting tree and for a child cancelled in the middle of a step."""

from __future__ import annotations

import pytest

import durable_flows as df
from durable_flows.models import Run, Step
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def tree(root: Run) -> tuple[Run, Run]:
    middle = Run.objects.get(parent_run_id=root.pk)
    leaf = Run.objects.get(parent_run_id=middle.pk)
    return middle, leaf


def test_cancelling_a_root_cancels_its_invoked_runs_recursively(start_worker):
    (event_id,) = df.send(df.Event(name="test/cascade"))
    start_worker("--concurrency", "2")
    root = wait_until(lambda: Run.objects.filter(event_id=event_id).first(), 30)
    wait_until(
        lambda: Run.objects.filter(function_id="cascade-leaf", status="waiting").exists(), 60
    )
    assert df.cancel(root.pk).status == "cancelled"
    middle, leaf = tree(root)
    for run in (middle, leaf):
        assert run.status == "cancelled"
        assert run.error["cancelled_with"] == root.pk
        assert root.pk in run.error["message"]
    assert Step.objects.get(run_id=leaf.pk, name="nap").status == "cancelled"
    assert not Run.objects.exclude(status="cancelled").exists()


def test_a_child_cancelled_in_the_middle_of_a_step_stops_at_its_next_boundary(start_worker):
    (event_id,) = df.send(df.Event(name="test/cascade", data={"busy": 2}))
    start_worker("--concurrency", "3")
    root = wait_until(lambda: Run.objects.filter(event_id=event_id).first(), 30)
    leaf = wait_until(
        lambda: Run.objects.filter(function_id="cascade-leaf", status="running").first(), 60
    )
    df.cancel(root.pk)
    wait_until(lambda: Run.objects.get(pk=leaf.pk).status == "cancelled", 30)
    leaf.refresh_from_db()
    assert leaf.error["cancelled_with"] == root.pk
    busy = Step.objects.get(run_id=leaf.pk, name="busy")
    assert busy.status == "completed"  # the step in hand finished and was recorded
    assert not Step.objects.filter(run_id=leaf.pk, name="nap").exclude(status="cancelled")
    assert set(Run.objects.values_list("status", flat=True)) == {"cancelled"}


def test_finished_children_are_left_alone(start_worker):
    (event_id,) = df.send(df.Event(name="test/cascade"))
    start_worker()
    wait_until(
        lambda: Run.objects.filter(function_id="cascade-leaf", status="waiting").exists(), 60
    )
    leaf = Run.objects.get(function_id="cascade-leaf")
    df.cancel(leaf.pk)  # the leaf alone: its callers wait on
    root = Run.objects.get(event_id=event_id)
    leaf.refresh_from_db()
    assert leaf.error["type"] == "Cancelled" and "cancelled_with" not in leaf.error
    wait_until(lambda: Run.objects.get(pk=root.pk).status == "failed", 60)
    assert df.cancel(root.pk).status == "failed"  # finished: cancelling changes nothing
