"""Send a few example events, run a real ``runflows --burst`` worker, print what happened."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

import durable_flows as df
from durable_flows.models import Run

from ...models import Order, Stock


class Command(BaseCommand):
    help = "Run the example workflows to completion with a real runflows worker."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(
            self.style.MIGRATE_HEADING("1. Placing orders (events sent in the order's transaction)")
        )
        Stock.objects.update_or_create(item="widget", defaults={"available": 5})
        Stock.objects.update_or_create(item="gadget", defaults={"available": 0})
        event_ids = []
        for email, item, qty, total in [
            ("ada@example.com", "widget", 2, 2_400),
            ("grace@example.com", "widget", 1, 120_000),
            ("linus@example.com", "gadget", 1, 5_000),
        ]:
            with transaction.atomic():
                order = Order.objects.create(
                    customer_email=email, item=item, quantity=qty, total_cents=total
                )
                event_ids += df.send(
                    df.Event(
                        name="shop/order.placed",
                        data={"order_id": order.pk, "total_cents": total},
                    )
                )
            self.stdout.write(f"   order {order.pk}: {qty} x {item} for {email}")

        self.stdout.write(
            self.style.MIGRATE_HEADING("2. Running a worker: manage.py runflows --burst")
        )
        manage = Path(settings.BASE_DIR) / "manage.py"
        self.stdout.flush()
        result = subprocess.run(
            [sys.executable, str(manage), "runflows", "--burst", "--concurrency", "2"],
            check=False,
        )
        if result.returncode != 0:
            raise CommandError(f"runflows exited with {result.returncode}")

        self.stdout.write(self.style.MIGRATE_HEADING("3. What happened"))
        runs = Run.objects.filter(event_id__in=event_ids).select_related("event")
        for run in runs.order_by("created_at", "id"):
            self._print_run(run)
        followers = Run.objects.filter(
            event__name__startswith="durable_flows/", event__data__run_id__in=[r.pk for r in runs]
        )
        for run in followers.order_by("created_at", "id"):
            self.stdout.write(
                f"\n   run {run.pk}  {run.function_id}  {run.status.upper()}"
                f"  (on {run.event.name})\n     => output {run.output}"
            )
        self.stdout.write("")
        for order in Order.objects.filter(pk__in=[r.event.data["order_id"] for r in runs]):
            self.stdout.write(f"   order {order.pk}: status {order.status}")
        self.stdout.write(
            self.style.SUCCESS("\nDone. Inspect the runs at /admin/ after `manage.py runserver`.")
        )

    def _print_run(self, run: Run) -> None:
        style = {"completed": self.style.SUCCESS, "failed": self.style.ERROR}.get(
            run.status, self.style.WARNING
        )
        self.stdout.write(
            f"\n   run {run.pk}  {run.function_id}  "
            + style(run.status.upper())
            + f"  (order {run.event.data['order_id']})"
        )
        for step in run.steps.all():
            ms = (
                f"{(step.ended_at - step.started_at).total_seconds() * 1000:.1f} ms"
                if step.ended_at and step.started_at
                else "-"
            )
            detail = (
                step.output if step.status == "completed" else (step.error or {}).get("message")
            )
            self.stdout.write(
                f"     - {step.name:<16} {step.status:<10} "
                f"attempts={step.attempts}  {ms:>9}  {detail}"
            )
        if run.status == "completed":
            self.stdout.write(f"     => output {run.output}")
        elif run.error:
            self.stdout.write(f"     => error {run.error['type']}: {run.error['message']}")
