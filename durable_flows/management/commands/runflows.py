import logging
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, connections
from django.db.migrations.recorder import MigrationRecorder

from durable_flows import migrations, reloading
from durable_flows.conf import db_alias
from durable_flows.worker import Worker


def _default_logging() -> None:
    """A worker says what it does even where the project configures no ``LOGGING``:
    INFO to standard error, unless a handler is set for it already."""
    logger = logging.getLogger("durable_flows")
    if logger.hasHandlers():
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def unapplied_migrations(using: str) -> list[str]:
    """durable_flows' migrations not recorded as applied in the database (empty when it
    cannot be reached: the worker then retries, and says why). One query: the
    migration files are listed, not loaded."""
    files = {
        path.stem for path in Path(migrations.__file__).parent.glob("[0-9][0-9][0-9][0-9]_*.py")
    }
    try:
        recorder = MigrationRecorder(connections[using])
        if not recorder.has_table():
            return sorted(files)
        applied = {name for app, name in recorder.applied_migrations() if app == "durable_flows"}
    except DatabaseError:
        return []
    return sorted(files - applied)


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
        parser.add_argument(
            "--reload",
            action="store_true",
            help="Restart when code changes, as runserver does (for development). The runs "
            "in hand finish their steps first.",
        )

    def handle(
        self,
        *args: Any,
        concurrency: int,
        queues: list[str],
        burst: bool,
        worker_id: str | None,
        reload: bool,
        **options: Any,
    ) -> None:
        if concurrency < 1 or concurrency > 1000:
            raise CommandError("--concurrency must be between 1 and 1000")
        if any(not q for q in queues):
            raise CommandError("--queue needs a non-empty name")
        _default_logging()
        missing = unapplied_migrations(db_alias())
        if missing:
            raise CommandError(
                f"the durable_flows tables are missing or out of date ({len(missing)} "
                "migration(s) not applied): run `python manage.py migrate` first"
            )
        if reload and burst:
            raise CommandError("--reload and --burst do not go together")
        if reload and not reloading.is_child():
            try:
                sys.exit(reloading.supervise())
            except KeyboardInterrupt:
                sys.exit(0)
        worker = Worker(concurrency=concurrency, queues=queues, burst=burst, name=worker_id)
        restore_signals = worker.install_signal_handlers()
        stopped_for_a_change = reloading.watch(worker.stop) if reload else None
        try:
            worker.run()
        finally:
            restore_signals()
        if stopped_for_a_change is not None and stopped_for_a_change():
            sys.exit(reloading.RESTART)
        if options["verbosity"] >= 1:
            self.stdout.write(f"runflows: executed {worker.executed} run(s); stopped cleanly")
