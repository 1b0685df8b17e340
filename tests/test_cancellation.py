"""Cancel rules (``cancel=[df.Cancel(...)]``) and ``timeouts=df.Timeouts(...)``."""

from __future__ import annotations

import pytest

import durable_flows as df
from durable_flows.exceptions import ConfigurationError
from durable_flows.models import Event, Run, Step, Wait
from durable_flows.testing import advance, run_until_idle
from tests.conftest import effects, start
from tests.models import Effect

pytestmark = pytest.mark.django_db(transaction=True)


def cancelled_events(run: Run) -> int:
    return Event.objects.filter(
        name="durable_flows/function.cancelled", data__run_id=run.pk
    ).count()


def test_a_matching_event_cancels_a_sleeping_run_at_once():
    run = start("test/order", order_id=1)
    other = start("test/order", order_id=2)
    run_until_idle()
    df.send(df.Event(name="test/order.cancelled", data={"order_id": 1}))
    run.refresh_from_db()
    assert run.status == "cancelled"
    assert "test/order.cancelled" in run.error["message"]
    assert cancelled_events(run) == 1
    assert Run.objects.get(pk=other.pk).status == "waiting"
    advance("1d")
    run_until_idle()
    assert effects("cancellable-second", run) == 0
    assert Run.objects.get(pk=other.pk).status == "completed"
    assert set(Wait.objects.filter(run=run).values_list("status", flat=True)) == {
        "resolved",
        "closed",
    }


def test_a_queued_run_is_cancelled_before_it_starts():
    run = start("test/order", order_id=3)
    df.send(df.Event(name="test/order.cancelled", data={"order_id": 3}))
    run_until_idle()
    run.refresh_from_db()
    assert run.status == "cancelled"
    assert effects("cancellable-first", run) == 0


def test_an_event_sent_before_the_run_started_does_not_cancel_it():
    df.send(df.Event(name="test/order.cancelled", data={"order_id": 4}))
    run = start("test/order", order_id=4, sleep="1s")
    advance("1s")
    run_until_idle()
    advance("1s")
    run_until_idle()
    assert Run.objects.get(pk=run.pk).status == "completed"


def test_if_exp_rule_and_its_timeout():
    run = start("test/order", order_id=5)
    late = start("test/order", order_id=6)
    run_until_idle()
    df.send(df.Event(name="test/stop-all", data={"reason": "other"}))
    assert Run.objects.get(pk=run.pk).status == "waiting"
    df.send(df.Event(name="test/stop-all", data={"reason": "halt"}))
    assert Run.objects.get(pk=run.pk).status == "cancelled"
    assert Run.objects.get(pk=late.pk).status == "cancelled"
    # Past the rule's one-hour timeout the rule no longer applies.
    third = start("test/order", order_id=7)
    run_until_idle()
    advance("2h")
    df.send(df.Event(name="test/stop-all", data={"reason": "halt"}))
    assert Run.objects.get(pk=third.pk).status == "waiting"


def test_a_running_run_is_cancelled_between_steps():
    from durable_flows.definitions.functions import registry

    fn = registry.get("cancellable")
    original = fn.fn

    def cancels_itself_mid_step(ctx):
        def first():
            df.send(df.Event(name="test/order.cancelled", data={"order_id": 8}))
            return "first done"

        ctx.step.run("first", first, atomic=False)
        ctx.step.run("second", lambda: "never")
        return "done"

    fn.fn = cancels_itself_mid_step
    try:
        run = start("test/order", order_id=8)
        run_until_idle()
    finally:
        fn.fn = original
    run.refresh_from_db()
    assert run.status == "cancelled"
    assert [s.name for s in run.steps.all()] == ["first"]  # the running step finished
    assert cancelled_events(run) == 1
    assert "cancelled by event 'test/order.cancelled'" in run.error["message"]


def test_start_timeout_cancels_a_run_that_did_not_start_in_time():
    run = start("test/timed")
    advance("11m")
    run_until_idle()
    run.refresh_from_db()
    assert run.status == "cancelled"
    assert run.error["type"] == "FunctionTimeout"
    assert run.error["timeout"] == "start"
    assert effects("timed-first", run) == 0
    assert cancelled_events(run) == 1


def test_finish_timeout_cancels_a_sleeping_run():
    run = start("test/timed")  # sleeps 2h; finish timeout 1h
    run_until_idle()
    advance("61m")
    run_until_idle()
    run.refresh_from_db()
    assert run.status == "cancelled"
    assert run.error["timeout"] == "finish"
    assert effects("timed-first", run) == 1
    assert effects("timed-second", run) == 0


def test_a_run_within_its_timeouts_completes():
    run = start("test/timed", sleep="30m")
    run_until_idle()
    advance("30m")
    run_until_idle()
    assert Run.objects.get(pk=run.pk).status == "completed"


def test_bad_cancel_and_timeouts_options_fail_at_definition():
    with pytest.raises(ConfigurationError, match="at most 5"):
        df.function(
            id="too-many-cancels",
            trigger=df.TriggerEvent(event="x/y"),
            cancel=[df.Cancel(event=f"x/{i}") for i in range(6)],
        )
    with pytest.raises(ConfigurationError, match="dotted path"):
        df.Cancel(event="x/y", match="user id")
    with pytest.raises(ConfigurationError, match="CEL"):
        df.Cancel(event="x/y", if_exp="async.data ==")
    with pytest.raises(ConfigurationError, match="not a duration"):
        df.Timeouts(finish="forever")
    with pytest.raises(ConfigurationError, match="start=, finish="):
        df.Timeouts()
    with pytest.raises(ConfigurationError, match="df.Timeouts"):
        df.function(id="t", trigger=df.TriggerEvent(event="x/y"), timeouts="1h")


def test_finish_timeout_stops_a_running_run_between_steps():
    from durable_flows.definitions.functions import registry

    fn = registry.get("timed")
    original = fn.fn

    def slow_first_step(ctx):
        ctx.step.run("first", lambda: advance("2h") and "took two hours")
        ctx.step.run("second", record_second, ctx.run_id)
        return "done"

    fn.fn = slow_first_step
    try:
        run = start("test/timed")
        run_until_idle()
    finally:
        fn.fn = original
    run.refresh_from_db()
    assert run.status == "cancelled"
    assert run.error["timeout"] == "finish"
    assert [s.name for s in run.steps.all()] == ["first"]


def record_second(run_id: str) -> None:
    Effect.objects.create(key="timed-second", run_id=run_id)


# --- a cancelled run's open steps --------------------------------------------------


@pytest.mark.parametrize(
    ("event", "data", "step"),
    [
        ("test/sleep", {"duration": "1d"}, "nap"),
        ("test/wait", {"user_id": 7}, "login"),
        ("test/parent", {"child": {"sleep": "1d"}}, "call-child"),
    ],
    ids=["sleep", "wait", "invoke"],
)
def test_cancelling_a_run_cancels_its_open_sleep_wait_or_invoke_step(event, data, step):
    run = start(event, **data)
    run_until_idle()
    assert Step.objects.get(run=run, name=step).status == "waiting"
    df.cancel(run.pk)
    closed = Step.objects.get(run=run, name=step)
    assert (closed.status, closed.wake_at) == ("cancelled", None)
    assert closed.ended_at == Run.objects.get(pk=run.pk).ended_at
    # The steps that had completed stay completed.
    others = Step.objects.filter(run=run).exclude(name=step)
    assert set(others.values_list("status", flat=True)) <= {"completed"}


def test_the_api_shows_a_cancelled_runs_wait_step_cancelled(admin_client):
    run = start("test/wait", user_id=8)
    run_until_idle()
    response = admin_client.post(f"/flows/api/runs/{run.pk}/cancel/")
    assert response.status_code == 200, response.content
    detail = admin_client.get(f"/flows/api/runs/{run.pk}/").json()
    assert detail["status"] == "cancelled"
    assert [(s["name"], s["status"]) for s in detail["steps"]] == [("login", "cancelled")]
