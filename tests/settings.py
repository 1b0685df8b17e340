"""Test settings: the example project plus the ``tests`` app, with fast timings.

DATABASE_URL selects the database (SQLite file by default). Worker processes
started by the tests get DF_DB_NAME, the name of the test database.
"""

import os
import tempfile

import environ

from project.settings import *  # noqa: F403
from project.settings import BASE_DIR, INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "django_tasks", "tests"]

# Django's Tasks framework (the django-tasks backport on Django 5.2) on durable_flows.
TASKS = {
    "default": {
        "BACKEND": "durable_flows.tasks.DurableFlowsBackend",
        "QUEUES": ["default", "emails"],
        "OPTIONS": {"retries": 0},
    },
    "retrying": {
        "BACKEND": "durable_flows.tasks.DurableFlowsBackend",
        "OPTIONS": {"retries": 2},
    },
}

_url = os.environ.get("DATABASE_URL") or "sqlite:///" + os.path.join(
    tempfile.gettempdir(), "durable_flows_dev.sqlite3"
)
DATABASES = {"default": environ.Env.db_url_config(_url)}
_db = DATABASES["default"]
if _db["ENGINE"].endswith("sqlite3"):
    _db["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not :memory:, so that worker processes see the test database.
    _db["TEST"] = {
        "NAME": os.path.join(tempfile.gettempdir(), f"durable_flows_test_{os.getpid()}.sqlite3")
    }
else:
    _db["TEST"] = {"NAME": "test_durable_flows_" + os.environ.get("DF_TEST_DB_SUFFIX", "main")}
if os.environ.get("DF_DB_NAME"):
    _db["NAME"] = os.environ["DF_DB_NAME"]

DURABLE_FLOWS = {
    "LEASE_SECONDS": 2,
    "RETRY_BACKOFF_SECONDS": (0.05,),
    "RETRY_JITTER_SECONDS": 0,
    "POLL_INTERVAL_SECONDS": float(os.environ.get("DF_POLL_INTERVAL", "0.2")),
    "SQLITE_POLL_INTERVAL_SECONDS": 0.05,
}

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"durable_flows": {"handlers": ["console"], "level": "INFO"}},
}
TEST_ROOT = BASE_DIR / "tests"
