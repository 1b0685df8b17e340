"""pruneflows deleting a million old runs while a worker keeps executing new ones.

    python bench/prune_history.py                 # PostgreSQL (durable_flows_bench)
    BENCH_SCALE=0.1 python bench/prune_history.py # 100,000 runs

Prints how long the prune took, and the worker's latency (send to first step)
before and during it: small batches mean no long locks, so latency stays flat.
"""

from __future__ import annotations

import os
import signal
import statistics
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._common import PG_URL, reset_tables, setup, start_worker  # noqa: E402

SCALE = float(os.environ.get("BENCH_SCALE", "1"))


def main() -> None:
    setup(os.environ.get("DATABASE_URL", PG_URL))
    from django.core.management import call_command
    from django.db import connections

    import durable_flows as df
    from bench.suite import history
    from durable_flows.models import Run, Worker

    rows = int(1_000_000 * SCALE)
    reset_tables()
    started = time.perf_counter()
    history(rows, age=timedelta(days=40))
    print(f"stored {rows:,} finished runs 40 days old in {time.perf_counter() - started:.0f} s")

    worker = start_worker()
    while not Worker.objects.exists():
        time.sleep(0.05)
    sent: dict[str, float] = {}
    phase: dict[str, str] = {}
    stop = threading.Event()
    label = ["before"]

    def stream() -> None:
        while not stop.is_set():
            (event_id,) = df.send(df.Event(name="bench/one-step"))
            sent[event_id], phase[event_id] = time.time(), label[0]
            time.sleep(0.02)
        connections.close_all()

    sender = threading.Thread(target=stream)
    sender.start()
    time.sleep(5)
    label[0] = "during"
    started = time.perf_counter()
    call_command("pruneflows", "--older-than", "30d", "--batch-size", "1000")
    pruned_in = time.perf_counter() - started
    label[0] = "after"
    time.sleep(3)
    stop.set()
    sender.join()
    time.sleep(2)
    worker.send_signal(signal.SIGTERM)
    worker.wait(60)

    outputs = dict(
        Run.objects.filter(function_id="bench-one-step", event_id__in=list(sent))
        .exclude(output=None)
        .values_list("event_id", "output")
    )
    print(
        f"pruned {rows:,} runs (with their steps and events) in {pruned_in:.1f} s "
        f"({rows / pruned_in:,.0f} runs/s), batches of 1,000"
    )
    for name in ("before", "during", "after"):
        lat = sorted(
            (outputs[e] - sent[e]) * 1000 for e in sent if phase[e] == name and e in outputs
        )
        if len(lat) >= 2:
            q = statistics.quantiles(lat, n=100)
            print(
                f"latency {name:<7} n={len(lat):5d}  p50 {q[49]:6.1f} ms  p99 {q[98]:7.1f} ms  "
                f"max {lat[-1]:7.1f} ms"
            )
    missing = [e for e in sent if e not in outputs]
    print(f"runs sent while pruning that did not complete: {len(missing)}")


if __name__ == "__main__":
    main()
