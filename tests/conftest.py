from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def start(name: str, **data):
    """Send one event and return the run it started (the only one)."""
    import durable_flows as df
    from durable_flows.models import Run

    (event_id,) = df.send(df.Event(name=name, data=data))
    return Run.objects.get(event_id=event_id)


def effects(key: str, run) -> int:
    """How many times something counted under ``key`` happened for ``run``."""
    from tests.models import Effect

    return Effect.objects.filter(key=key, run_id=run.pk).count()


@pytest.fixture(scope="session", autouse=True)
def _close_result_listeners(django_db_setup, django_db_blocker):
    """Result waiters' LISTEN connections close before the test databases are dropped."""
    yield
    from durable_flows import notify

    notify.close_listeners()


@pytest.fixture(autouse=True)
def _real_clock():
    """Tests may move the engine's clock (durable_flows.testing.advance); put it back."""
    yield
    from durable_flows import testing

    testing.reset_clock()


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``postgres`` run only on PostgreSQL, ``sqlite`` only on SQLite."""
    on_postgres = os.environ.get("DATABASE_URL", "").startswith(("postgres", "pgsql"))
    other = "sqlite" if on_postgres else "postgres"
    deselected = [item for item in items if item.get_closest_marker(other)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker(other)]


class WorkerProcess:
    """A real ``manage.py runflows`` process against the test database."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._log_file = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "runflows", *args],
            cwd=ROOT,
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # stop() kills what it started, children included
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait(self, timeout: float = 60) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"worker did not exit in {timeout}s:\n{self.output()}")

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def output(self) -> str:
        if not self._log_file.closed:
            self._log_file.flush()
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._log_file.close()


@pytest.fixture
def start_worker(transactional_db, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start ``runflows`` processes; each is killed at the end of the test."""
    started: list[WorkerProcess] = []

    def start(*args: str, faults: str = "", **extra_env: str) -> WorkerProcess:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DF_DB_NAME": str(connection.settings_dict["NAME"]),
            "PYTHONUNBUFFERED": "1",
            **extra_env,
        }
        if faults:
            env["DURABLE_FLOWS_FAULTS"] = faults
        worker = WorkerProcess(list(args), env, tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture(params=["in-process", "runflows"])
def execute(request):
    """Execute what is runnable: in this process (``run_until_idle``), or by a real
    ``runflows --burst`` process with two threads (on PostgreSQL: group commit and
    prepared statements on, as in production)."""
    if request.param == "in-process":
        from durable_flows.testing import run_until_idle

        return run_until_idle
    start_worker = request.getfixturevalue("start_worker")

    def execute() -> None:
        worker = start_worker("--burst", "--concurrency", "2")
        assert worker.wait(60) == 0, worker.output()

    return execute


def wait_until(predicate: Callable[[], object], timeout: float = 30, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")
