"""Do async runs waiting on I/O execute concurrently on one worker thread?

    python bench/async_runs.py            # a throwaway SQLite file
    DATABASE_URL=postgres://... python bench/async_runs.py

200 runs of an ``async def`` function whose one non-atomic step awaits
``asyncio.sleep(0.2)``, drained by one ``runflows --burst --concurrency 1``
process: one worker thread and its event loop. One run after another would
take 40 s; the target is <= 2 s from the first start to the last end.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._common import reset_tables, setup  # noqa: E402

setup()

import django  # noqa: E402

from bench.suite import _completed, _drain, _send_batches, _span  # noqa: E402

RUNS = 200
TARGET_SECONDS = 2.0


def main() -> None:
    reset_tables()
    _send_batches("bench/async-io", RUNS)
    _drain(1, "--concurrency", "1")
    assert _completed("bench-async-io") == RUNS
    span = _span("bench-async-io")
    print(f"database: {django.db.connection.vendor}")
    print(f"{RUNS} async runs (one 0.2 s awaited step each), one worker thread: {span:.2f} s")
    print(f"target <= {TARGET_SECONDS:.0f} s: {'met' if span <= TARGET_SECONDS else 'NOT met'}")


if __name__ == "__main__":
    main()
