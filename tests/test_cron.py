"""TriggerCron: one run per tick however many workers; no burst after downtime."""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

import durable_flows as df
from durable_flows import cron, testing
from durable_flows.definitions.functions import registry
from durable_flows.exceptions import ConfigurationError
from durable_flows.models import CronTick, Run
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


# --- daylight-saving changes ------------------------------------------------------------

# 2026's clock changes, in UTC: Europe on 29 March and 25 October at 01:00; New York on
# 8 March at 07:00 (02:00 EST -> 03:00 EDT) and 1 November at 06:00 (02:00 EDT -> 01:00 EST).
CHANGES = {
    "Europe/Paris": [datetime(2026, 3, 29, 1, tzinfo=UTC), datetime(2026, 10, 25, 1, tzinfo=UTC)],
    "America/New_York": [
        datetime(2026, 3, 8, 7, tzinfo=UTC),
        datetime(2026, 11, 1, 6, tzinfo=UTC),
    ],
}
EVERY = {"0 * * * *": 60, "*/30 * * * *": 30, "* * * * *": 1}  # minutes between ticks
DAILY = {"30 1 * * *": (1, 30), "30 2 * * *": (2, 30)}
SWEEP = timedelta(hours=2)


def _set_clock(when: datetime) -> None:
    from durable_flows import clock

    clock.reset()
    clock.advance(when - clock.now())


def _first_wall_clock_reaching(tz, start: datetime, end: datetime, hour: int, minute: int):
    """The first minute in [start, end] at which the local wall clock shows hour:minute
    or later on the change's local day (when that time does not exist, the jump)."""
    moment = start
    while moment <= end:
        local = moment.astimezone(tz)
        if (local.hour, local.minute) >= (hour, minute) and local.date() == end.astimezone(
            tz
        ).date():
            return moment
        moment += timedelta(minutes=1)
    raise AssertionError("the wall clock never got there")


@pytest.mark.parametrize("zone", sorted(CHANGES))
def test_every_tick_runs_once_across_both_clock_changes(zone):
    """The engine's clock is stepped a minute at a time over each change; every tick
    cron defines starts one run, none is skipped in the repeated hour or doubled."""
    from durable_flows.conf import db_alias
    from durable_flows.scheduler import schedule_due

    tz = ZoneInfo(zone)
    expressions = [*EVERY, *DAILY]
    ids = {}
    for expression in expressions:
        function_id = f"dst-{expression}".replace(" ", "_").replace("*", "x").replace("/", "-")
        ids[expression] = function_id

        def tick(ctx: df.Context) -> str:
            return ctx.event.data["tick"]

        df.function(id=function_id, trigger=df.TriggerCron(cron=f"TZ={zone} {expression}"))(tick)
    try:
        for change in CHANGES[zone]:
            CronTick.objects.all().delete()
            Run.objects.all().delete()
            start, end = change - SWEEP, change + SWEEP
            minutes = int((end - start).total_seconds() // 60)
            moment = start + timedelta(seconds=30)  # mid-minute: no tick is exactly "now"
            while moment <= end:
                _set_clock(moment)
                schedule_due(db_alias(), testing.now())
                moment += timedelta(minutes=1)
            for expression, function_id in ids.items():
                fired = sorted(
                    CronTick.objects.filter(function_id=function_id, run__isnull=False).values_list(
                        "tick", flat=True
                    )
                )
                if expression in EVERY:  # whole-hour offsets: ticks are UTC minutes
                    step = EVERY[expression]
                    expected = [
                        start + timedelta(minutes=m)
                        for m in range(1, minutes)
                        if (start + timedelta(minutes=m)).minute % step == 0
                    ]
                else:
                    hour, minute = DAILY[expression]
                    expected = [_first_wall_clock_reaching(tz, start, end, hour, minute)]
                assert fired == expected, (zone, change, expression)
            fired_total = CronTick.objects.filter(run__isnull=False).count()
            assert Run.objects.filter(function_id__in=ids.values()).count() == fired_total
    finally:
        for function_id in ids.values():
            registry.remove(function_id)


@pytest.mark.parametrize(
    ("now", "tick"),
    [
        # Paris, 25 Oct 2026: 02:00-03:00 happens twice, at 00:00 and at 01:00 UTC.
        (datetime(2026, 10, 25, 0, 59, 30, tzinfo=UTC), datetime(2026, 10, 25, 0, 59, tzinfo=UTC)),
        (datetime(2026, 10, 25, 1, 0, 30, tzinfo=UTC), datetime(2026, 10, 25, 1, 0, tzinfo=UTC)),
        (datetime(2026, 10, 25, 1, 30, 0, tzinfo=UTC), datetime(2026, 10, 25, 1, 30, tzinfo=UTC)),
    ],
)
def test_the_latest_tick_in_the_repeated_hour_is_computed_in_utc(now, tick):
    every_minute = cron.parse("TZ=Europe/Paris * * * * *")
    assert every_minute.previous(now) == tick
    assert every_minute.next(tick - timedelta(seconds=1)) == tick
