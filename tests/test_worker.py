"""Real ``runflows`` processes: burst, signals, crashes, leases, several workers."""

from __future__ import annotations

import signal
import time

import pytest
from django.db.models import Count

import durable_flows as df
from durable_flows.models import Run, Step, Worker
from tests.conftest import wait_until
from tests.models import Effect, Ledger

pytestmark = pytest.mark.django_db(transaction=True)


def send(name: str, **data) -> str:
    (event_id,) = df.send(df.Event(name=name, data=data))
    return Run.objects.get(event_id=event_id).pk


def status(run_id: str) -> str:
    return Run.objects.get(pk=run_id).status


def test_burst_exits_zero_when_nothing_is_runnable(start_worker):
    worker = start_worker("--burst")
    assert worker.wait(30) == 0, worker.output()
    assert not Worker.objects.exists()  # it unregistered


def test_burst_runs_everything_then_exits(start_worker):
    runs = [send("test/three") for _ in range(5)]
    worker = start_worker("--burst", "--concurrency", "2")
    assert worker.wait(60) == 0, worker.output()
    assert {status(r) for r in runs} == {"completed"}
    assert "executed 5 run(s)" in worker.output()


def test_sigterm_finishes_the_step_in_hand_then_exits_zero(start_worker, tmp_path):
    marker = tmp_path / "started"
    run_id = send("test/slow", seconds=1.5, marker=str(marker))
    worker = start_worker()
    wait_until(marker.exists, timeout=30)
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0, worker.output()
    run = Run.objects.get(pk=run_id)
    # The slow step finished and was recorded; the run was handed back, not stuck.
    assert run.status == "queued"
    assert run.lease_owner is None
    assert run.steps.get(name="middle").status == "completed"
    assert Effect.objects.filter(key="slow-done", run_id=run_id).count() == 1
    # Another worker finishes it without executing the slow step again.
    assert start_worker("--burst").wait(60) == 0
    assert status(run_id) == "completed"
    assert Effect.objects.filter(key="slow-done", run_id=run_id).count() == 1


def test_kill9_mid_step_another_worker_finishes_after_the_lease(start_worker, tmp_path):
    marker = tmp_path / "started"
    run_id = send("test/slow", seconds=3, marker=str(marker))
    doomed = start_worker()
    wait_until(marker.exists, timeout=30)
    doomed.kill9()
    assert status(run_id) == "running"
    killed_at = time.monotonic()
    rescuer = start_worker()
    wait_until(lambda: status(run_id) == "completed", timeout=60)
    # Not before the dead worker's lease (2 s in tests) expired.
    assert time.monotonic() - killed_at >= 1.5
    rescuer.signal(signal.SIGTERM)
    assert rescuer.wait(30) == 0
    # The step completed before the crash ran once; the interrupted one ran again.
    assert Effect.objects.filter(key="slow-first", run_id=run_id).count() == 1
    assert Effect.objects.filter(key="slow-last", run_id=run_id).count() == 1
    assert Effect.objects.filter(key="slow-done", run_id=run_id).count() == 1
    assert Run.objects.get(pk=run_id).output == [1, "slow done", 1]


def test_sigkill_right_after_an_atomic_commit_leaves_exactly_one_row(start_worker):
    run_id = send("test/atomic", key="once")
    # The first checkpoint committed is the atomic "write" step: die right there.
    doomed = start_worker(faults="after_checkpoint")
    assert doomed.wait(30) == -signal.SIGKILL
    assert Ledger.objects.filter(key="once").count() == 1
    assert status(run_id) == "running"
    rescuer = start_worker()
    wait_until(lambda: status(run_id) == "completed", timeout=60)
    rescuer.signal(signal.SIGTERM)
    assert rescuer.wait(30) == 0
    assert Ledger.objects.filter(key="once").count() == 1
    run = Run.objects.get(pk=run_id)
    assert [(s.name, s.attempts) for s in run.steps.all()] == [("write", 1), ("after", 1)]


def test_sigkill_after_the_effect_before_the_checkpoint_rolls_the_effect_back(start_worker):
    run_id = send("test/atomic", key="rolled-back")
    doomed = start_worker(faults="after_effect")
    assert doomed.wait(30) == -signal.SIGKILL
    assert not Ledger.objects.filter(key="rolled-back").exists()
    rescuer = start_worker()
    wait_until(lambda: status(run_id) == "completed", timeout=60)
    rescuer.signal(signal.SIGTERM)
    assert rescuer.wait(30) == 0
    assert Ledger.objects.filter(key="rolled-back").count() == 1


def test_a_worker_that_lost_its_lease_cannot_record_a_step(start_worker, tmp_path):
    marker = tmp_path / "started"
    run_id = send("test/slow", seconds=2, marker=str(marker))
    worker = start_worker()
    wait_until(marker.exists, timeout=30)
    # Someone else takes the run over while the slow step is executing.
    Run.objects.filter(pk=run_id).update(lease_token="stolen", lease_owner="elsewhere")
    wait_until(lambda: "no longer leased to this worker" in worker.output(), timeout=30)
    assert not Step.objects.filter(run_id=run_id, name="middle").exists()
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0


def _race(start_worker, runs: int, workers: int, concurrency: str) -> None:
    run_ids = [send("test/three") for _ in range(runs)]
    procs = [start_worker("--burst", "--concurrency", concurrency) for _ in range(workers)]
    for proc in procs:
        assert proc.wait(300) == 0, proc.output()
    assert Run.objects.filter(pk__in=run_ids, status="completed").count() == runs
    for key in ("step-a", "step-b", "step-c"):
        counts = Effect.objects.filter(key=key).values("run_id").annotate(n=Count("id"))
        assert len(counts) == runs
        assert {row["n"] for row in counts} == {1}, f"{key} executed twice for some run"
    assert Step.objects.filter(run_id__in=run_ids).count() == 3 * runs
    pids = set(Effect.objects.filter(key="step-a").values_list("pid", flat=True))
    assert len(pids) >= 2, "the work was not shared between processes"


@pytest.mark.postgres
def test_three_workers_on_postgres_run_500_runs_once_each(start_worker):
    _race(start_worker, runs=500, workers=3, concurrency="2")


def test_several_workers_on_one_database_never_run_a_step_twice(start_worker):
    _race(start_worker, runs=60, workers=2, concurrency="1")


@pytest.mark.postgres
def test_an_idle_worker_wakes_on_notify_not_on_its_poll(start_worker):
    worker = start_worker(DF_POLL_INTERVAL="60")
    wait_until(Worker.objects.exists, timeout=30)
    time.sleep(1)  # let it settle into its 60 s idle wait, LISTENing
    sent = time.monotonic()
    run_id = send("test/one")
    wait_until(lambda: status(run_id) == "completed", timeout=30, interval=0.01)
    assert time.monotonic() - sent < 2, "the worker waited for its poll, not for NOTIFY"
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0


def test_a_worker_only_takes_the_queues_it_is_given(start_worker):
    slow = send("test/other-queue")
    default = send("test/one")
    assert start_worker("--burst", "--queue", "default").wait(60) == 0
    assert (status(slow), status(default)) == ("queued", "completed")
    assert start_worker("--burst", "--queue", "slow", "--worker-id", "slow-1").wait(60) == 0
    assert status(slow) == "completed"


def test_sigkill_between_claim_and_start_loses_nothing(start_worker):
    run_id = send("test/three")
    doomed = start_worker(faults="after_claim")
    assert doomed.wait(30) == -signal.SIGKILL
    # The claim commits before any of the run's code executes (on both databases): the
    # run reads "running" and waits for its dead worker's lease to expire; the crash
    # then counts as one failed attempt.
    assert status(run_id) == "running"
    rescuer = start_worker()
    wait_until(lambda: status(run_id) == "completed", timeout=60)
    rescuer.signal(signal.SIGTERM)
    assert rescuer.wait(30) == 0
    assert Effect.objects.filter(key="step-a", run_id=run_id).count() == 1
    assert Run.objects.get(pk=run_id).attempt == 1
