"""Send example events, run a real ``runflows`` worker until they finish, print what happened."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

import durable_flows as df
from durable_flows.models import FINISHED, Run, Step

from ...models import Order, Stock


class Command(BaseCommand):
    help = "Run the example workflows to completion with a real runflows worker."

    def handle(self, *args: Any, **options: Any) -> None:
        heading = self.style.MIGRATE_HEADING
        self.stdout.write(heading("1. Placing orders (each event sent in its order's transaction)"))
        order_events = self._place_orders()
        self.stdout.write(
            heading("2. Signing up users (onboarding: sleep 2 s, wait 5 s for a login)")
        )
        signups = df.send(
            [
                df.Event(
                    name="shop/user.signup",
                    data={"user_id": user_id, "tips_after": "2s", "login_within": "5s"},
                )
                for user_id in (1, 2, 3)
            ]
        )
        self.stdout.write("   users 1, 2 and 3 signed up")

        self.stdout.write(heading("3. A real worker: manage.py runflows --concurrency 2"))
        self.stdout.flush()
        manage = Path(settings.BASE_DIR) / "manage.py"
        worker = subprocess.Popen([sys.executable, str(manage), "runflows", "--concurrency", "2"])
        try:
            self._drive_onboarding(signups)
            demo_runs = Run.objects.filter(event_id__in=order_events + signups)
            self._wait(lambda: not demo_runs.exclude(status__in=FINISHED).exists(), 60)
        finally:
            worker.send_signal(signal.SIGTERM)
            if worker.wait(60) != 0:
                raise CommandError(f"runflows exited with {worker.returncode}")

        self.stdout.write(heading("4. What happened"))
        runs = Run.objects.filter(event_id__in=order_events + signups).select_related("event")
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
        order_ids = [r.event.data["order_id"] for r in runs if "order_id" in r.event.data]
        for order in Order.objects.filter(pk__in=order_ids):
            self.stdout.write(f"   order {order.pk}: status {order.status}")
        self.stdout.write(self.style.SUCCESS("\nDone. To look at these runs:"))
        self.stdout.write(
            "   .venv/bin/python manage.py createsuperuser\n"
            "   .venv/bin/python manage.py runserver\n"
            "   then open http://127.0.0.1:8000/flows/ (the dashboard) "
            "or http://127.0.0.1:8000/admin/"
        )

    def _place_orders(self) -> list[str]:
        Stock.objects.update_or_create(item="widget", defaults={"available": 5})
        Stock.objects.update_or_create(item="gadget", defaults={"available": 0})
        event_ids: list[str] = []
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
        return event_ids

    def _drive_onboarding(self, signups: list[str]) -> None:
        """User 3 is deleted (its onboarding is cancelled); user 1 logs in while its
        run waits for a login; user 2 never does, and is nudged at the timeout."""
        df.send(df.Event(name="shop/user.deleted", data={"user_id": 3}))
        self.stdout.write("   user 3 deleted its account")
        first = Run.objects.get(event_id=signups[0], function_id="onboarding")
        waiting = Step.objects.filter(run=first, name="wait-for-login", status="waiting")
        self._wait(waiting.exists, 30)
        df.send(df.Event(name="shop/user.login", data={"user_id": 1}))
        self.stdout.write("   user 1 logged in")

    def _wait(self, done: Any, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not done():
            if time.monotonic() > deadline:
                raise CommandError(f"the demo's runs did not finish within {seconds} s")
            time.sleep(0.1)

    def _print_run(self, run: Run) -> None:
        style = {"completed": self.style.SUCCESS, "failed": self.style.ERROR}.get(
            run.status, self.style.WARNING
        )
        self.stdout.write(
            f"\n   run {run.pk}  {run.function_id}  "
            + style(run.status.upper())
            + f"  ({run.event.name} {run.event.data})"
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
