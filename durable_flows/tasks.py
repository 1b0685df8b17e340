"""A backend for Django's Tasks framework: each task result is a durable_flows run.

```python
TASKS = {"default": {"BACKEND": "durable_flows.tasks.DurableFlowsBackend",
                     "QUEUES": ["default", "emails"], "OPTIONS": {"retries": 0}}}
```

Works with ``django.tasks`` (Django 6.0+) and with the ``django-tasks`` backport
(``django_tasks``), whichever is installed. ``runflows`` executes the tasks: the task
body runs as one atomic step, so its writes on the app's database and its result commit
together, exactly once; a task enqueued inside ``transaction.atomic()`` is stored with
the caller's commit and never runs if it rolls back. Each task is a durable function
named ``task:<module path>``, shown in the admin, the dashboard and the API.
"""

from __future__ import annotations

import importlib
import importlib.util
from datetime import datetime
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from . import clock
from .conf import db_alias
from .definitions.functions import Function, registry
from .exceptions import NonRetriableError
from .handles import start_run
from .models import Run, RunStatus, Step

_PACKAGE = "django.tasks" if importlib.util.find_spec("django.tasks") else "django_tasks"
_base = importlib.import_module(f"{_PACKAGE}.base")
_errors = importlib.import_module(f"{_PACKAGE}.exceptions")
_signals = importlib.import_module(f"{_PACKAGE}.signals")
_utils = importlib.import_module(f"{_PACKAGE}.utils")
BaseTaskBackend: Any = importlib.import_module(f"{_PACKAGE}.backends.base").BaseTaskBackend
_ResultStatus: Any = _base.TaskResultStatus

BACKEND_PATH = "durable_flows.tasks.DurableFlowsBackend"
FUNCTION_PREFIX = "task:"
STEP = "task"

_STATUS = {
    RunStatus.QUEUED: _ResultStatus.READY,
    RunStatus.RUNNING: _ResultStatus.RUNNING,
    RunStatus.WAITING: _ResultStatus.RUNNING,
    RunStatus.COMPLETED: _ResultStatus.SUCCESSFUL,
}


def function_id(task: Any) -> str:
    return FUNCTION_PREFIX + task.module_path


class DurableFlowsBackend(BaseTaskBackend):
    """Django's Tasks framework on durable_flows' runs and ``runflows`` workers."""

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        retries = self.options.get("retries", 0)
        if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 20:
            raise ImproperlyConfigured(
                f"TASKS[{alias!r}]['OPTIONS']['retries'] must be an integer from 0 to 20, "
                f"got {retries!r}"
            )
        self.retries = retries

    def validate_task(self, task: Any) -> None:
        """The framework's checks (module-level function, queue in ``QUEUES``, priority,
        ``run_after``), then the task is registered as a durable function, so that a
        worker that imported its module can execute it."""
        super().validate_task(task)
        self._function(task)

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        """Store the task as a run, in the caller's transaction; returns its result."""
        self.validate_task(task)
        data = {
            "task": task.module_path,
            "backend": self.alias,
            "args": _utils.normalize_json(args),
            "kwargs": _utils.normalize_json(kwargs),
        }
        handle = start_run(
            self._function(task),
            data,
            queue=task.queue_name,
            priority=task.priority,
            available_at=task.run_after,
        )
        result = self._result(task, handle.id, _ResultStatus.READY, data, enqueued_at=clock.now())
        _signals.task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> Any:
        """The task result of run ``result_id``, read now; ``TaskResultDoesNotExist``
        for an id that is no task's run."""
        run = (
            Run.objects.using(db_alias())
            .filter(pk=str(result_id), function_id__startswith=FUNCTION_PREFIX)
            .select_related("event")
            .first()
        )
        if run is None or run.event is None:
            raise _errors.TaskResultDoesNotExist(result_id)
        data = run.event.data
        task = _task(data["task"]).using(
            queue_name=run.queue, priority=run.priority, backend=self.alias
        )
        step = Step.objects.using(db_alias()).filter(run_id=run.pk, name=STEP).first()
        attempts = step.attempts if step is not None else 0
        # Each failed attempt's error, then the final one of a task that failed.
        history = step.failed_attempts if step is not None else None
        errors = [_task_error(entry.get("error") or {}) for entry in history or []]
        if run.status in (RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.SKIPPED):
            errors.append(_task_error(run.error or {}))
        result = self._result(
            task,
            run.pk,
            _STATUS.get(run.status, _ResultStatus.FAILED),
            data,
            enqueued_at=run.created_at,
            started_at=run.started_at,
            finished_at=run.ended_at,
            last_attempted_at=(step.started_at if step is not None else run.started_at),
            worker_ids=[run.lease_owner or "runflows"] * max(attempts, len(errors)),
            errors=errors,
        )
        if run.status == RunStatus.COMPLETED:
            object.__setattr__(result, "_return_value", run.output)
        return result

    def _function(self, task: Any) -> Function:
        found = registry.get(function_id(task))
        if found is None:
            found = Function(
                id=function_id(task),
                fn=_execute,
                triggers=(),
                retries=self.retries,
                queue=task.queue_name,
                name=task.name,
            )
            registry.add(found)
        return found

    def _result(
        self,
        task: Any,
        run_id: str,
        status: Any,
        data: dict[str, Any],
        *,
        enqueued_at: datetime | None = None,
        started_at: datetime | None = None,
        finished_at: datetime | None = None,
        last_attempted_at: datetime | None = None,
        worker_ids: list[str] | None = None,
        errors: list[Any] | None = None,
    ) -> Any:
        return _base.TaskResult(
            task=task,
            id=run_id,
            status=status,
            enqueued_at=enqueued_at,
            started_at=started_at,
            finished_at=finished_at,
            last_attempted_at=last_attempted_at,
            args=data.get("args", []),
            kwargs=data.get("kwargs", {}),
            backend=self.alias,
            errors=errors or [],
            worker_ids=worker_ids or [],
        )


def _execute(ctx: Any) -> Any:
    """The durable function of every task: the task body as one atomic step."""
    data = ctx.event.data
    return ctx.step.run(STEP, _call, ctx.run_id, data)


def _call(run_id: str, data: dict[str, Any]) -> Any:
    """One attempt of the task, inside its step's transaction; the framework's
    ``task_started`` and ``task_finished`` signals around it."""
    task = _task(data["task"])
    backend = _backend(data.get("backend"))
    args, kwargs = data.get("args", []), data.get("kwargs", {})
    now = clock.now()
    if task.takes_context:
        result = backend.get_result(run_id)
        # This execution is an attempt: the framework counts attempts by worker ids.
        object.__setattr__(result, "status", _ResultStatus.RUNNING)
        object.__setattr__(result, "last_attempted_at", now)
        result.worker_ids.append(run_id)
        args = [_base.TaskContext(task_result=result), *args]
    else:  # what the signals' receivers read, without a query
        result = backend._result(
            task, run_id, _ResultStatus.RUNNING, data, started_at=now, last_attempted_at=now
        )
    _signals.task_started.send(type(backend), task_result=result)
    try:
        value = _utils.normalize_json(task.call(*args, **kwargs))
    except BaseException as exc:
        error = _base.TaskError(
            exception_class_path=_utils.get_module_path(type(exc)),
            traceback=_utils.get_exception_traceback(exc),
        )
        result.errors.append(error)
        _finished(backend, result, _ResultStatus.FAILED)
        raise
    object.__setattr__(result, "_return_value", value)
    _finished(backend, result, _ResultStatus.SUCCESSFUL)
    return value


def _finished(backend: Any, result: Any, status: Any) -> None:
    object.__setattr__(result, "status", status)
    object.__setattr__(result, "finished_at", clock.now())
    _signals.task_finished.send(type(backend), task_result=result)


def _task(module_path: str) -> Any:
    try:
        task = import_string(module_path)
    except ImportError as exc:
        raise NonRetriableError(f"cannot import the task {module_path!r}: {exc}") from None
    if not isinstance(task, _base.Task):
        raise NonRetriableError(f"{module_path!r} is not a task (decorate it with @task)")
    return task


def _backend(alias: str | None) -> Any:
    backends = importlib.import_module(_PACKAGE).task_backends
    return backends[alias or "default"]


def _task_error(error: dict[str, Any]) -> Any:
    path = error.get("class") or f"durable_flows.exceptions.{error.get('type') or 'Exception'}"
    try:
        import_string(path)
    except ImportError:
        path = "builtins.Exception"  # a class the framework can import
    return _base.TaskError(
        exception_class_path=path,
        traceback=error.get("traceback") or f"{error.get('type')}: {error.get('message', '')}",
    )
