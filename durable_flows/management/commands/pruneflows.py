from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from durable_flows import clock
from durable_flows.conf import flow_settings
from durable_flows.durations import describe_duration, parse_duration
from durable_flows.retention import prune


class Command(BaseCommand):
    help = (
        "Delete finished runs (and their steps) older than --older-than, then events "
        "no remaining run references. Works in small batches; safe while workers run."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--older-than",
            required=True,
            metavar="DURATION",
            help="e.g. 30d, 12h (at least the event deduplication window)",
        )
        parser.add_argument("--batch-size", type=int, default=1000)

    def handle(self, *args: Any, older_than: str, batch_size: int, **options: Any) -> None:
        try:
            age = parse_duration(older_than, what="--older-than")
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        window = timedelta(seconds=flow_settings.EVENT_DEDUP_SECONDS)
        if age < window:
            raise CommandError(
                f"--older-than ({describe_duration(age)}) must be at least the event "
                f"deduplication window ({describe_duration(window)}): "
                "younger events still deduplicate resent ids"
            )
        if not 1 <= batch_size <= 100_000:
            raise CommandError("--batch-size must be between 1 and 100000")
        totals = {"runs": 0, "events": 0}
        for table, count in prune(clock.now() - age, batch_size=batch_size):
            totals[table] += count
            if options["verbosity"] >= 2:
                self.stdout.write(f"deleted {count} {table}")
        self.stdout.write(
            f"pruned {totals['runs']} run(s) and {totals['events']} event(s) older than "
            f"{describe_duration(age)}"
        )
