"""Throughput of per-key concurrency limits (by hand, not a test).

2,000 runs over 100 keys with ``Concurrency(limit=1, key=...)`` against the
same runs without a limit, each run one 10 ms step, executed by real
``runflows`` processes. Prints both throughputs and their ratio (the goal is
at least 0.70).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/durable_flows \\
        .venv/bin/python bench/concurrency_keys.py [--workers 2] [--threads 4]

It creates (and drops) its own database, named after DF_TEST_DB_SUFFIX.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
os.environ.setdefault("DF_TEST_DB_SUFFIX", "bench")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402
from django.db.models import Max, Min  # noqa: E402

import durable_flows as df  # noqa: E402
from durable_flows.models import Event, FlowKey, Run, Step  # noqa: E402


def measure(event_name: str, function_id: str, runs: int, keys: int, args) -> float:
    Step.objects.all().delete()
    Run.objects.all().delete()
    Event.objects.all().delete()
    FlowKey.objects.all().delete()
    if args.order == "blocks":  # each key's runs together: the worst case for FIFO
        key_of = [i * keys // runs for i in range(runs)]
    else:
        key_of = [i % keys for i in range(runs)]
    df.send([df.Event(name=event_name, data={"key": f"k{k}"}) for k in key_of])
    env = {**os.environ, "DF_DB_NAME": connection.settings_dict["NAME"], "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, str(ROOT / "manage.py"), "runflows", "--burst"]
    command += ["--concurrency", str(args.threads)]
    started = time.monotonic()
    workers = [
        subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        for _ in range(args.workers)
    ]
    for worker in workers:
        _, err = worker.communicate(timeout=900)
        if worker.returncode:
            sys.exit(f"a worker failed:\n{err.decode(errors='replace')[-3000:]}")
    wall = time.monotonic() - started
    done = Run.objects.filter(function_id=function_id, status="completed")
    if done.count() != runs:
        sys.exit(f"{function_id}: only {done.count()} of {runs} runs completed")
    span = done.aggregate(first=Min("started_at"), last=Max("ended_at"))
    seconds = (span["last"] - span["first"]).total_seconds()
    rate = runs / seconds
    print(
        f"{function_id:16} {runs} runs in {seconds:6.2f}s ({wall:6.2f}s wall): {rate:7.1f} runs/s"
    )
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2, help="runflows processes")
    parser.add_argument("--threads", type=int, default=4, help="--concurrency of each")
    parser.add_argument("--order", choices=["interleaved", "blocks"], default="interleaved")
    args = parser.parse_args()
    creation = connection.creation
    creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    try:
        print(
            f"{connection.vendor}: {args.runs} runs over {args.keys} keys, "
            f"{args.workers} worker(s) x {args.threads} threads, {args.order} order"
        )
        unlimited = measure("bench/unlimited", "bench-unlimited", args.runs, args.keys, args)
        keyed = measure("bench/keyed", "bench-keyed", args.runs, args.keys, args)
        print(f"ratio (limit=1 per key / no limit): {keyed / unlimited:.2f}")
    finally:
        creation.destroy_test_db(connection.settings_dict["NAME"], verbosity=0)


if __name__ == "__main__":
    main()
