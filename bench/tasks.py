"""The no-op task of bench/tasks_backend.py (Django's Tasks framework)."""

from django_tasks import task


@task()
def noop() -> None:
    return None
