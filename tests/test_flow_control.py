"""Flow control at the point where runs are created, and parallel steps (in-process worker).

These run on SQLite and PostgreSQL; the multi-process tests are in
``test_flow_control_workers.py``.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

import durable_flows as df
from durable_flows import clock
from durable_flows.definitions.functions import registry
from durable_flows.exceptions import ConfigurationError
from durable_flows.models import Run, StepTask
from durable_flows.testing import run_until_idle
from tests.models import Effect, Span

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _reset_clock():
    yield
    clock.reset()


def send(name: str, **data) -> str:
    (event_id,) = df.send(df.Event(name=name, data=data))
    return event_id


def runs(function_id: str) -> list[Run]:
    return list(Run.objects.filter(function_id=function_id).order_by("created_at", "id"))


# --- configuration --------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency": [df.Concurrency(1)] * 3}, "at most 2 concurrency"),
        ({"concurrency": [df.Concurrency(1, key="event.data.a")] * 2}, "same key"),
        ({"concurrency": ["x"]}, "df.Concurrency"),
        ({"throttle": df.RateLimit(1, "1s")}, "throttle must be df.Throttle"),
        ({"idempotency": "event.data.("}, "invalid CEL"),
        (
            {"batch_events": df.Batch(10, "5s"), "debounce": df.Debounce("5s")},
            "cannot be combined with debounce",
        ),
        (
            {"batch_events": df.Batch(10, "5s"), "rate_limit": df.RateLimit(1, "5s")},
            "cannot be combined with rate_limit",
        ),
    ],
)
def test_bad_option_combinations_fail_at_import(options, message):
    with pytest.raises(ConfigurationError, match=message):
        df.function(id="bad-options", trigger=df.TriggerEvent(event="test/never"), **options)
    assert registry.get("bad-options") is None


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: df.Concurrency(limit=0), "positive integer"),
        (lambda: df.Concurrency(limit=2, key="event.data.("), "invalid CEL"),
        (lambda: df.Concurrency(limit=2, scope="account"), "scope"),
        (lambda: df.Throttle(limit=1, period="soon"), "not a duration"),
        (lambda: df.Throttle(limit=1, period="10d"), "between"),
        (lambda: df.Throttle(limit=1, period="1s", burst=-1), "burst"),
        (lambda: df.RateLimit(limit=1, period="0s"), "between"),
        (lambda: df.Debounce(period="10s", timeout="5s"), "timeout"),
        (lambda: df.Batch(max_size=0, timeout="1s"), "max_size"),
        (lambda: df.Priority(run="1 +"), "invalid CEL"),
        (lambda: df.Singleton(mode="queue"), "'skip' or 'cancel'"),
    ],
)
def test_bad_option_values_are_refused_clearly(make, message):
    with pytest.raises(ConfigurationError, match=message):
        make()


def test_options_are_described_for_the_api():
    described = registry.get("throttled").describe()
    assert described["throttle"] == {"limit": 2, "period": 1.0, "key": "event.data.key", "burst": 1}
    assert registry.get("per-tenant").describe()["concurrency"] == [
        {"limit": 2, "key": "event.data.tenant", "scope": "fn"}
    ]


# --- rate limit, idempotency, singleton -------------------------------------------


def test_rate_limit_skips_extra_runs_per_key():
    for _ in range(10):
        send("test/rate-limited", user="a")
    for _ in range(2):
        send("test/rate-limited", user="b")
    statuses = [(r.event.data["user"], r.status) for r in runs("rate-limited")]
    assert statuses.count(("a", "queued")) == 3
    assert statuses.count(("a", "skipped")) == 7
    assert statuses.count(("b", "queued")) == 2
    run_until_idle()
    assert Effect.objects.filter(key="rate-limited").count() == 5
    skipped = Run.objects.filter(function_id="rate-limited", status="skipped")
    assert all(r.started_at is None and r.ended_at is not None for r in skipped)
    # A minute later the user has budget again.
    clock.advance(timedelta(seconds=61))
    send("test/rate-limited", user="a")
    assert runs("rate-limited")[-1].status == "queued"


def test_idempotency_allows_one_run_per_key_per_day():
    send("test/idempotent", order_id=7)
    send("test/idempotent", order_id=7)
    send("test/idempotent", order_id=8)
    assert [r.event.data["order_id"] for r in runs("idempotent")] == [7, 8]
    run_until_idle()
    send("test/idempotent", order_id=7)
    assert len(runs("idempotent")) == 2
    clock.advance(timedelta(hours=24, seconds=1))
    send("test/idempotent", order_id=7)
    assert len(runs("idempotent")) == 3
    run_until_idle()
    assert Effect.objects.filter(key="idempotent").count() == 3
    # Without a key value there is nothing to deduplicate on.
    send("test/idempotent")
    send("test/idempotent")
    assert len(runs("idempotent")) == 5


def test_singleton_skip_skips_while_a_run_of_the_key_is_active():
    send("test/single-skip", user="u", n=1)
    send("test/single-skip", user="u", n=2)
    send("test/single-skip", user="v", n=3)
    assert [r.status for r in runs("single-skip")] == ["queued", "skipped", "queued"]
    run_until_idle()
    send("test/single-skip", user="u", n=4)
    assert [(r.output, r.status) for r in runs("single-skip")] == [
        (1, "completed"),
        (None, "skipped"),
        (3, "completed"),
        (None, "queued"),
    ]


def test_singleton_cancel_cancels_the_active_run_and_starts_the_new_one():
    send("test/single-cancel", user="u", n=1)
    send("test/single-cancel", user="u", n=2)
    first, second = runs("single-cancel")
    assert (first.status, second.status) == ("cancelled", "queued")
    run_until_idle()
    second.refresh_from_db()
    assert (second.status, second.output) == ("completed", 2)
    assert not Span.objects.filter(run_id=first.pk).exists()


# --- debounce, batching -------------------------------------------------------------


def test_debounce_starts_one_run_with_the_last_event_a_period_after_it():
    sent_at = clock.now()
    for n in range(4):
        send("test/debounced", user="u", n=n)
    send("test/debounced", user="other", n=99)
    (run, other) = runs("debounced")
    assert run.event.data["n"] == 3
    assert run.available_at >= sent_at + timedelta(seconds=1)
    run_until_idle()
    run.refresh_from_db()
    assert (run.status, run.output) == ("completed", 3)
    assert Effect.objects.filter(key="debounced").count() == 2


def test_debounce_timeout_caps_the_delay_from_the_first_event():
    first_at = clock.now()
    for n in range(4):
        send("test/debounced", user="u", n=n)
        clock.advance(timedelta(seconds=0.9))
    (run,) = runs("debounced")
    # The 4th event came 2.7s after the first: period 1s would be 3.7s, the timeout caps at 3s.
    delay = (run.available_at - first_at).total_seconds()
    assert 3 <= delay < 3.2
    assert run.event.data["n"] == 3
    clock.advance(timedelta(seconds=0.5))
    run_until_idle()
    run.refresh_from_db()
    assert run.output == 3
    send("test/debounced", user="u", n=10)  # the old run has started: a new debounce
    assert len(runs("debounced")) == 2


def test_batches_fill_up_to_max_size_and_a_partial_batch_waits_for_the_timeout():
    ids = [send("test/batched", group="g", n=n) for n in range(12)]
    batches = runs("batched")
    assert len(batches) == 3
    assert [r.event_id for r in batches] == [ids[0], ids[5], ids[10]]
    run_until_idle()  # the partial batch is not due for 2s; the full ones run now
    assert [r.status for r in runs("batched")][:2] == ["completed", "completed"]
    assert [r.output for r in runs("batched")][:2] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    clock.advance(timedelta(seconds=2))
    run_until_idle()
    assert runs("batched")[2].output == [10, 11]
    assert Effect.objects.filter(key="batched").count() == 3


def test_batches_are_per_key():
    for n in range(4):
        send("test/batched", group="even" if n % 2 == 0 else "odd", n=n)
    clock.advance(timedelta(seconds=2))
    run_until_idle()
    assert sorted(r.output for r in runs("batched")) == [[0, 2], [1, 3]]


# --- priority, throttle -------------------------------------------------------------


def test_higher_priority_runs_first_under_a_backlog():
    priorities = [0, 600, -600, 30, 1000, -5]
    for p in priorities:
        send("test/prioritised", priority=p)
    send("test/prioritised", priority="not a number")
    run_until_idle()
    order = sorted(runs("prioritised"), key=lambda r: r.output)
    assert [r.priority for r in order] == [600, 600, 30, 0, 0, -5, -600]
    assert [r.event.data["priority"] for r in order][:2] == [600, 1000]  # 1000 is clamped


def test_throttle_spreads_starts_and_drops_none():
    for _ in range(5):
        send("test/throttled", key="k")
    send("test/throttled", key="other")
    first = runs("throttled")[0].created_at
    starts = [r.available_at - first for r in runs("throttled")]
    starts[-1] = runs("throttled")[-1].available_at - runs("throttled")[-1].created_at
    # 2 per second with burst=1: two at once, then one every half second;
    # another key is not delayed.
    assert [round(s.total_seconds(), 1) for s in starts] == [0, 0, 0.5, 1.0, 1.5, 0]
    clock.advance(timedelta(seconds=2))
    run_until_idle()
    assert {r.status for r in runs("throttled")} == {"completed"}


# --- parallel steps -----------------------------------------------------------------


def test_parallel_steps_return_in_order_and_retry_on_their_own():
    (event_id,) = df.send(df.Event(name="test/fan-out", data={"fail": {"b": 2}}))
    run_until_idle()
    run = Run.objects.get(event_id=event_id)
    assert run.status == "completed", run.error
    assert run.output["results"] == ["a", "b", "c"]
    assert run.output["first"] == "before" and run.output["last"] == "after"
    assert "doomed failed" in run.output["caught"]
    steps = {s.name: s for s in run.steps.all()}
    assert (steps["a"].attempts, steps["b"].attempts, steps["c"].attempts) == (1, 3, 1)
    assert (steps["doomed"].status, steps["doomed"].attempts) == ("failed", 3)
    assert steps["fine"].status == "completed"
    assert Effect.objects.filter(key="parallel-a").count() == 1
    assert Effect.objects.filter(key="parallel-b").count() == 3
    assert not StepTask.objects.exists()
    assert [s.name for s in run.steps.all()] == ["before", "a", "b", "c", "doomed", "fine", "after"]


def test_a_run_waiting_for_its_parallel_steps_holds_no_worker_and_can_be_cancelled():
    (event_id,) = df.send(df.Event(name="test/fan-out", data={}))
    from durable_flows.engine import leases
    from durable_flows.models import Worker as WorkerRow

    worker = WorkerRow.objects.create(name="test")
    token, (run,) = leases.claim("default", worker.pk, None, registry.ids())
    from durable_flows.engine.executor import Execution

    Execution(run, token, registry.get("fan-out"), "default").execute()
    run.refresh_from_db()
    assert (run.status, run.lease_owner) == ("waiting", None)
    assert sorted(StepTask.objects.values_list("step_name", flat=True)) == ["a", "b", "c"]
    df.cancel(run.pk)
    run_until_idle()
    run.refresh_from_db()
    assert run.status == "cancelled"
    assert not StepTask.objects.exists()
    assert not Span.objects.filter(run_id=run.pk).exists()


def test_expired_flow_state_is_pruned_and_live_state_kept():
    from durable_flows.engine.admission import prune
    from durable_flows.models import FlowKey

    send("test/idempotent", order_id=1)
    send("test/rate-limited", user="a")
    send("test/debounced", user="u", n=1)
    send("test/single-skip", user="u", n=1)
    assert prune("default") == 0  # all of it still matters
    clock.advance(timedelta(seconds=21))
    run_until_idle()
    # The rate limit's bucket has refilled, the debounced and singleton runs are
    # done: only the idempotency key (24 h) is left.
    assert prune("default") == 3
    assert [k.split(":")[0] for k in FlowKey.objects.values_list("key", flat=True)] == [
        "idempotency"
    ]
    send("test/idempotent", order_id=1)
    assert len(runs("idempotent")) == 1
    clock.advance(timedelta(hours=25))
    assert prune("default") == 1
    send("test/idempotent", order_id=1)
    assert len(runs("idempotent")) == 2


def test_a_parallel_step_failing_first_does_not_stop_the_others():
    (event_id,) = df.send(df.Event(name="test/fail-fast"))
    run_until_idle()
    run = Run.objects.get(event_id=event_id)
    assert (run.status, run.output) == ("completed", {"caught": "boom"})
    steps = {s.name: s.status for s in run.steps.all()}
    assert steps == {"boom": "failed", "ok": "completed", "also-ok": "completed"}


@pytest.mark.django_db  # not transactional: inside the test's transaction, as TestCase
def test_limited_and_parallel_functions_run_inside_a_test_transaction():
    for tenant in ("a", "a", "b"):
        df.send(df.Event(name="test/tenant-job", data={"tenant": tenant, "seconds": 0}))
    df.send(df.Event(name="test/fan-out-limited", data={}))
    run_until_idle()
    statuses = Run.objects.filter(function_id__in=["per-tenant", "fan-out-one-at-a-time"])
    assert set(statuses.values_list("status", flat=True)) == {"completed"}
    assert Run.objects.get(function_id="fan-out-one-at-a-time").output["results"] == [
        "a",
        "b",
        "c",
    ]
