"""df.send() cost with 0 and with N runs waiting for the same event name on other keys.

Run by hand (not a test), against the database in DATABASE_URL (PostgreSQL for
the meaningful number):

    DATABASE_URL=postgres://... .venv/bin/python bench/send_with_waiters.py [--waiters 100000]

It creates a scratch test database, fills it with N waiting runs (each with a
pending ``Wait`` on ``bench/login`` matching its own ``data.user_id``), then
times ``df.send()`` of ``bench/login`` events for users nobody waits for, and
prints the ratio to the same measurement with no waiters. Target: <= 1.5x.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
os.environ.setdefault("DF_TEST_DB_SUFFIX", "bench")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402
from django.test.utils import setup_test_environment, teardown_test_environment  # noqa: E402

import durable_flows as df  # noqa: E402
from durable_flows import clock, waits  # noqa: E402
from durable_flows.models import Event, Run, RunStatus, Wait, WaitKind, WaitPath  # noqa: E402

EVENT = "bench/login"


def fill(count: int) -> None:
    """Insert ``count`` waiting runs with pending waits, in bulk (as wait_for_event leaves them)."""
    now = clock.now()
    expires = now + timedelta(days=3)
    WaitPath.objects.bulk_create(
        [WaitPath(event_name=EVENT, path="data.user_id")], ignore_conflicts=True
    )
    batch = 5000
    for start in range(0, count, batch):
        size = min(batch, count - start)
        events = [
            Event(name="bench/signup", data={"user_id": start + i}, ts=0, received_at=now)
            for i in range(size)
        ]
        Event.objects.bulk_create(events)
        runs = [
            Run(
                function_id="bench",
                event=event,
                status=RunStatus.WAITING,
                available_at=expires,
                created_at=now,
                updated_at=now,
            )
            for event in events
        ]
        Run.objects.bulk_create(runs)
        Wait.objects.bulk_create(
            [
                Wait(
                    run=run,
                    kind=WaitKind.EVENT,
                    step_name="wait-login",
                    event_name=EVENT,
                    match="data.user_id",
                    match_key=waits.match_key("data.user_id", run.event.data["user_id"]),
                    created_at=now,
                    expires_at=expires,
                )
                for run in runs
            ]
        )
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")


def measure(sends: int, offset: int) -> tuple[float, float]:
    """(median, 20th percentile) seconds per df.send() of an event nobody waits for."""
    timings = []
    for i in range(sends):
        event = df.Event(name=EVENT, data={"user_id": -(offset + i) - 1})
        began = time.perf_counter()
        df.send(event)
        timings.append(time.perf_counter() - began)
    return statistics.median(timings), statistics.quantiles(timings, n=5)[0]


def explain() -> None:
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        df.send(df.Event(name=EVENT, data={"user_id": -1}))
    for query in captured.captured_queries:
        print(f"{float(query['time']) * 1000:7.3f} ms  {query['sql'][:160]}")
    sql = next(
        q["sql"] for q in captured.captured_queries if 'FROM "durable_flows_wait" ' in q["sql"]
    )
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN ANALYZE " + sql)
            print("\n".join(row[0] for row in cursor.fetchall()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waiters", type=int, default=100_000)
    parser.add_argument("--sends", type=int, default=500)
    parser.add_argument("--explain", action="store_true", help="show the queries of one send()")
    args = parser.parse_args()

    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        measure(50, 10_000_000)  # warm-up
        before = measure(args.sends, 0)
        began = time.perf_counter()
        fill(args.waiters)
        filled = time.perf_counter() - began
        measure(50, 20_000_000)
        loaded = measure(args.sends, 30_000_000)
        pending = Wait.objects.filter(status="pending").count()
        if args.explain:
            explain()
        # Disarm the waiters and measure the empty case again: the machine's load
        # drifts, so the baseline is taken before and after.
        Wait.objects.filter(status="pending").update(status="closed")
        measure(50, 40_000_000)
        after = measure(args.sends, 50_000_000)
        base = [(b + a) / 2 for b, a in zip(before, after, strict=True)]
        print(f"database: {connection.vendor}")
        print(f"pending waits: {pending} (inserted in {filled:.1f}s)")
        for label, (median, p20) in (
            ("0 waiters (before)", before),
            (f"{pending} waiters", loaded),
            ("0 waiters (after)", after),
        ):
            print(
                f"send() with {label:>20}: median {median * 1000:.3f} ms, p20 {p20 * 1000:.3f} ms"
            )
        print(
            f"ratio: {loaded[0] / base[0]:.2f}x by median, {loaded[1] / base[1]:.2f}x by p20 "
            "(target <= 1.5x)"
        )
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
        teardown_test_environment()


if __name__ == "__main__":
    main()
