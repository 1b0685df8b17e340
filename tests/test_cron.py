"""TriggerCron: one run per tick however many workers; no burst after downtime."""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime, timedelta

import pytest

import durable_flows as df
from durable_flows import cron, testing
from durable_flows.exceptions import ConfigurationError
from durable_flows.models import CronTick, Run
from durable_flows.registry import registry
from durable_flows.testing import advance, run_until_idle
from tests.conftest import wait_until
from tests.flows_time import register_cron_functions
from tests.models import Effect

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def cron_functions():
    ids = register_cron_functions()
    yield
    for function_id in ids:
        registry.remove(function_id)
    testing.reset_clock()


def test_schedules_parse_with_time_zones_and_daylight_saving():
    paris = cron.parse("TZ=Europe/Paris 0 9 * * 1-5")
    # Thursday 26 Nov 2026, 07:30 UTC = 08:30 in Paris (UTC+1).
    now = datetime(2026, 11, 26, 7, 30, tzinfo=UTC)
    assert paris.next(now) == datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
    assert paris.previous(now) == datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
    # In summer 09:00 Paris is 07:00 UTC; Friday -> Monday skips the weekend.
    assert paris.next(datetime(2026, 7, 3, 8, 0, tzinfo=UTC)) == datetime(
        2026, 7, 6, 7, 0, tzinfo=UTC
    )
    every_minute = cron.parse("* * * * *")
    assert every_minute.previous(now) == now  # a tick exactly now is due now


@pytest.mark.parametrize(
    "bad, message",
    [
        ("61 * * * *", "not a valid schedule"),
        ("* * *", "expected 5 fields"),
        ("TZ=Mars/Olympus 0 9 * * *", "unknown time zone"),
        ("", "non-empty"),
    ],
)
def test_a_bad_cron_fails_at_definition(bad, message):
    with pytest.raises(ConfigurationError, match=message):
        df.TriggerCron(cron=bad)


def test_a_tick_starts_one_run_and_a_new_schedule_starts_at_its_next_tick(cron_functions):
    run_until_idle()  # first sight: a baseline, no run
    assert not Run.objects.filter(function_id="daily").exists()
    baseline = CronTick.objects.get(function_id="daily")
    assert baseline.run is None
    # Move to the next weekday 09:00 in Paris.
    next_tick = cron.parse("TZ=Europe/Paris 0 9 * * 1-5").next(testing.now())
    advance(next_tick - testing.now() + timedelta(seconds=1))
    run_until_idle()
    run_until_idle()
    run = Run.objects.get(function_id="daily")
    assert run.status == "completed"
    assert run.output == next_tick.isoformat()
    assert run.event.name == "durable_flows/scheduled.timer"
    assert CronTick.objects.get(function_id="daily", tick=next_tick).run_id == run.pk


def test_after_downtime_only_the_latest_missed_tick_runs(cron_functions):
    run_until_idle()
    advance("10d")  # about eight weekday ticks were missed
    run_until_idle()
    runs = Run.objects.filter(function_id="daily")
    assert runs.count() == 1
    latest = cron.parse("TZ=Europe/Paris 0 9 * * 1-5").previous(testing.now())
    assert runs.get().event.data["tick"] == latest.isoformat()


def test_three_workers_start_exactly_one_run_per_tick(start_worker):
    # ticker: "*/2 * * * * *", a tick every two seconds.
    workers = [start_worker("--worker-id", f"cron-{i}", DF_TEST_CRON="1") for i in range(3)]
    wait_until(lambda: Run.objects.filter(function_id="ticker").count() >= 3, timeout=60)
    time.sleep(3)
    for worker in workers:
        worker.signal(signal.SIGTERM)
    for worker in workers:
        assert worker.wait() == 0
    runs = list(Run.objects.filter(function_id="ticker"))
    ticks = [run.event.data["tick"] for run in runs]
    assert len(ticks) == len(set(ticks))  # never two runs for one tick
    fired = CronTick.objects.filter(function_id="ticker", run__isnull=False)
    assert fired.count() == len(runs)
    completed = [run for run in runs if run.status == "completed"]
    assert len(completed) >= 2
    for run in completed:  # each tick's step executed once
        assert Effect.objects.filter(key="tick", run_id=run.event.data["tick"]).count() == 1
    # Consecutive ticks: none skipped while the workers were up.
    times = sorted(datetime.fromisoformat(t) for t in ticks)
    assert all(b - a == timedelta(seconds=2) for a, b in zip(times, times[1:], strict=False))
