"""Response times of the admin (and dashboard) pages with 100,000 runs in the table.

Run by hand, not a test; it fills the database named by DATABASE_URL, so give it
one of its own:

    createdb -h 127.0.0.1 -U postgres durable_flows_bench
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/durable_flows_bench \
        .venv/bin/python bench/admin_pages.py [--runs 100000]

Target: every admin page under 300 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
os.environ.setdefault("DEBUG", "0")  # no query log: time what production would see
os.environ.setdefault("SECRET_KEY", "bench-only")

import django  # noqa: E402

django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402

from durable_flows.models import Event, Run, Step, new_id  # noqa: E402

FUNCTIONS = ["fulfil-order", "send-receipt", "sync-crm", "nightly-report", "onboarding"]
STATUSES = ["completed"] * 16 + ["failed", "cancelled", "queued", "waiting"]


def fill(total: int) -> None:
    have = Run.objects.count()
    if have >= total:
        print(f"{have} runs already in the table")
        return
    print(f"inserting {total - have} runs (with an event and 3 steps each)...", flush=True)
    now = timezone.now()
    batch = 5000
    for start in range(have, total, batch):
        events, runs, steps = [], [], []
        for i in range(start, min(start + batch, total)):
            at = now - timedelta(seconds=(total - i) * 3)
            event = Event(
                id=new_id(), name=f"shop/event.{i % 7}", data={"n": i}, ts=0, received_at=at
            )
            status = STATUSES[i % len(STATUSES)]
            finished = status in ("completed", "failed", "cancelled")
            run = Run(
                id=new_id(),
                function_id=FUNCTIONS[i % len(FUNCTIONS)],
                status=status,
                event=event,
                output={"ok": True} if status == "completed" else None,
                error={"type": "ValueError", "message": "boom"} if status == "failed" else None,
                created_at=at,
                updated_at=at,
                started_at=at,
                ended_at=at + timedelta(seconds=2) if finished else None,
            )
            events.append(event)
            runs.append(run)
            for position, name in enumerate(("load", "charge", "ship")):
                steps.append(
                    Step(
                        run=run,
                        name=name,
                        status="completed",
                        position=position,
                        output={"step": name},
                        attempts=1,
                        started_at=at,
                        ended_at=at + timedelta(milliseconds=300),
                    )
                )
        Event.objects.bulk_create(events)
        Run.objects.bulk_create(runs)
        Step.objects.bulk_create(steps)
        print(f"  {start + len(runs)}", flush=True)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")


def timed(client: Client, url: str, repeat: int) -> list[float]:
    # As production serves it (DEBUG off redirects plain HTTP to HTTPS).
    client.get(url, secure=True)  # warm up
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        response = client.get(url, secure=True)
        times.append((time.perf_counter() - began) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    fill(args.runs)
    user, _ = User.objects.get_or_create(
        username="bench", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    run = Run.objects.order_by("-created_at").first()
    old = Run.objects.order_by("created_at").first()
    pages = {
        "admin: runs": "/admin/durable_flows/run/",
        "admin: runs, failed": "/admin/durable_flows/run/?status__exact=failed",
        "admin: runs, one function": "/admin/durable_flows/run/?function_id=sync-crm",
        "admin: runs, page 100": "/admin/durable_flows/run/?p=100",
        "admin: runs, search id": f"/admin/durable_flows/run/?q={old.pk}",
        "admin: events": "/admin/durable_flows/event/",
        "admin: run page": f"/admin/durable_flows/run/{run.pk}/change/",
        "admin: event page": f"/admin/durable_flows/event/{run.event_id}/change/",
        "dashboard: runs": "/flows/",
        "dashboard: run page": f"/flows/runs/{run.pk}/",
        "dashboard: functions": "/flows/functions/",
        "api: runs": "/flows/api/runs/",
    }
    print(f"\n{Run.objects.count()} runs on {connection.vendor}; ms over {args.repeat} requests")
    print(f"{'page':30} {'median':>8} {'max':>8}")
    worst = 0.0
    for label, url in pages.items():
        times = timed(client, url, args.repeat)
        median = statistics.median(times)
        if label.startswith("admin"):
            worst = max(worst, median)
        print(f"{label:30} {median:8.1f} {max(times):8.1f}")
    print(f"\nslowest admin page (median): {worst:.1f} ms; target < 300 ms")


if __name__ == "__main__":
    main()
