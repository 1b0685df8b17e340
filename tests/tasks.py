"""Tasks of Django's Tasks framework for tests/test_tasks_backend.py (a ``tasks`` module:
workers import it at start when the durable_flows backend is configured)."""

from __future__ import annotations

import os

from django.dispatch import receiver
from django_tasks import TaskContext, task
from django_tasks.signals import task_finished, task_started

from .models import Effect, Ledger


@task()
def add(a: int, b: int) -> int:
    return a + b


@task(queue_name="emails", priority=10)
def send_email(to: str) -> dict:
    Ledger.objects.create(key=f"email:{to}")
    return {"sent": to}


@task(takes_context=True, backend="retrying")
def flaky(context: TaskContext, key: str) -> dict:
    Effect.objects.create(key=key, run_id=context.task_result.id, pid=os.getpid())
    if context.attempt < 3:
        raise ConnectionError(f"attempt {context.attempt} failed")
    return {"attempt": context.attempt, "result_id": context.task_result.id}


@task()
def broken() -> None:
    raise ValueError("no such order")


@task()
async def async_double(n: int) -> int:
    return n * 2


@task()
def write_row(key: str) -> str:
    """Its row and its result commit together, exactly once."""
    Ledger.objects.create(key=key)
    return key


@task(backend="retrying")
def write_row_retrying(key: str) -> str:
    Ledger.objects.create(key=key)
    return key


# The framework's signals, as a project would receive them: in the worker, inside the
# task's transaction (so a failed attempt leaves no row).
@receiver(task_started)
def _started(sender, task_result, **kwargs) -> None:
    if task_result.task.func is add.func:
        Effect.objects.create(key=f"signal:started:{task_result.status}", run_id=task_result.id)


@receiver(task_finished)
def _finished(sender, task_result, **kwargs) -> None:
    if task_result.task.func is add.func:
        Effect.objects.create(key=f"signal:finished:{task_result.status}", run_id=task_result.id)
