"""PostgreSQL restarted under running workers: they log, reconnect and finish everything.

Uses a private PostgreSQL server (initdb in a temporary directory), so that
restarting it disturbs nothing else.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from tests.conftest import ROOT, WorkerProcess, wait_until
from tests.pg_server import PrivatePostgres

pytestmark = pytest.mark.postgres


@pytest.fixture
def private_pg():
    server = PrivatePostgres()
    server.start()
    with psycopg.connect(server.url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute("CREATE DATABASE faults")
    yield server
    server.destroy()


def _env(server: PrivatePostgres, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": server.url,
        "PYTHONUNBUFFERED": "1",
        **extra,
    }
    env.pop("DF_DB_NAME", None)
    return env


def _manage(server: PrivatePostgres, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=_env(server),
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def _send(server: PrivatePostgres, name: str, count: int) -> None:
    code = f"import durable_flows as df; df.send([df.Event(name={name!r}) for _ in range({count})])"
    _manage(server, "shell", "-v", "0", "-c", code)


def _query(server: PrivatePostgres, sql: str):
    with psycopg.connect(server.url) as conn:
        return conn.execute(sql).fetchall()


def _count(server: PrivatePostgres, status: str) -> int:
    return _query(server, f"SELECT count(*) FROM durable_flows_run WHERE status = '{status}'")[0][0]


def _start(server: PrivatePostgres, tmp_path: Path, i: int, **env: str) -> WorkerProcess:
    return WorkerProcess(["--concurrency", "2"], _env(server, **env), tmp_path / f"w{i}.log")


def test_workers_survive_a_database_restart_mid_run(private_pg, tmp_path):
    _manage(private_pg, "migrate", "-v", "0")
    _send(private_pg, "test/three", 300)
    workers = [_start(private_pg, tmp_path, i) for i in range(2)]
    try:
        wait_until(lambda: _count(private_pg, "completed") >= 20, timeout=60)
        private_pg.restart()
        time.sleep(0.5)
        private_pg.restart()
        wait_until(lambda: _count(private_pg, "completed") == 300, timeout=120, interval=0.2)
        for worker in workers:
            worker.signal(signal.SIGTERM)
        for worker in workers:
            assert worker.wait(60) == 0, worker.output()
    finally:
        for worker in workers:
            worker.stop()
    logs = "".join(worker.output() for worker in workers)
    assert "retrying" in logs or "LISTEN connection lost" in logs, "the restart went unnoticed"
    assert "Traceback" not in logs, logs
    assert _count(private_pg, "running") == 0
    doubled = _query(
        private_pg,
        "SELECT key, run_id FROM tests_effect WHERE key LIKE 'step-%' "
        "GROUP BY key, run_id HAVING count(*) > 1",
    )
    assert doubled == []
    (per_key,) = _query(
        private_pg, "SELECT count(DISTINCT run_id) FROM tests_effect WHERE key = 'step-c'"
    )
    assert per_key[0] == 300


def test_listen_recovers_after_its_connection_drops(private_pg, tmp_path):
    _manage(private_pg, "migrate", "-v", "0")
    worker = _start(private_pg, tmp_path, 0, DF_POLL_INTERVAL="60")
    try:
        wait_until(
            lambda: _query(private_pg, "SELECT count(*) FROM durable_flows_worker")[0][0],
            timeout=30,
        )
        private_pg.restart()
        wait_until(lambda: "LISTEN connection lost" in worker.output(), timeout=30)
        time.sleep(2)  # the listener reconnects within about a second
        sent = time.monotonic()
        _send(private_pg, "test/one", 1)
        wait_until(lambda: _count(private_pg, "completed") == 1, timeout=30, interval=0.05)
        # Far sooner than the 60 s poll: the wake-up came through LISTEN again.
        assert time.monotonic() - sent < 10
        worker.signal(signal.SIGTERM)
        assert worker.wait(60) == 0, worker.output()
    finally:
        worker.stop()
