from typing import Any

from django.core.management.base import BaseCommand, CommandError

from durable_flows.worker import Worker


class Command(BaseCommand):
    help = (
        "Execute durable function runs until stopped (SIGTERM/SIGINT), or until idle with --burst."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--concurrency",
            type=int,
            default=1,
            help="Runs executed at once by this process (threads). Default 1.",
        )
        parser.add_argument(
            "--queue",
            action="append",
            dest="queues",
            default=[],
            metavar="NAME",
            help="Only take runs of this queue (repeatable).",
        )
        parser.add_argument(
            "--burst", action="store_true", help="Run everything runnable now, then exit 0."
        )
        parser.add_argument(
            "--worker-id", default=None, help="A name for this worker in logs and the admin."
        )

    def handle(
        self,
        *args: Any,
        concurrency: int,
        queues: list[str],
        burst: bool,
        worker_id: str | None,
        **options: Any,
    ) -> None:
        if concurrency < 1 or concurrency > 1000:
            raise CommandError("--concurrency must be between 1 and 1000")
        if any(not q for q in queues):
            raise CommandError("--queue needs a non-empty name")
        worker = Worker(concurrency=concurrency, queues=queues, burst=burst, name=worker_id)
        restore_signals = worker.install_signal_handlers()
        try:
            worker.run()
        finally:
            restore_signals()
        if options["verbosity"] >= 1:
            self.stdout.write(f"runflows: executed {worker.executed} run(s); stopped cleanly")
