"""What a newcomer meets first: a worker started before ``migrate`` says so at once, and a
worker says what it does even when the project configures no logging."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

import durable_flows as df
from durable_flows.definitions.functions import registry
from durable_flows.models import Run
from tests.conftest import ROOT, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def test_runflows_before_migrate_says_so_at_once(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'empty.sqlite3'}",
    }
    env.pop("DF_DB_NAME", None)
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "runflows"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert time.monotonic() - began < 20
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "manage.py migrate" in lines[0]
    assert "Traceback" not in done.stderr


def test_a_worker_without_logging_settings_says_what_it_does(start_worker):
    (done,) = df.send(df.Event(name="test/one"))
    (failed,) = df.send(df.Event(name="test/nonretriable"))
    worker = start_worker("--burst", DJANGO_SETTINGS_MODULE="tests.settings_nolog")
    assert worker.wait(60) == 0, worker.output()
    output = worker.output()
    assert "started: 1 thread(s)" in output and "functions: " in output and "one-step" in output
    run = Run.objects.get(event_id=done)
    assert f"run {run.pk} of one-step completed in " in output
    bad = Run.objects.get(event_id=failed)
    assert (
        f"run {bad.pk} of non-retriable failed in step 'charge': NonRetriableError: card declined"
        in output
    )


RELOAD_FLOWS = """import durable_flows as df


@df.function(id="reload-me", trigger=df.TriggerEvent(event="test/reload"))
def reload_me(ctx):
    return {"version": VERSION}
"""


def test_runflows_reload_restarts_on_a_code_change_and_stops_gracefully(start_worker, tmp_path):
    app = tmp_path / "reload_app"
    app.mkdir()
    (app / "__init__.py").write_text("")
    flows = app / "flows.py"
    flows.write_text(RELOAD_FLOWS.replace("VERSION", "1"))

    @df.function(id="reload-me", trigger=df.TriggerEvent(event="test/reload"))
    def stand_in(ctx):  # this process only sends; the worker runs reload_app's version
        raise AssertionError("not run here")

    try:
        worker = start_worker(
            "--reload",
            DJANGO_SETTINGS_MODULE="tests.settings_reload",
            PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}",
        )

        def output_of(event_id: str):
            wait_until(
                lambda: Run.objects.filter(event_id=event_id, status="completed").exists(),
                timeout=60,
            )
            return Run.objects.get(event_id=event_id).output

        (first,) = df.send(df.Event(name="test/reload"))
        assert output_of(first) == {"version": 1}, worker.output()

        flows.write_text(RELOAD_FLOWS.replace("VERSION", "2"))
        later = time.time() + 5  # a new mtime even on a coarse clock
        os.utime(flows, (later, later))
        wait_until(lambda: "changed: finishing the steps in hand" in worker.output(), 30)
        (second,) = df.send(df.Event(name="test/reload"))
        assert output_of(second) == {"version": 2}, worker.output()
        assert worker.proc.poll() is None  # the same command, still running

        worker.signal(signal.SIGTERM)
        assert worker.wait(30) == 0, worker.output()
        assert "Traceback" not in worker.output()
    finally:
        registry.remove("reload-me")
