"""bench.settings with Django's Tasks framework on one backend: ``TASKS_BACKEND=durable_flows``
(this app, executed by ``runflows``) or ``TASKS_BACKEND=django-tasks-db`` (django-tasks-db's
``DatabaseBackend``, executed by its ``db_worker``)."""

import os

from bench.settings import *  # noqa: F403
from bench.settings import INSTALLED_APPS

_BACKENDS = {
    "durable_flows": "durable_flows.tasks.DurableFlowsBackend",
    "django-tasks-db": "django_tasks_db.DatabaseBackend",
}
_which = os.environ.get("TASKS_BACKEND", "durable_flows")
INSTALLED_APPS = [*INSTALLED_APPS, "django_tasks"]
if _which == "django-tasks-db":
    INSTALLED_APPS.append("django_tasks_db")
TASKS = {"default": {"BACKEND": _BACKENDS[_which]}}
