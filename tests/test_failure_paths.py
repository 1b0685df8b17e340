"""Failure paths through real ``runflows`` processes, on both databases (PostgreSQL with
group commit and prepared statements, as in production): retried steps complete, a
bad run fails alone, a crash is an attempt, a slow step holds only itself."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

import durable_flows as df
from durable_flows.models import Event, Run, Step, Worker
from tests.conftest import ROOT, wait_until
from tests.models import Effect

pytestmark = pytest.mark.django_db(transaction=True)


def send(name: str, count: int = 1, **data) -> list[str]:
    ids = df.send([df.Event(name=name, data=data) for _ in range(count)])
    return list(Run.objects.filter(event_id__in=ids).values_list("pk", flat=True))


def statuses(run_ids: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for status in Run.objects.filter(pk__in=run_ids).values_list("status", flat=True):
        found[status] = found.get(status, 0) + 1
    return found


def among_fifty_good(name: str, **data) -> tuple[list[str], str]:
    """Send 25 quick runs, one ``name`` run, 25 more: they are claimed together."""
    good = send("good/quick", 25)
    (bad,) = send(name, **data)
    return good + send("good/quick", 25), bad


def calls(marker: Path) -> int:
    return len(marker.read_text().splitlines()) if marker.exists() else 0


@pytest.mark.parametrize("workers", [1, 3])
@pytest.mark.parametrize("atomic", [True, False], ids=["atomic", "non-atomic"])
def test_a_retried_step_completes_soon_after_its_retry_is_due(
    start_worker, tmp_path, workers, atomic
):
    procs = [start_worker("--concurrency", "2") for _ in range(workers)]
    marker = tmp_path / "calls"
    (run_id,) = send("bad/transient", marker=str(marker), tag="t", atomic=atomic)
    wait_until(lambda: Run.objects.get(pk=run_id).status == "completed", timeout=30)
    run = Run.objects.get(pk=run_id)
    step = Step.objects.get(run_id=run_id, name="call")
    assert (run.output, step.status, step.attempts) == ("t", "completed", 2)
    assert calls(marker) == 2
    # The retry was due 0.05 s after the failure (the tests' back-off).
    assert (run.ended_at - step.started_at).total_seconds() < 2.0
    for proc in procs:
        assert proc.proc.poll() is None, proc.output()
        assert "recorded elsewhere" not in proc.output()


def test_an_always_failing_run_fails_alone_among_fifty_good_ones(start_worker, tmp_path):
    marker = tmp_path / "calls"
    good, bad = among_fifty_good("bad/always", marker=str(marker))
    worker = start_worker("--burst", "--concurrency", "2")
    assert worker.wait(60) == 0, worker.output()
    assert statuses(good) == {"completed": 50}
    run = Run.objects.get(pk=bad)
    step = Step.objects.get(run_id=bad)
    assert (run.status, step.status, step.attempts) == ("failed", "failed", 3)
    assert calls(marker) == 3  # retries=2
    assert "lease lost" not in worker.output()


def test_a_step_that_kills_its_process_fails_its_run_after_its_retries(start_worker, tmp_path):
    marker = tmp_path / "calls"
    good, bad = among_fifty_good("bad/crash", marker=str(marker))
    workers = [start_worker("--concurrency", "2") for _ in range(2)]
    deadline = time.monotonic() + 90
    while Run.objects.get(pk=bad).status != "failed" or statuses(good) != {"completed": 50}:
        assert time.monotonic() < deadline, (statuses(good), Run.objects.get(pk=bad).status)
        for i, worker in enumerate(workers):
            if worker.proc.poll() is not None:  # crashed: a supervisor restarts it
                workers[i] = start_worker("--concurrency", "2")
        time.sleep(0.1)
    run = Run.objects.get(pk=bad)
    assert run.error["type"] == "WorkerCrashed", run.error
    assert calls(marker) == 2  # retries=1: two attempts, each a crash
    assert run.attempt == 2
    assert Effect.objects.filter(key="quick").count() == 50


@pytest.mark.parametrize("kind", ["SystemExit", "KeyboardInterrupt"])
def test_a_base_exception_in_a_step_fails_the_run_and_the_thread_goes_on(
    start_worker, tmp_path, kind
):
    worker = start_worker("--concurrency", "2")
    marker = tmp_path / "calls"
    (bad,) = send("bad/base", kind=kind, marker=str(marker))
    wait_until(lambda: Run.objects.get(pk=bad).status == "failed", timeout=30)
    run = Run.objects.get(pk=bad)
    assert run.error["type"] == kind, run.error
    assert calls(marker) == 2  # retries=1
    # Both threads still take work: more runs than one thread would finish alone.
    good = send("good/quick", 40)
    wait_until(lambda: statuses(good) == {"completed": 40}, timeout=30)
    assert worker.proc.poll() is None, worker.output()
    assert not Run.objects.filter(status="running").exists()


def test_a_slow_atomic_step_delays_none_of_the_runs_claimed_with_it(start_worker, tmp_path):
    marker = tmp_path / "started"
    # Two workers of one thread each; warmed up, so that they claim runs in batches
    # (group commit).
    start_worker()
    start_worker()
    warm = send("good/quick", 100)
    wait_until(lambda: statuses(warm) == {"completed": 100}, timeout=30)
    before = send("good/quick", 50)
    (slow,) = send("slow/atomic", seconds=20, marker=str(marker))
    after = send("good/quick", 50)
    sent = time.time()
    wait_until(lambda: statuses(before + after) == {"completed": 100}, timeout=15)
    assert marker.exists() and Run.objects.get(pk=slow).status == "running"
    latest = max(r.ended_at for r in Run.objects.filter(pk__in=before + after)).timestamp()
    assert latest - sent < 1.5, latest - sent
    run = Run.objects.get(pk=slow)
    assert run.lease_owner and run.started_at  # what every other connection sees


def test_cancel_during_a_step_returns_at_once_and_the_run_ends_cancelled(start_worker, tmp_path):
    marker = tmp_path / "started"
    start_worker()
    warm = send("good/quick", 40)
    wait_until(lambda: statuses(warm) == {"completed": 40}, timeout=30)
    (slow,) = send("slow/atomic", seconds=3, marker=str(marker))
    send("good/quick", 10)
    wait_until(marker.exists, timeout=15)
    began = time.monotonic()
    assert df.cancel(slow).status in ("running", "cancelled")
    assert time.monotonic() - began < 1.0
    wait_until(lambda: Run.objects.get(pk=slow).status == "cancelled", timeout=15)


@pytest.mark.sqlite
def test_sqlite_another_process_sends_during_a_long_step(start_worker, tmp_path):
    marker = tmp_path / "started"
    start_worker()
    send("slow/atomic", seconds=20, marker=str(marker))
    wait_until(marker.exists, timeout=15)
    beat = Worker.objects.get().heartbeat_at
    code = (
        "import django; django.setup(); import durable_flows as df; "
        "print(df.send(df.Event(name='good/other', data={}))[0])"
    )
    began = time.monotonic()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DF_DB_NAME": str(connection.settings_dict["NAME"]),
    }
    sent = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert sent.returncode == 0, sent.stderr
    assert time.monotonic() - began < 10
    assert Event.objects.filter(pk=sent.stdout.strip()).exists()
    wait_until(lambda: Worker.objects.get().heartbeat_at > beat, timeout=5)
