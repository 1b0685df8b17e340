"""Is a run's cost linear in its steps? Time per step of a 200-step run vs a 10-step run.

    python bench/linear_steps.py            # a throwaway SQLite file
    DATABASE_URL=postgres://... python bench/linear_steps.py

Runs execute in-process (``durable_flows.testing.run_until_idle``), one at a
time, so the figure is the engine's own cost per checkpoint. Target: < 3x.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
if "DATABASE_URL" not in os.environ:
    os.environ["DATABASE_URL"] = "sqlite:///" + os.path.join(
        tempfile.mkdtemp(prefix="df-bench-"), "bench.sqlite3"
    )

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

import durable_flows as df  # noqa: E402
from durable_flows.models import Run  # noqa: E402
from durable_flows.testing import run_until_idle  # noqa: E402


@df.function(id="bench-linear", trigger=df.TriggerEvent(event="bench/linear"))
def linear(ctx: df.Context) -> int:
    total = 0
    for i in range(ctx.event.data["steps"]):
        total += ctx.step.run("step", lambda i=i: i)
    return total


def per_step(steps: int, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        df.send(df.Event(name="bench/linear", data={"steps": steps}))
        started = time.perf_counter()
        run_until_idle()
        samples.append((time.perf_counter() - started) / steps)
    assert Run.objects.filter(function_id="bench-linear").exclude(status="completed").count() == 0
    return statistics.median(samples)


def main() -> None:
    call_command("migrate", verbosity=0)
    Run.objects.filter(function_id="bench-linear").delete()
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
