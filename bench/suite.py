"""The benchmark suite (issue 6): the database's floor, then the engine against it.

    python bench/suite.py                    # PostgreSQL, then SQLite
    python bench/suite.py --db postgres      # one of them
    BENCH_SCALE=0.1 python bench/suite.py    # a quick, smaller run
    python bench/suite.py --only W1 --only W2  # some workloads (W0 is always measured)

Prints a table (figures as ratios to W0, the floor, where that makes sense)
and writes JSON to bench/results/. Workers are real ``runflows`` processes.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._common import PG_URL, ROOT, reset_tables, setup, start_worker  # noqa: E402

SCALE = float(os.environ.get("BENCH_SCALE", "1"))
FLOOR_SECONDS = 5 * min(1.0, max(SCALE, 0.2))


def n(count: int) -> int:
    return max(10, int(count * SCALE))


# --- W0: the floor ------------------------------------------------------------------


def _floor_pg(args: tuple[str, int, float]) -> int:
    import psycopg

    url, worker, seconds = args
    done = 0
    with psycopg.connect(url) as conn:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            with conn.transaction():
                conn.execute("UPDATE bench_floor SET n = n + 1 WHERE id = %s", [worker])
                conn.execute(
                    "INSERT INTO bench_floor_log (worker, n) VALUES (%s, %s)", [worker, done]
                )
            done += 1
    return done


def _floor_sqlite(args: tuple[str, int, float]) -> int:
    path, worker, seconds = args
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    done = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE bench_floor SET n = n + 1 WHERE id = ?", [worker])
        conn.execute("INSERT INTO bench_floor_log (worker, n) VALUES (?, ?)", [worker, done])
        conn.execute("COMMIT")
        done += 1
    conn.close()
    return done


def floor(url: str, processes: int) -> float:
    """W0: transactions/s of BEGIN; UPDATE one row; INSERT one row; COMMIT."""
    if url.startswith("postgres"):
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS bench_floor, bench_floor_log")
            conn.execute("CREATE TABLE bench_floor (id int PRIMARY KEY, n bigint NOT NULL)")
            conn.execute(
                "CREATE TABLE bench_floor_log (id bigserial PRIMARY KEY, worker int, n bigint,"
                " at timestamptz DEFAULT now())"
            )
            conn.execute("INSERT INTO bench_floor SELECT g, 0 FROM generate_series(0, 7) g")
        target, where = _floor_pg, url
    else:
        where = tempfile.mktemp(prefix="df-floor-", suffix=".sqlite3")
        conn = sqlite3.connect(where)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE bench_floor (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
        conn.execute(
            "CREATE TABLE bench_floor_log (id INTEGER PRIMARY KEY AUTOINCREMENT, worker INT,"
            " n INT, at TEXT DEFAULT CURRENT_TIMESTAMP)"
        )
        conn.executemany("INSERT INTO bench_floor VALUES (?, 0)", [(i,) for i in range(8)])
        conn.commit()
        conn.close()
        target = _floor_sqlite
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        counts = pool.map(target, [(where, i, FLOOR_SECONDS) for i in range(processes)])
    return sum(counts) / FLOOR_SECONDS


# --- engine workloads --------------------------------------------------------------------


def _send_batches(name: str, count: int, data: dict | None = None) -> None:
    import durable_flows as df

    for start in range(0, count, 500):
        df.send([df.Event(name=name, data=data or {}) for _ in range(min(500, count - start))])


def _span(function_id: str) -> float:
    from django.db.models import Max, Min

    from durable_flows.models import Run

    agg = Run.objects.filter(function_id=function_id).aggregate(
        a=Min("started_at"), b=Max("ended_at")
    )
    return (agg["b"] - agg["a"]).total_seconds()


def _drain(workers: int, *args: str) -> None:
    procs = [start_worker("--burst", *args) for _ in range(workers)]
    for proc in procs:
        if proc.wait(1800) != 0:
            raise SystemExit(f"runflows exited with {proc.returncode}")


def _completed(function_id: str) -> int:
    from durable_flows.models import Run

    return Run.objects.filter(function_id=function_id, status="completed").count()


def jobs(workers: int) -> float:
    """W1: runs/s draining 2,000 one-step runs enqueued beforehand."""
    reset_tables()
    count = n(2000)
    _send_batches("bench/one-step", count)
    _drain(workers)
    assert _completed("bench-one-step") == count
    return count / _span("bench-one-step")


def steps(threads: int = 1) -> float:
    """W2: steps/s of 500 runs x 5 sequential no-op steps, one worker process."""
    reset_tables()
    count = n(500)
    _send_batches("bench/steps", count, {"steps": 5})
    _drain(1, "--concurrency", str(threads))
    assert _completed("bench-steps") == count
    return count * 5 / _span("bench-steps")


def latency() -> dict[str, float]:
    """W3: ms from send() returning to the first step starting, idle worker, 200 events."""
    import durable_flows as df
    from durable_flows.models import Run, Worker

    reset_tables()
    worker = start_worker()
    try:
        deadline = time.monotonic() + 30
        while not Worker.objects.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1)
        sent: dict[str, float] = {}
        for _ in range(n(200)):
            (event_id,) = df.send(df.Event(name="bench/one-step"))
            sent[event_id] = time.time()
            time.sleep(0.02)
        deadline = time.monotonic() + 60
        while _completed("bench-one-step") < len(sent) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
    started = dict(
        Run.objects.filter(function_id="bench-one-step").values_list("event_id", "output")
    )
    lat = sorted((started[e] - t) * 1000 for e, t in sent.items())
    q = statistics.quantiles(lat, n=100)
    return {"p50": q[49], "p95": q[94], "p99": q[98]}


def long_run() -> float:
    """W4: time per step over the last 100 steps / over the first 100, one 1,000-step run."""
    import durable_flows as df
    from durable_flows.models import Step

    reset_tables()
    df.send(df.Event(name="bench/steps", data={"steps": 1000}))
    _drain(1)
    ends = list(Step.objects.order_by("position").values_list("ended_at", flat=True))
    assert len(ends) == 1000
    first = (ends[100] - ends[0]).total_seconds()
    last = (ends[999] - ends[899]).total_seconds()
    return last / first


def history(rows: int, age: timedelta = timedelta(days=1)) -> None:
    """Fill the tables with ``rows`` completed runs (each with an event and a step)."""
    from django.db import connection
    from django.utils import timezone

    from durable_flows.models import Event, Run, Step

    then = timezone.now() - age
    batch = 10_000
    for start in range(0, rows, batch):
        ids = [f"H{i:025d}" for i in range(start, min(rows, start + batch))]
        Event.objects.bulk_create(
            [Event(id=i, name="bench/history", data={}, ts=0, received_at=then) for i in ids]
        )
        Run.objects.bulk_create(
            [
                Run(
                    id=i,
                    function_id="bench-one-step",
                    status="completed",
                    event_id=i,
                    output=1.0,
                    created_at=then,
                    started_at=then,
                    ended_at=then,
                    updated_at=then,
                )
                for i in ids
            ]
        )
        Step.objects.bulk_create(
            [
                Step(
                    run_id=i,
                    name="only",
                    kind="run",
                    status="completed",
                    position=0,
                    output=1.0,
                    attempts=1,
                    started_at=then,
                    ended_at=then,
                )
                for i in ids
            ]
        )
    # The steady state of a database that has held this history for a while: vacuumed
    # (right after a bulk load, autovacuum would compete with the workers).
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")


def jobs_with_history() -> float:
    """W5: W1 (1 worker) with 1,000,000 completed runs already stored."""
    from durable_flows.models import Run

    reset_tables()
    history(n(1_000_000))
    count = n(2000)
    _send_batches("bench/one-step", count)
    _drain(1)
    fresh = Run.objects.filter(function_id="bench-one-step").exclude(id__startswith="H")
    assert fresh.filter(status="completed").count() == count
    from django.db.models import Max, Min

    agg = fresh.aggregate(a=Min("started_at"), b=Max("ended_at"))
    rate = count / (agg["b"] - agg["a"]).total_seconds()
    reset_tables()
    return rate


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def memory() -> dict[str, float]:
    """Worker RSS after 5,000 and 10,000 runs."""
    reset_tables()
    total = n(10_000)
    _send_batches("bench/one-step", total)
    worker = start_worker()
    samples: dict[str, float] = {}
    try:
        for label, target in (("rss_half_mb", total // 2), ("rss_mb", total)):
            deadline = time.monotonic() + 900
            while _completed("bench-one-step") < target and time.monotonic() < deadline:
                time.sleep(0.05)
            samples[label] = _rss_mb(worker.pid)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
    samples["growth_mb"] = samples["rss_mb"] - samples["rss_half_mb"]
    return samples


# --- the table -----------------------------------------------------------------------------


WORKLOADS = ("W0", "W1", "W2", "W3", "W4", "W5", "memory")


def run_suite(url: str, only: set[str]) -> dict[str, object]:
    setup(url)
    from django.db import connection

    vendor = connection.vendor
    print(f"\n== {vendor} (scale {SCALE}) ==", flush=True)
    results: dict[str, object] = {"database": vendor, "scale": SCALE}

    def report(key: str, value: object, text: str) -> None:
        results[key] = value
        print(f"{key:<22} {text}", flush=True)

    # W0 always: every other figure is read against it.
    w0 = floor(url, 1)
    report("W0_tx_s_1proc", w0, f"{w0:9.0f} tx/s   (the floor)")
    if "W0" in only:
        w0b = floor(url, 2)
        report("W0_tx_s_2proc", w0b, f"{w0b:9.0f} tx/s   {w0b / w0:.2f} x W0")
    w1 = None
    if "W1" in only or "W5" in only:
        w1 = jobs(1)
        report("W1_runs_s_1worker", w1, f"{w1:9.0f} runs/s {w1 / w0:.2f} x W0")
    if "W1" in only:
        w1b = jobs(2)
        report("W1_runs_s_2workers", w1b, f"{w1b:9.0f} runs/s {w1b / w0:.2f} x W0  (target >= 1.0)")
    if "W2" in only:
        w2 = steps()
        report("W2_steps_s", w2, f"{w2:9.0f} steps/s {w2 / w0:.2f} x W0  (target >= 0.5)")
        # The same worker process with 4 threads (runflows --concurrency 4): its
        # commits overlap, as several connections' do.
        w2t = steps(4)
        report("W2_steps_s_4threads", w2t, f"{w2t:9.0f} steps/s {w2t / w0:.2f} x W0")
    if "W3" in only:
        w3 = latency()
        report(
            "W3_latency_ms",
            w3,
            "p50 {p50:.1f} ms, p95 {p95:.1f} ms, p99 {p99:.1f} ms".format(**w3)
            + "  (target p50 <= 5, p99 <= 25)",
        )
    if "W4" in only:
        w4 = long_run()
        report("W4_last_first_ratio", w4, f"{w4:9.2f}        (target <= 1.3)")
    if "W5" in only and w1:
        w5 = jobs_with_history()
        report("W5_runs_s", w5, f"{w5:9.0f} runs/s {w5 / w1:.2f} x W1  (target >= 0.8)")
        results["W5_ratio_to_W1"] = w5 / w1
    if "memory" in only:
        mem = memory()
        report(
            "worker_memory",
            mem,
            "RSS {rss_mb:.0f} MB after all runs, {growth_mb:+.1f} MB "
            "over the second half  (target <= 120 MB, no trend)".format(**mem),
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", action="append", choices=["postgres", "sqlite"])
    parser.add_argument(
        "--only", action="append", choices=WORKLOADS, help="run these workloads (and W0)"
    )
    args = parser.parse_args()
    dbs = args.db or ["postgres", "sqlite"]
    only = set(args.only or WORKLOADS)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    for db in dbs:
        # Each database in a process of its own: Django is set up once per process.
        if os.fork() == 0:
            url = os.environ.get("DATABASE_URL", PG_URL) if db == "postgres" else None
            if db == "sqlite":
                os.environ.pop("DATABASE_URL", None)
            results = run_suite(url or "", only)
            path = out / f"{db}-{time.strftime('%Y%m%d-%H%M%S')}.json"
            path.write_text(json.dumps(results, indent=2, default=str))
            print(f"results written to {path.relative_to(ROOT)}")
            os._exit(0)
        _, code = os.wait()
        if code:
            raise SystemExit(code)


if __name__ == "__main__":
    main()
