"""``async def`` durable functions: every awaited step kind, the rules of atomic and
non-atomic async steps, misuse failing clearly, retries, crashes and cancellation;
in this process and through real ``runflows`` processes (tests/flows_async.py)."""

from __future__ import annotations

import signal
import time

import pytest

import durable_flows as df
from durable_flows.models import Run, Step
from durable_flows.testing import run_until_idle
from tests.conftest import effects, start, wait_until
from tests.models import Ledger

pytestmark = pytest.mark.django_db(transaction=True)


def test_every_step_kind_is_awaited_in_an_async_function(execute):  # noqa: F811
    run = start("test/async.every", nap=0.3, key="k1")
    execute()
    run.refresh_from_db()
    assert run.status == "waiting", run.error  # asleep
    time.sleep(0.4)
    execute()
    run.refresh_from_db()
    assert run.status == "waiting", run.error  # waiting for the reply
    assert Step.objects.get(run=run, name="reply").status == "waiting"
    df.send(df.Event(name="test/async.reply", data={"key": "k1", "value": "hello"}))
    execute()
    run.refresh_from_db()
    assert run.status == "completed", run.error
    assert run.output == {
        "atomic": 1,
        "awaited": 42,
        "wrapped": 10,
        "sent": 1,
        "child": 8,
        "pair": [2, 1],
        "reply": "hello",
        "after": 1,
    }
    # Replayed twice (after the sleep, after the wait): each step executed once.
    for key in ("async-atomic", "async-right", "async-after"):
        assert effects(key, run) == 1
    names = [s.name for s in run.steps.order_by("position")]
    assert names == [
        "atomic",
        "awaited",
        "wrapped",
        "nap",
        "past",
        "send",
        "child",
        "left",
        "right",
        "reply",
        "after",
    ]
    assert {s.status for s in run.steps.all()} == {"completed"}
    child = Run.objects.get(parent_run=run)
    assert (child.function_id, child.status, child.output) == ("async-child", "completed", 8)


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ("test/async.atomic", "an async fn cannot be atomic"),
        ("test/async.atomic-coro", "that is a coroutine"),
        ("test/sync.async-fn", "make the durable function `async def`"),
        ("test/async.gathered", "was awaited while ctx.step.run('a', ...) was still running"),
    ],
    ids=["async-fn-atomic", "atomic-returns-coroutine", "sync-function", "gathered"],
)
def test_misused_async_steps_fail_the_run_at_once_with_a_clear_message(
    execute,  # noqa: F811
    event,
    message,
):
    run = start(event)
    execute()
    run.refresh_from_db()
    assert run.status == "failed"
    assert message in run.error["message"]
    assert run.attempt == 0  # a mistake in the code: not retried
    # Nothing but JSON is ever stored: no step holds a coroutine.
    assert not Step.objects.filter(run=run, status="completed", name="refused").exists()


@pytest.mark.parametrize("then_step", [True, False], ids=["next-step", "function-returns"])
def test_a_step_never_awaited_fails_the_run_clearly(execute, then_step):  # noqa: F811
    run = start("test/async.unawaited", then_step=then_step)
    execute()
    run.refresh_from_db()
    assert run.status == "failed"
    assert "ctx.step.run('forgotten', ...) was never awaited" in run.error["message"]
    assert effects("async-forgotten", run) == 0
    assert effects("async-next", run) == 0


def test_a_failing_async_step_is_retried_and_the_function_replayed(execute, tmp_path):  # noqa: F811
    marker = tmp_path / "flaky"
    run = start("test/async.flaky", marker=str(marker), failures=1)
    execute()
    run.refresh_from_db()
    assert run.status == "completed", run.error
    assert run.output == [1, "ok after 2"]
    flaky = Step.objects.get(run=run, name="flaky")
    assert (flaky.status, flaky.attempts, len(flaky.failed_attempts)) == ("completed", 2, 1)
    assert effects("async-flaky-before", run) == 1  # replayed from its checkpoint


def test_an_async_step_failing_past_its_retries_fails_the_run(execute, tmp_path):  # noqa: F811
    run = start("test/async.flaky", marker=str(tmp_path / "flaky"), failures=99)
    execute()
    run.refresh_from_db()
    assert run.status == "failed"
    assert "flaky failure 3" in run.error["message"]
    assert Step.objects.get(run=run, name="flaky").attempts == 3


def test_a_sleeping_async_run_is_cancelled(execute):  # noqa: F811
    run = start("test/async.sleeper")
    execute()
    run.refresh_from_db()
    assert run.status == "waiting"
    df.cancel(run.pk)
    execute()
    run.refresh_from_db()
    assert run.status == "cancelled"
    assert effects("async-sleeper-before", run) == 1
    assert effects("async-sleeper-after", run) == 0


def test_a_worker_killed_mid_run_resumes_the_async_run_elsewhere(start_worker, tmp_path):
    run = start("test/async.flaky", marker=str(tmp_path / "flaky"), failures=0)
    # The first checkpoint committed is the atomic "before" step: die right there.
    doomed = start_worker(faults="after_checkpoint")
    assert doomed.wait(30) == -signal.SIGKILL
    run.refresh_from_db()
    assert run.status == "running"
    rescuer = start_worker()
    wait_until(lambda: Run.objects.get(pk=run.pk).status == "completed", timeout=60)
    rescuer.signal(signal.SIGTERM)
    assert rescuer.wait(30) == 0
    run.refresh_from_db()
    assert run.output == [1, "ok after 1"]
    assert effects("async-flaky-before", run) == 1
    assert [(s.name, s.attempts) for s in run.steps.order_by("position")] == [
        ("before", 1),
        ("flaky", 1),
    ]


def test_an_async_function_runs_in_process_with_the_testing_helpers():
    run = start("test/async.child", x=3)
    run_until_idle()
    run.refresh_from_db()
    assert (run.status, run.output) == ("completed", 6)


def test_the_examples_of_the_async_guide_run(execute):  # noqa: F811
    order = start("docs/order.placed", order_id="o-1", currency="EUR", amount=10)
    rates = start("docs/rates.compare")
    execute()
    time.sleep(1.1)  # the order's cool-off
    execute()
    for run in (order, rates):
        run.refresh_from_db()
        assert run.status == "completed", run.error
    assert order.output == {"booked": "o-1", "rate": 1.1}
    assert rates.output == [1.1, 1.3]
    assert Ledger.objects.filter(key="o-1: 11.00").count() == 1


def test_async_runs_waiting_on_io_execute_concurrently_on_one_worker_thread(start_worker):
    ids = df.send([df.Event(name="test/async.io", data={"seconds": 0.5}) for _ in range(20)])
    worker = start_worker("--burst", "--concurrency", "1")
    assert worker.wait(60) == 0, worker.output()
    runs = Run.objects.filter(event_id__in=ids)
    assert [run.status for run in runs] == ["completed"] * 20
    # One after another they would take 10 s; side by side, about one step's 0.5 s.
    span = max(run.ended_at for run in runs) - min(run.started_at for run in runs)
    assert span.total_seconds() < 4, span
