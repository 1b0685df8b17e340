"""Group commit (engine/group_commit.py, PostgreSQL) with real ``runflows`` processes:
runs share commits, yet each step's writes and checkpoint still commit together or
not at all. On SQLite the same behaviours hold with one commit per step."""

from __future__ import annotations

import signal

import pytest

import durable_flows as df
from durable_flows.models import Event, Run
from tests.conftest import wait_until
from tests.models import Effect

pytestmark = pytest.mark.django_db(transaction=True)


def send_many(count: int, fail_every: int = 0) -> list[str]:
    ids = df.send(
        [
            df.Event(name="test/grouped", data={"fail": bool(fail_every) and i % fail_every == 0})
            for i in range(1, count + 1)
        ]
    )
    return list(Run.objects.filter(event_id__in=ids).values_list("pk", flat=True))


@pytest.mark.postgres
def test_single_step_runs_that_write_nothing_share_commits(start_worker):
    ids = df.send([df.Event(name="test/many", data={"steps": 1}) for _ in range(60)])
    worker = start_worker("--burst")
    assert worker.wait(60) == 0, worker.output()
    completed = Run.objects.filter(event_id__in=ids, status="completed")
    assert completed.count() == 60
    # Runs completed in one commit share its timestamp.
    commits = completed.values("ended_at").distinct().count()
    assert commits <= 60 // 3, commits


def test_a_step_that_writes_commits_before_another_step_starts(start_worker):
    """A transaction never holds two steps' writes: a slow or failing step cannot hold
    back, or roll back, another run's writes."""
    runs = send_many(60)
    worker = start_worker("--burst")
    assert worker.wait(60) == 0, worker.output()
    completed = Run.objects.filter(pk__in=runs, status="completed")
    assert completed.count() == 60
    assert completed.values("ended_at").distinct().count() == 60
    for run in completed:
        assert Effect.objects.filter(key="grouped", run_id=run.pk).count() == 1
        assert run.output == run.pk
    finished = Event.objects.filter(name="durable_flows/function.finished")
    assert finished.count() == 60


def test_a_failed_step_undoes_its_own_writes_only(start_worker):
    runs = send_many(60, fail_every=10)
    worker = start_worker("--burst")
    assert worker.wait(60) == 0, worker.output()
    completed = Run.objects.filter(pk__in=runs, status="completed")
    failed = Run.objects.filter(pk__in=runs, status="failed")
    assert (completed.count(), failed.count()) == (54, 6)
    # The write of a step that raised was undone with it, and nothing of the runs
    # that shared its transaction.
    for run in completed:
        assert Effect.objects.filter(key="grouped", run_id=run.pk).count() == 1
    for run in failed:
        assert not Effect.objects.filter(key="grouped", run_id=run.pk).exists()
        assert run.error["message"] == "refused after writing"


def test_a_checkpoint_is_committed_before_the_next_step_runs(start_worker):
    (event_id,) = df.send(df.Event(name="test/visible"))
    worker = start_worker("--burst")
    assert worker.wait(60) == 0, worker.output()
    run = Run.objects.get(event_id=event_id)
    # Seen from another connection by the second step: the first step's row and
    # its checkpoint.
    assert (run.status, run.output) == ("completed", [1, 1])


def test_a_crash_inside_a_group_rolls_it_back_and_loses_nothing(start_worker):
    runs = send_many(40)
    doomed = start_worker(faults="after_effect:12")
    assert doomed.wait(60) == -signal.SIGKILL
    rescuer = start_worker()
    wait_until(lambda: Run.objects.filter(pk__in=runs, status="completed").count() == 40, 60)
    rescuer.signal(signal.SIGTERM)
    assert rescuer.wait(30) == 0
    for run_id in runs:
        assert Effect.objects.filter(key="grouped", run_id=run_id).count() == 1
