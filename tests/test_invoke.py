"""invoke: a child run, waited for without a worker; its value or its failure comes back."""

from __future__ import annotations

import pytest

import durable_flows as df
from durable_flows.models import Run
from durable_flows.testing import advance, run_until_idle
from tests.conftest import start, wait_until
from tests.models import Effect

pytestmark = pytest.mark.django_db(transaction=True)


def test_invoke_returns_the_child_value_and_links_the_child_to_its_parent():
    parent = start("test/parent", child={"n": 21})
    run_until_idle()
    parent.refresh_from_db()
    assert parent.status == "completed", parent.error
    assert parent.output == {"result": {"doubled": 42, "event": "durable_flows/function.invoked"}}
    child = Run.objects.get(parent_run=parent)
    assert (child.function_id, child.parent_step, child.status) == (
        "child",
        "call-child",
        "completed",
    )
    assert child.event.data == {"n": 21}
    step = parent.steps.get(name="call-child")
    assert (step.kind, step.status, step.output) == ("invoke", "completed", child.output)
    assert Effect.objects.filter(key="after-invoke", run_id=parent.pk).count() == 1


def test_the_parent_waits_without_a_worker_while_the_child_sleeps():
    parent = start("test/parent", child={"n": 1, "sleep": "1d"})
    run_until_idle()
    parent.refresh_from_db()
    child = Run.objects.get(parent_run=parent)
    assert (parent.status, child.status) == ("waiting", "waiting")
    assert parent.available_at is None  # no timeout: only the child wakes it
    advance("1d")
    run_until_idle()
    parent.refresh_from_db()
    assert parent.output == {"result": {"doubled": 2, "event": "durable_flows/function.invoked"}}


def test_a_failed_child_raises_step_error_in_the_parent():
    parent = start("test/parent", child={"n": 1, "fail": True})
    run_until_idle()
    parent.refresh_from_db()
    assert parent.status == "completed"
    assert parent.output["error"] == "NonRetriableError"
    assert "child exploded" in parent.output["message"]
    assert parent.steps.get(name="call-child").status == "failed"


def test_a_child_that_does_not_finish_in_time_raises_step_error():
    parent = start("test/parent", child={"n": 1, "sleep": "2h"}, timeout="1h")
    run_until_idle()
    advance("1h")
    run_until_idle()
    parent.refresh_from_db()
    assert parent.output["error"] == "InvokeTimeout"
    # The child goes on; its later end does not disturb the finished parent.
    advance("2h")
    run_until_idle()
    assert Run.objects.get(parent_run=parent).status == "completed"
    assert Run.objects.get(pk=parent.pk).output["error"] == "InvokeTimeout"


def test_a_cancelled_child_fails_the_invoke_step():
    parent = start("test/parent", child={"n": 1, "sleep": "1d"})
    run_until_idle()
    df.cancel(Run.objects.get(parent_run=parent).pk)
    run_until_idle()
    parent.refresh_from_db()
    assert parent.output["error"] == "Cancelled"


def test_invoking_an_unknown_function_fails_clearly():
    from durable_flows.definitions.functions import registry

    fn = registry.get("parent")
    original = fn.fn

    def calls_unknown(ctx):
        return ctx.step.invoke("x", function="no-such-function")

    fn.fn = calls_unknown
    try:
        run = start("test/parent")
        run_until_idle()
    finally:
        fn.fn = original
    run.refresh_from_db()
    assert run.status == "failed"
    assert run.error["type"] == "StepUsageError"
    assert "no-such-function" in run.error["message"]


def test_invoke_data_that_is_not_json_fails_clearly_and_starts_no_child():
    run = start("test/invoke-not-json")
    run_until_idle()
    run.refresh_from_db()
    assert (run.status, run.attempt, run.error["type"]) == ("failed", 0, "StepOutputError")
    assert run.error["message"] == (
        "step 'call' of function 'invoke-not-json' invoked 'child' with data that is not JSON: "
        "frozenset at data['at'][0]"
    )
    assert not Run.objects.filter(parent_run=run).exists()


def test_with_one_worker_thread_the_parent_does_not_block_its_child(start_worker):
    # One runflows thread: were the waiting parent holding it, the child could never run.
    parents = [start("test/parent", child={"n": n}) for n in range(3)]
    worker = start_worker("--concurrency", "1")
    wait_until(
        lambda: all(Run.objects.get(pk=p.pk).status == "completed" for p in parents), timeout=60
    )
    for n, parent in enumerate(parents):
        parent.refresh_from_db()
        assert parent.output["result"]["doubled"] == 2 * n
    worker.stop()
