"""Django's Tasks framework: durable_flows' backend beside django-tasks-db, in one run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/durable_flows_bench \\
        python bench/tasks_backend.py [--n 2000] [--workers 2]

Each system: enqueue N no-op tasks with ``noop.enqueue()`` (one transaction each), then
start the workers (``runflows --concurrency 4``, or django-tasks-db's ``db_worker``,
one task at a time, polling every second when idle) and time until the last result is
SUCCESSFUL. Then, for durable_flows, ``RunHandle.result()`` latency: with one worker
running, 200 tasks one at a time, the time from the run's end (``ended_at``) to the
return of ``result()`` that waited for it. Prints a table; ratios within one run only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DB_URL = "postgres://postgres@127.0.0.1:5432/durable_flows_bench_tasks"


def measure(system: str, n: int, workers: int) -> dict:
    """In a process of its own (the settings differ per system)."""
    sys.path.insert(0, str(ROOT))
    from bench import _common

    url = os.environ.get("DATABASE_URL", DB_URL)
    _common._create_pg_database(url)
    os.environ.update(
        DATABASE_URL=url, TASKS_BACKEND=system, DJANGO_SETTINGS_MODULE="bench.settings_tasks"
    )
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE durable_flows_run, durable_flows_event, durable_flows_step CASCADE"
        )
        if system == "django-tasks-db":
            cursor.execute("TRUNCATE django_tasks_database_dbtaskresult")
    from bench.tasks import noop

    began = time.perf_counter()
    for _ in range(n):
        noop.enqueue()
    enqueue_rate = n / (time.perf_counter() - began)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bench.settings_tasks"}
    if system == "durable_flows":
        command = ["runflows", "--concurrency", "4"]
        done_sql = "SELECT count(*) FROM durable_flows_run WHERE status = 'completed'"
    else:
        command = ["db_worker", "--no-startup-delay", "--no-reload", "--interval", "1"]
        done_sql = (
            "SELECT count(*) FROM django_tasks_database_dbtaskresult WHERE status = 'SUCCESSFUL'"
        )
    procs = [
        subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), *command],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(workers)
    ]
    started = time.perf_counter()
    try:
        while True:
            with connection.cursor() as cursor:
                cursor.execute(done_sql)
                if cursor.fetchone()[0] >= n:
                    break
            if time.perf_counter() - started > 300:
                raise SystemExit(f"{system}: not done in 300 s")
            time.sleep(0.05)
        seconds = time.perf_counter() - started
        result = {"system": system, "tasks_per_s": n / seconds, "enqueue_per_s": enqueue_rate}
        if system == "durable_flows":
            for proc in procs[1:]:
                proc.terminate()
            result.update(result_latency(noop))
        return result
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(30)


def result_latency(noop) -> dict:
    import durable_flows as df
    from durable_flows.models import Run

    waits = []
    for _ in range(200):
        handle = df.handle(noop.enqueue().id)
        handle.result(timeout=30)
        returned = time.time()
        ended = Run.objects.values_list("ended_at", flat=True).get(pk=handle.id)
        waits.append((returned - ended.timestamp()) * 1000)
        time.sleep(0.01)
    waits.sort()
    return {
        "result_p50_ms": statistics.median(waits),
        "result_p99_ms": waits[int(len(waits) * 0.99) - 1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--system", choices=["durable_flows", "django-tasks-db"])
    args = parser.parse_args()
    if args.system:
        print(json.dumps(measure(args.system, args.n, args.workers)))
        return
    rows = []
    for system in ("durable_flows", "django-tasks-db"):
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--system",
                system,
                "--n",
                str(args.n),
                "--workers",
                str(args.workers),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    ours, theirs = rows
    print(f"| {args.n} no-op tasks, {args.workers} workers | tasks/s | enqueue/s |")
    print("|---|---|---|")
    for row in rows:
        print(f"| {row['system']} | {row['tasks_per_s']:,.0f} | {row['enqueue_per_s']:,.0f} |")
    ratio = ours["tasks_per_s"] / theirs["tasks_per_s"]
    print(f"\nratio durable_flows / django-tasks-db: {ratio:.1f}x")
    print(
        f"RunHandle.result() after the run ended: p50 {ours['result_p50_ms']:.1f} ms, "
        f"p99 {ours['result_p99_ms']:.1f} ms"
    )


if __name__ == "__main__":
    main()
