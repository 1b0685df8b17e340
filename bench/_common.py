"""Set-up shared by the benchmark scripts: settings, a database, worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG_URL = "postgres://postgres@127.0.0.1:5432/durable_flows_bench"


def setup(url: str | None = None) -> str:
    """Point Django at ``url`` (default: DATABASE_URL, or a fresh SQLite file), migrate."""
    sys.path.insert(0, str(ROOT))
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    url = (
        url
        or os.environ.get("DATABASE_URL")
        or "sqlite:///" + os.path.join(tempfile.mkdtemp(prefix="df-bench-"), "bench.sqlite3")
    )
    os.environ["DATABASE_URL"] = url
    if url.startswith("postgres"):
        _create_pg_database(url)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    return url


def _create_pg_database(url: str) -> None:
    import psycopg

    base, name = url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def reset_tables() -> None:
    """Empty the app's tables. On PostgreSQL with TRUNCATE: mass deletes leave dead index
    entries that slow planning until autovacuum runs, which would skew the next figure."""
    from django.apps import apps
    from django.db import connection, transaction

    tables = [m._meta.db_table for m in apps.get_app_config("durable_flows").get_models()]
    # One transaction: SQLite checks the (deferred) foreign keys once all are empty.
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " CASCADE")
        else:
            for table in tables:
                cursor.execute(f'DELETE FROM "{table}"')


def start_worker(*args: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "runflows", *args],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "bench.settings", **env},
        stdout=subprocess.DEVNULL,
    )
