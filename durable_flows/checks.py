"""System checks (``manage.py check``), with stable ids."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks

from .conf import flow_settings
from .exceptions import ConfigurationError

MIDDLEWARE = "durable_flows.middleware.RejectMalformedURLs"


@checks.register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    try:
        flow_settings.check()
    except ConfigurationError as exc:
        errors.append(
            checks.Error(
                str(exc),
                hint="See the settings reference (docs/reference/settings.md).",
                id="durable_flows.E001",
            )
        )
        return errors
    alias = flow_settings.DATABASE
    if alias not in settings.DATABASES:
        errors.append(
            checks.Error(
                f"DURABLE_FLOWS['DATABASE'] is {alias!r}, which is not in DATABASES.",
                hint="Name one of the aliases in DATABASES.",
                id="durable_flows.E002",
            )
        )
        return errors
    if not settings.USE_TZ:
        errors.append(
            checks.Error(
                "durable_flows needs USE_TZ = True: sleeps, retries and leases compare "
                "aware datetimes.",
                hint="Set USE_TZ = True in your settings.",
                id="durable_flows.E003",
            )
        )
    engine = settings.DATABASES[alias].get("ENGINE", "")
    if not engine.endswith(("postgresql", "sqlite3")):
        errors.append(
            checks.Warning(
                f"durable_flows is tested on PostgreSQL and SQLite only, not {engine!r}.",
                id="durable_flows.W001",
            )
        )
    options = settings.DATABASES[alias].get("OPTIONS", {})
    if engine.endswith("sqlite3") and options.get("transaction_mode") != "IMMEDIATE":
        errors.append(
            checks.Warning(
                "SQLite without immediate transactions: concurrent writers (a worker and "
                "your web process) can fail with 'database is locked'.",
                hint="Set DATABASES[...]['OPTIONS'] = {'transaction_mode': 'IMMEDIATE', "
                "'timeout': 30, 'init_command': 'PRAGMA journal_mode=WAL;'} "
                "(see docs/tutorial.md).",
                id="durable_flows.W003",
            )
        )
    if MIDDLEWARE not in getattr(settings, "MIDDLEWARE", []):
        errors.append(
            checks.Warning(
                f"{MIDDLEWARE!r} is not in MIDDLEWARE: durable_flows' own pages refuse URLs "
                "with NUL or invalid UTF-8, but Django's admin views for its models (e.g. "
                "admin/r/<content type>/<id>/) answer them with a server error on PostgreSQL.",
                hint=f"Put {MIDDLEWARE!r} first in MIDDLEWARE.",
                id="durable_flows.W004",
            )
        )
    if "rest_framework" not in settings.INSTALLED_APPS:
        errors.append(
            checks.Warning(
                "'rest_framework' is not in INSTALLED_APPS; the durable_flows API needs it.",
                hint="Add 'rest_framework' to INSTALLED_APPS.",
                id="durable_flows.W002",
            )
        )
    return errors
