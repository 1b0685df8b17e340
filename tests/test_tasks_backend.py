"""durable_flows as a backend of Django's Tasks framework (the django-tasks backport on
Django 5.2), used only through the framework's public API, executed by real
``runflows`` workers on both databases."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.db import connections, transaction
from django.utils import timezone
from django_tasks import TaskResultStatus, default_task_backend, task_backends
from django_tasks.exceptions import InvalidTaskError, TaskResultDoesNotExist, TaskResultMismatch

import durable_flows as df
from durable_flows.models import Run
from tests import tasks
from tests.models import Effect, Ledger

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_backend_says_what_it_supports():
    assert default_task_backend.supports_defer
    assert default_task_backend.supports_async_task
    assert default_task_backend.supports_get_result
    assert default_task_backend.supports_priority


def test_the_documented_flow_enqueue_then_refresh_and_read_the_return_value(start_worker):
    result = tasks.add.enqueue(2, 3)
    assert result.status == TaskResultStatus.READY
    assert not result.is_finished
    with pytest.raises(ValueError, match="not finished"):
        result.return_value  # noqa: B018
    run = Run.objects.get(pk=result.id)  # each task result is a run
    assert run.function_id == "task:tests.tasks.add"
    assert start_worker("--burst").wait(60) == 0
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 5
    assert result.args == [2, 3] and result.kwargs == {}
    assert result.enqueued_at and result.started_at and result.finished_at
    assert result.attempts == 1
    signals = Effect.objects.filter(run_id=result.id).values_list("key", flat=True)
    assert sorted(signals) == ["signal:finished:SUCCESSFUL", "signal:started:RUNNING"]
    again = tasks.add.get_result(result.id)
    assert again.return_value == 5 and again.task.func is tasks.add.func
    assert default_task_backend.get_result(result.id).status == TaskResultStatus.SUCCESSFUL


def test_a_result_read_through_another_task_is_a_mismatch():
    result = tasks.send_email.enqueue("ada@example.com")
    with pytest.raises(TaskResultMismatch):
        tasks.add.get_result(result.id)


def test_unknown_results_and_invalid_tasks_are_refused():
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result("01NOSUCHRESULT000000000000")
    with pytest.raises(InvalidTaskError, match="Queue 'nope'"):
        tasks.add.using(queue_name="nope")
    with pytest.raises(InvalidTaskError, match="priority"):
        tasks.add.using(priority=101)
    assert not Run.objects.exists()


def test_queue_priority_and_run_after_are_kept(start_worker):
    emailed = tasks.send_email.enqueue("ada@example.com")
    later = tasks.add.using(run_after=timezone.now() + timedelta(hours=1)).enqueue(1, 1)
    run = Run.objects.get(pk=emailed.id)
    assert (run.queue, run.priority) == ("emails", 10)
    assert Run.objects.get(pk=later.id).available_at > timezone.now() + timedelta(minutes=59)
    assert start_worker("--burst", "--queue", "emails").wait(60) == 0
    emailed.refresh()
    later.refresh()
    assert emailed.return_value == {"sent": "ada@example.com"}
    assert later.status == TaskResultStatus.READY  # not due yet
    assert later.task.run_after is None or later.status == TaskResultStatus.READY


def test_errors_read_as_the_framework_documents(start_worker):
    result = tasks.broken.enqueue()
    assert start_worker("--burst").wait(60) == 0
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    (error,) = result.errors
    assert error.exception_class is ValueError
    assert "no such order" in error.traceback and "Traceback" in error.traceback
    with pytest.raises(ValueError, match="Task failed"):
        result.return_value  # noqa: B018


def test_retries_from_options_and_the_context_attempt(start_worker):
    result = tasks.flaky.enqueue("flaky-key")
    assert result.backend == "retrying"
    assert start_worker("--burst").wait(120) == 0
    result = task_backends["retrying"].get_result(result.id)
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == {"attempt": 3, "result_id": result.id}
    assert result.attempts == 3
    # The two failed attempts' errors, in order, as the framework documents them.
    assert [e.exception_class for e in result.errors] == [ConnectionError, ConnectionError]
    assert "attempt 1 failed" in result.errors[0].traceback


def test_async_task_functions_run(start_worker):
    result = tasks.async_double.enqueue(21)
    assert start_worker("--burst").wait(60) == 0
    result.refresh()
    assert result.return_value == 42


def test_aenqueue_and_aget_result(start_worker):
    async def enqueue():
        enqueued = await tasks.add.aenqueue(20, 22)
        await sync_to_async(lambda: connections.close_all())()
        return enqueued

    result = asyncio.run(enqueue())
    assert start_worker("--burst").wait(60) == 0

    async def read():
        found = await tasks.add.aget_result(result.id)
        await result.arefresh()
        await sync_to_async(lambda: connections.close_all())()  # the ORM thread of async code
        return found

    found = asyncio.run(read())
    assert found.return_value == 42 and result.return_value == 42


def test_enqueue_commits_and_rolls_back_with_the_caller(start_worker):
    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        lost = tasks.write_row.enqueue("lost")
        raise Abort
    with transaction.atomic():
        kept = tasks.write_row.enqueue("kept")
    assert start_worker("--burst").wait(60) == 0
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result(lost.id)
    kept.refresh()
    assert kept.status == TaskResultStatus.SUCCESSFUL
    assert list(Ledger.objects.values_list("key", flat=True)) == ["kept"]


def test_a_worker_killed_right_after_the_commit_leaves_one_row_and_a_success(start_worker):
    """Exactly once: the task's row and its result commit together; the worker is
    SIGKILLed right after that commit, and another worker finishes the run. (The kill
    is a crash, an attempt: the task has retries to spare, as with any crash.)"""
    result = tasks.write_row_retrying.enqueue("exactly-once")
    killed = start_worker("--burst", faults="after_checkpoint")
    assert killed.wait(60) == -9, killed.output()
    assert Ledger.objects.filter(key="exactly-once").count() == 1
    rescuer = start_worker()  # it takes the run back once the dead worker's lease expires
    assert df.handle(result.id).result(timeout=60) == "exactly-once", rescuer.output()
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == "exactly-once"
    assert Ledger.objects.filter(key="exactly-once").count() == 1


def test_task_runs_are_listed_by_the_api_under_their_function(admin_client):
    result = tasks.add.enqueue(1, 2)
    response = admin_client.get("/flows/api/runs/", {"function_id": "task:tests.tasks.add"})
    assert response.status_code == 200
    assert [run["id"] for run in response.json()["results"]] == [result.id]


def test_task_runs_show_in_the_dashboard_and_the_admin(admin_client):
    result = tasks.add.enqueue(1, 2)
    page = admin_client.get(f"/flows/runs/{result.id}/")
    assert page.status_code == 200 and b"task:tests.tasks.add" in page.content
    listing = admin_client.get("/admin/durable_flows/run/", {"q": result.id})
    assert listing.status_code == 200 and result.id.encode() in listing.content


@pytest.mark.parametrize("retries", [-1, 21, "2", True])
def test_a_bad_retries_option_is_refused_clearly(retries):
    from django.core.exceptions import ImproperlyConfigured

    from durable_flows.tasks import DurableFlowsBackend

    with pytest.raises(ImproperlyConfigured, match=r"'retries'\] must be an integer from 0"):
        DurableFlowsBackend("bad", {"OPTIONS": {"retries": retries}})
