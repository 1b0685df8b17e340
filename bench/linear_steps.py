"""Is a run's cost linear in its steps? Time per step of a 200-step run vs a 10-step run.

    python bench/linear_steps.py            # a throwaway SQLite file
    DATABASE_URL=postgres://... python bench/linear_steps.py

Runs execute in-process (``durable_flows.testing.run_until_idle``), one at a
time, so the figure is the engine's own cost per checkpoint. Target: < 3x.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._common import setup  # noqa: E402

setup()

import django  # noqa: E402

import durable_flows as df  # noqa: E402
from durable_flows.models import Run  # noqa: E402
from durable_flows.testing import run_until_idle  # noqa: E402


def per_step(steps: int, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        df.send(df.Event(name="bench/steps", data={"steps": steps}))
        started = time.perf_counter()
        run_until_idle()
        samples.append((time.perf_counter() - started) / steps)
    assert Run.objects.filter(function_id="bench-steps").exclude(status="completed").count() == 0
    return statistics.median(samples)


def main() -> None:
    Run.objects.filter(function_id="bench-steps").delete()
    per_step(10, 3)  # warm up
    short = per_step(10, 15)
    long = per_step(200, 5)
    vendor = django.db.connection.vendor
    print(f"database: {vendor}")
    print(f"10-step run:  {short * 1000:.3f} ms/step")
    print(f"200-step run: {long * 1000:.3f} ms/step")
    print(f"ratio (200-step / 10-step, per step): {long / short:.2f}  (target < 3)")


if __name__ == "__main__":
    main()
