"""Flow control and parallel steps with real ``runflows`` processes.

Steps record when they executed (``Span``: wall-clock start and end), so the
tests check limits and overlaps on what actually happened.
"""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connections

import durable_flows as df
from durable_flows.models import Run
from durable_flows.models import Worker as WorkerRow
from tests.conftest import is_postgres, wait_until
from tests.models import Effect, Span

pytestmark = pytest.mark.django_db(transaction=True)


def send(name: str, **data) -> str:
    (event_id,) = df.send(df.Event(name=name, data=data))
    return event_id


def finished(function_id: str, count: int):
    def check():
        done = Run.objects.filter(
            function_id=function_id, status__in=["completed", "failed", "cancelled", "skipped"]
        ).count()
        return done >= count

    return check


def max_overlap(spans: list[tuple[float, float]]) -> int:
    """The most intervals executing at one instant."""
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    current = best = 0
    for _, delta in edges:
        current += delta
        best = max(best, current)
    return best


def spans_by(key: str) -> dict[str, list[tuple[float, float]]]:
    result: dict[str, list[tuple[float, float]]] = {}
    for span in Span.objects.filter(key=key):
        result.setdefault(span.label, []).append((span.started, span.ended))
    return result


def in_threads(target, count: int) -> None:
    def run():
        try:
            target()
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)


def start_workers(start_worker, *args: str) -> list:
    """Two processes of 4 threads on PostgreSQL; SQLite has one worker process."""
    count = 2 if is_postgres() else 1
    workers = [start_worker("--concurrency", "4", *args) for _ in range(count)]
    if "--burst" not in args:  # wait until they are up, for tests that measure delays
        wait_until(lambda: WorkerRow.objects.count() >= count, timeout=60)
    return workers


# --- concurrency ---------------------------------------------------------------------


def check_tenants(tenants: list[str], runs_each: int, start_worker) -> None:
    # A backlog in FIFO order with the first tenant's runs at its head: the
    # others must not wait behind it.
    for tenant in tenants:
        for _ in range(runs_each):
            send("test/tenant-job", tenant=tenant, seconds=0.2)
    workers = start_workers(start_worker, "--burst")
    for worker in workers:
        assert worker.wait(180) == 0, worker.output()
    statuses = set(Run.objects.filter(function_id="per-tenant").values_list("status", flat=True))
    assert statuses == {"completed"}, "\n".join(w.output() for w in workers)
    by_tenant = spans_by("tenant")
    assert sorted(by_tenant) == sorted(tenants)
    for tenant, spans in by_tenant.items():
        assert len(spans) == 2 * runs_each
        assert max_overlap(spans) == 2, tenant  # the limit, and all of it used
    everything = [(s, e, t) for t, spans in by_tenant.items() for s, e in spans]
    side_by_side = max(
        len({t for s, e, t in everything if s <= instant < e}) for instant, _, _ in everything
    )
    assert side_by_side == len(tenants)


@pytest.mark.postgres
def test_concurrency_key_limits_each_tenant_across_two_worker_processes(start_worker):
    check_tenants(["t1", "t2", "t3"], 20, start_worker)


def test_concurrency_key_limits_each_tenant(start_worker):
    check_tenants(["t1", "t2", "t3"], 5, start_worker)


def test_two_concurrency_limits_hold_together(start_worker):
    for n in range(16):
        send("test/two-limits", account=f"acct-{n % 4}")
    for worker in start_workers(start_worker, "--burst"):
        assert worker.wait(120) == 0, worker.output()
    by_account = spans_by("two-limits")
    assert sum(len(s) for s in by_account.values()) == 16
    assert all(max_overlap(spans) == 1 for spans in by_account.values())
    assert max_overlap([s for spans in by_account.values() for s in spans]) == 3


# --- throttle, rate limit, idempotency -----------------------------------------------


def test_throttle_spreads_run_starts_over_the_period(start_worker):
    for _ in range(8):
        send("test/throttled", key="k")
    start_workers(start_worker)
    wait_until(finished("throttled", 8), timeout=60)
    runs = list(Run.objects.filter(function_id="throttled"))
    assert {r.status for r in runs} == {"completed"}
    starts = sorted(r.output for r in runs)
    # 2 per second, burst=1: two at once, then one every half second, even
    # though all the runs were due before the workers came up.
    # (Start i is due (i - 1) / 2 seconds after the first; 0.15s for worker lag.)
    assert all(t - starts[0] >= (i - 1) * 0.5 - 0.15 for i, t in enumerate(starts)), starts
    # At most limit + burst in a period (less a little for the lag between a
    # claim and its step's clock reading).
    assert max(sum(1 for t in starts if s <= t < s + 0.9) for s in starts) <= 3


def test_rate_limit_under_concurrent_senders_creates_exactly_the_limit(start_worker):
    in_threads(lambda: [send("test/rate-limited", user="u") for _ in range(5)], 4)
    statuses = list(Run.objects.filter(function_id="rate-limited").values_list("status", flat=True))
    assert (statuses.count("queued"), statuses.count("skipped")) == (3, 17)
    for worker in start_workers(start_worker, "--burst"):
        assert worker.wait(60) == 0
    assert Effect.objects.filter(key="rate-limited").count() == 3
    assert Run.objects.filter(function_id="rate-limited", status="skipped").count() == 17


def test_senders_of_several_keys_in_opposite_orders_do_not_deadlock(transactional_db):
    errors = []

    def sender(order):
        def send_many():
            for _ in range(10):
                try:
                    df.send(
                        [df.Event(name="test/debounced", data={"user": u, "n": 0}) for u in order]
                    )
                except Exception as exc:
                    errors.append(exc)

        return send_many

    threads = [
        threading.Thread(target=lambda o=o: (sender(o)(), connections.close_all()))
        for o in (["a", "b", "c"], ["c", "b", "a"], ["b", "c", "a"], ["a", "c", "b"])
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert Run.objects.filter(function_id="debounced").count() == 3  # one per user


def test_idempotency_under_concurrent_senders_starts_one_run(start_worker):
    in_threads(lambda: [send("test/idempotent", order_id=42) for _ in range(3)], 4)
    for worker in start_workers(start_worker, "--burst"):
        assert worker.wait(60) == 0
    assert Run.objects.filter(function_id="idempotent").count() == 1
    assert Effect.objects.filter(key="idempotent").count() == 1


# --- debounce, batching, priority ------------------------------------------------------


def test_debounce_runs_once_with_the_last_event(start_worker):
    start_workers(start_worker)
    for n in range(5):
        send("test/debounced", user="u", n=n)
        time.sleep(0.3)
    last_sent = time.time() - 0.3
    wait_until(finished("debounced", 1), timeout=30)
    time.sleep(0.5)
    (run,) = Run.objects.filter(function_id="debounced")
    assert (run.status, run.output, run.event.data["n"]) == ("completed", 4, 4)
    assert run.started_at.timestamp() >= last_sent + 1.0 - 0.05
    assert Effect.objects.filter(key="debounced").count() == 1


def test_batches_by_size_and_by_timeout(start_worker):
    start_workers(start_worker)
    first_sent = time.time()
    ids = [send("test/batched", group="g", n=n) for n in range(12)]
    wait_until(finished("batched", 3), timeout=30)
    runs = list(Run.objects.filter(function_id="batched").order_by("created_at"))
    assert [r.output for r in runs] == [list(range(5)), list(range(5, 10)), [10, 11]]
    assert [r.event_id for r in runs] == [ids[0], ids[5], ids[10]]
    full, partial = runs[0], runs[2]
    assert full.started_at.timestamp() - first_sent < 1.5
    assert partial.started_at.timestamp() - partial.created_at.timestamp() >= 2.0 - 0.05


def test_priority_orders_a_backlog(start_worker):
    priorities = [5, -100, 600, 0, 42, -600, 300, 1]
    for p in priorities:
        send("test/prioritised", priority=p)
    assert start_worker("--concurrency", "1", "--burst").wait(60) == 0
    runs = sorted(Run.objects.filter(function_id="prioritised"), key=lambda r: r.output)
    assert [r.priority for r in runs] == sorted(priorities, reverse=True)


# --- singleton ---------------------------------------------------------------------------


def running(function_id: str):
    return lambda: Run.objects.filter(function_id=function_id, status="running").first()


def test_singleton_skip_while_a_run_is_executing(start_worker):
    start_workers(start_worker)
    send("test/single-skip", user="u", n=1, seconds=1.5)
    first = wait_until(running("single-skip"), timeout=30)
    send("test/single-skip", user="u", n=2)
    wait_until(finished("single-skip", 2), timeout=30)
    first.refresh_from_db()
    assert first.status == "completed"
    assert list(Run.objects.filter(function_id="single-skip").values_list("status", flat=True))
    skipped = Run.objects.get(function_id="single-skip", event__data__n=2)
    assert skipped.status == "skipped" and skipped.started_at is None
    send("test/single-skip", user="u", n=3)
    wait_until(finished("single-skip", 3), timeout=30)
    assert Run.objects.get(function_id="single-skip", event__data__n=3).output == 3


def test_singleton_cancel_stops_the_executing_run_between_steps(start_worker):
    start_workers(start_worker)
    send("test/single-cancel", user="u", n=1, seconds=1.5)
    first = wait_until(running("single-cancel"), timeout=30)
    send("test/single-cancel", user="u", n=2)
    wait_until(finished("single-cancel", 2), timeout=30)
    first.refresh_from_db()
    second = Run.objects.get(function_id="single-cancel", event__data__n=2)
    assert (first.status, second.status, second.output) == ("cancelled", "completed", 2)
    assert second.started_at >= first.ended_at  # never both executing
    # The first run's step in progress finished; its next step never started.
    assert list(Span.objects.filter(run_id=first.pk).values_list("label", flat=True)) == ["one"]


# --- parallel steps ----------------------------------------------------------------------


def test_parallel_steps_execute_at_the_same_time(start_worker):
    start_workers(start_worker)
    send("test/fan-out", seconds=1.0)
    wait_until(finished("fan-out", 1), timeout=60)
    run = Run.objects.get(function_id="fan-out")
    assert run.status == "completed", run.error
    assert run.output["results"] == ["a", "b", "c"]
    spans = [(s.started, s.ended) for s in Span.objects.filter(key="fan-out", run_id=run.pk)]
    assert len(spans) == 3
    assert max_overlap(spans) == 3  # all three executing at one instant
    assert max(e for _, e in spans) - min(s for s, _ in spans) < 2.0


def test_parallel_steps_count_against_the_concurrency_limit(start_worker):
    send("test/fan-out-limited", seconds=0.3)
    send("test/fan-out-limited", seconds=0.3)
    for worker in start_workers(start_worker, "--burst"):
        assert worker.wait(60) == 0, worker.output()
    runs = Run.objects.filter(function_id="fan-out-one-at-a-time")
    assert [r.status for r in runs] == ["completed", "completed"]
    assert all(r.output["results"] == ["a", "b", "c"] for r in runs)
    spans = [(s.started, s.ended) for s in Span.objects.filter(key="fan-out")]
    assert len(spans) == 6
    assert max_overlap(spans) == 1


def test_a_parallel_step_whose_worker_dies_is_taken_over(start_worker):
    # The first "after_effect" is the inline step "before"; the second is a
    # parallel step's, after its span is written and before its checkpoint.
    doomed = start_worker("--concurrency", "1", faults="after_effect:2")
    send("test/fan-out", seconds=0)
    assert doomed.wait(60) == -9
    (run,) = Run.objects.filter(function_id="fan-out")
    assert run.status == "waiting"
    start_worker("--concurrency", "2")
    wait_until(finished("fan-out", 1), timeout=60)
    run.refresh_from_db()
    assert run.status == "completed", run.error
    assert run.output["results"] == ["a", "b", "c"]
    # One step executed twice (its effect was not atomic), but recorded once.
    labels = sorted(Span.objects.filter(run_id=run.pk).values_list("label", flat=True))
    assert len(labels) == 4 and set(labels) == {"a", "b", "c"}
    # The crash counts as a failed attempt of the step its worker died in.
    attempts = sorted(s.attempts for s in run.steps.filter(name__in=["a", "b", "c"]))
    assert attempts == [1, 1, 2]
