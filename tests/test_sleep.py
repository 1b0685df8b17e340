"""Durable sleep: the run holds no worker, wakes when due, survives every worker stopping."""

from __future__ import annotations

import signal
from datetime import timedelta

import pytest

import durable_flows as df
from durable_flows import testing
from durable_flows.models import Run
from durable_flows.testing import advance, run_until_idle, time_machine
from tests.conftest import effects, start, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_seven_day_sleep_waits_without_a_worker_and_finishes_when_the_clock_moves():
    run = start("test/sleep", duration="7d")
    run_until_idle()
    run.refresh_from_db()
    assert run.status == "waiting"
    assert (run.lease_owner, run.lease_token) == (None, None)
    nap = run.steps.get(name="nap")
    assert (nap.kind, nap.status) == ("sleep", "waiting")
    assert nap.wake_at - nap.started_at == timedelta(days=7)
    assert run.available_at == nap.wake_at

    advance("6d23h")
    run_until_idle()
    run.refresh_from_db()
    assert run.status == "waiting"

    advance("1h")
    run_until_idle()
    run.refresh_from_db()
    assert run.status == "completed", run.error
    assert run.output == {"before": 1, "after": 1}
    assert [effects(k, run) for k in ("before-sleep", "after-sleep")] == [1, 1]
    nap.refresh_from_db()
    assert (nap.status, nap.output) == ("completed", None)
    assert [s.name for s in run.steps.all()] == ["before", "nap", "after"]


def test_advance_to_next_wake_jumps_to_the_next_due_run():
    run = start("test/sleep", duration="3d")
    run_until_idle()
    due = Run.objects.get(pk=run.pk).available_at
    assert testing.advance_to_next_wake() == due
    run_until_idle()
    assert Run.objects.get(pk=run.pk).status == "completed"
    assert testing.advance_to_next_wake() is None


def test_time_machine_puts_the_clock_back():
    before = testing.now()
    with time_machine("3d"):
        assert testing.now() - before >= timedelta(days=3)
        advance("1d")
    assert testing.now() - before < timedelta(hours=1)


def test_sleep_until_a_past_time_does_not_suspend():
    when = (testing.now() - timedelta(minutes=1)).isoformat()
    run = start("test/sleep-until", when=when)
    run_until_idle()
    run.refresh_from_db()
    assert (run.status, run.output) == ("completed", "woke")
    assert run.steps.get(name="until").status == "completed"


def test_sleep_until_a_future_time_wakes_then():
    when = (testing.now() + timedelta(hours=5)).isoformat()
    run = start("test/sleep-until", when=when)
    run_until_idle()
    assert Run.objects.get(pk=run.pk).status == "waiting"
    advance("5h")
    run_until_idle()
    assert Run.objects.get(pk=run.pk).status == "completed"


@pytest.mark.parametrize(
    ("duration", "cause"),
    [
        ("soon", "is not a duration"),
        ("-5s", "is not a duration"),
        ("7 days", "is not a duration"),
        ([1], "must be a timedelta or a string"),
        ("3000000d", "is too long: durations range from 0 to 36500 days"),
        ("99999999999d", "is too long"),
        ("9" * 400 + "w", "is too long"),
        (1e308, "is too long"),
        (-1, "must not be negative"),
    ],
)
def test_a_bad_duration_fails_the_run_at_once_and_says_why(duration, cause):
    run = start("test/bad-sleep", duration=duration)
    run_until_idle()
    run.refresh_from_db()
    assert run.status == "failed"
    assert run.error["type"] == "StepUsageError"
    assert run.error["message"].startswith("sleep duration")
    assert cause in run.error["message"]
    assert run.attempt == 0  # not retried


@pytest.mark.parametrize("duration", ["0", 0, "0s", "36500d"])
def test_zero_is_a_duration_as_a_number_or_a_string_and_100_years_the_longest(duration):
    run = start("test/sleep", duration=duration)
    run_until_idle()
    run.refresh_from_db()
    assert run.status == ("waiting" if duration == "36500d" else "completed"), run.error


def test_sleep_until_more_than_100_years_ahead_is_refused_at_the_call():
    run = start("test/sleep-until", when="9999-12-31T00:00:00+00:00")
    run_until_idle()
    run.refresh_from_db()
    assert (run.status, run.error["type"], run.attempt) == ("failed", "StepUsageError", 0)
    assert (
        "sleep_until(when) 9999-12-31T00:00:00+00:00 is too far in the future"
        in (run.error["message"])
    )


@pytest.mark.parametrize("after", ["3000000d", 1e308, "later"])
def test_a_retry_after_out_of_range_fails_the_step_at_the_raise(after):
    run = start("test/bad-retry-after", after=after)
    run_until_idle()
    run.refresh_from_db()
    step = run.steps.get(name="later")
    assert (run.status, step.status, step.attempts) == ("failed", "failed", 1)
    assert step.error["type"] == "StepUsageError"
    assert step.error["message"].startswith("RetryAfterError(retry_after)")


def test_cancelling_a_sleeping_run_is_immediate():
    run = start("test/sleep", duration="1d")
    run_until_idle()
    cancelled = df.cancel(run.pk)
    assert cancelled.status == "cancelled"
    assert cancelled.available_at is None
    advance("2d")
    run_until_idle()
    run.refresh_from_db()
    assert run.status == "cancelled"
    assert effects("after-sleep", run) == 0


def test_a_sleeping_run_survives_all_workers_stopping(start_worker):
    run = start("test/sleep", duration="4s")
    first = start_worker("--concurrency", "2")
    wait_until(lambda: Run.objects.get(pk=run.pk).status == "waiting", timeout=60)
    first.signal(signal.SIGTERM)
    assert first.wait() == 0
    run.refresh_from_db()
    assert run.status == "waiting"
    assert effects("after-sleep", run) == 0
    # Nothing runs while no worker does; a new worker finishes it once it is due.
    wait_until(lambda: testing.now() >= Run.objects.get(pk=run.pk).available_at, timeout=30)
    second = start_worker()
    wait_until(lambda: Run.objects.get(pk=run.pk).status == "completed", timeout=60)
    run.refresh_from_db()
    assert run.output == {"before": 1, "after": 1}
    assert [effects(k, run) for k in ("before-sleep", "after-sleep")] == [1, 1]
    second.signal(signal.SIGTERM)
    assert second.wait() == 0


def test_sigkill_during_a_wake_up_loses_nothing_and_repeats_nothing(start_worker):
    run = start("test/sleep", duration="1s")
    # The first worker records the sleep, then dies the moment it wakes the run.
    doomed = start_worker(faults="after_wake")
    assert doomed.wait(60) == -signal.SIGKILL
    run.refresh_from_db()
    assert run.status == "running"  # leased by the dead worker
    assert run.steps.get(name="nap").status == "completed"
    assert effects("after-sleep", run) == 0
    rescuer = start_worker()
    wait_until(lambda: Run.objects.get(pk=run.pk).status == "completed", timeout=60)
    rescuer.signal(signal.SIGTERM)
    assert rescuer.wait() == 0
    assert [effects(k, run) for k in ("before-sleep", "after-sleep")] == [1, 1]
