"""Chaos: workers killed with SIGKILL at random while they execute runs; nothing is lost.

    make chaos                                   # 2,000 runs x 7 steps, 3 workers, PostgreSQL
    python -m tests.chaos --runs 300 --workers 3 # a shorter one

A short version runs in the suite (tests/test_chaos.py). At the end it checks:
every run completed; every atomic step's row exists exactly once; the
non-atomic steps ran again at most once per kill; no run is left running.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/durable_flows_chaos"


def start_worker(db_name: str, log: Path) -> subprocess.Popen:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DF_DB_NAME": db_name}
    env.pop("DURABLE_FLOWS_FAULTS", None)
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "runflows", "--concurrency", "2"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def run(
    *,
    runs: int,
    workers: int,
    db_name: str,
    workdir: Path,
    sleep: str = "2s",
    kill_every: tuple[float, float] = (1.0, 3.0),
    timeout: float = 900,
    say: Callable[[str], None] = print,
) -> dict:
    import durable_flows as df
    from durable_flows.models import Run, Step
    from tests.models import Effect

    lines = workdir / "appended.txt"
    lines.write_text("")
    for start in range(0, runs, 500):
        df.send(
            [
                df.Event(
                    name="test/chaos", data={"log": str(lines), "key": f"k{i}", "sleep": sleep}
                )
                for i in range(start, min(runs, start + 500))
            ]
        )
    waiting = Step.objects.filter(run__function_id="chaos", name="wait", status="waiting")
    chaos_runs = Run.objects.filter(function_id="chaos")
    procs = [start_worker(db_name, workdir / f"worker-{i}.log") for i in range(workers)]
    kills, started = 0, time.monotonic()
    rng = random.Random(os.environ.get("CHAOS_SEED"))
    try:
        while chaos_runs.exclude(status="completed").exists():
            if time.monotonic() - started > timeout:
                raise AssertionError(f"not finished in {timeout}s: {_statuses(chaos_runs)}")
            pause = time.monotonic() + rng.uniform(*kill_every)
            while time.monotonic() < pause:
                _release_waiters(waiting)
                time.sleep(0.2)
            victim = rng.randrange(workers)
            procs[victim].send_signal(signal.SIGKILL)
            procs[victim].wait()
            kills += 1
            procs[victim] = start_worker(db_name, workdir / f"worker-{victim}.log")
            if kills % 10 == 0:
                say(f"  {kills} kills, {chaos_runs.filter(status='completed').count()}/{runs} done")
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
    elapsed = time.monotonic() - started

    atomic_names = ["chaos-atomic-0", "chaos-atomic-2", "chaos-atomic-4"]
    counts = {}
    for name in atomic_names:
        rows = Effect.objects.filter(key=name).values_list("run_id", flat=True)
        per_run: dict[str, int] = {}
        for run_id in rows:
            per_run[run_id] = per_run.get(run_id, 0) + 1
        counts[name] = per_run
    appended = [line for line in lines.read_text().splitlines() if line]
    expected_appends = runs * 2
    outputs = list(chaos_runs.values_list("output", flat=True))
    summary = {
        "runs": runs,
        "completed": chaos_runs.filter(status="completed").count(),
        "left_running": Run.objects.filter(status="running").count(),
        "kills": kills,
        "seconds": round(elapsed, 1),
        "atomic_rows_missing": sum(runs - len(c) for c in counts.values()),
        "atomic_rows_doubled": sum(1 for c in counts.values() for n in c.values() if n != 1),
        "non_atomic_reexecutions": len(appended) - expected_appends,
        "waits_resumed_by_event": sum(1 for o in outputs if o and o["resumed_by"]),
    }
    return summary


def _release_waiters(waiting) -> None:
    """Send the event each run that has begun waiting is waiting for."""
    import durable_flows as df

    keys = {data["key"] for data in waiting.values_list("run__event__data", flat=True)}
    if keys:
        df.send([df.Event(name="test/chaos.go", data={"key": key}) for key in sorted(keys)])


def _statuses(runs) -> dict:
    from django.db.models import Count

    return dict(runs.values_list("status").annotate(n=Count("id")))


def verify(summary: dict) -> list[str]:
    problems = []
    if summary["completed"] != summary["runs"]:
        problems.append("not every run completed")
    if summary["left_running"]:
        problems.append("runs left in 'running'")
    if summary["atomic_rows_missing"] or summary["atomic_rows_doubled"]:
        problems.append("an atomic step's row is missing or doubled")
    if summary["waits_resumed_by_event"] != summary["runs"]:
        problems.append("a wait was not resumed by the event sent for it")
    if not 0 <= summary["non_atomic_reexecutions"] <= summary["kills"]:
        problems.append("non-atomic steps re-executed more often than workers were killed")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("DATABASE_URL", DEFAULT_URL)
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    sys.path.insert(0, str(ROOT))
    from bench._common import _create_pg_database

    if os.environ["DATABASE_URL"].startswith("postgres"):
        _create_pg_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    call_command("flush", interactive=False, verbosity=0)
    import tempfile

    workdir = Path(tempfile.mkdtemp(prefix="df-chaos-"))
    print(
        f"chaos: {args.runs} runs x 7 steps (atomic, non-atomic, sleep, wait for an event), "
        f"{args.workers} workers, SIGKILL every 1-3 s"
    )
    summary = run(
        runs=args.runs,
        workers=args.workers,
        db_name=connection.settings_dict["NAME"],
        workdir=workdir,
    )
    for key, value in summary.items():
        print(f"  {key:<24} {value}")
    problems = verify(summary)
    print("chaos: " + ("FAILED: " + "; ".join(problems) if problems else "passed"))
    raise SystemExit(1 if problems else 0)


if __name__ == "__main__":
    main()
