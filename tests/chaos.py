"""Chaos: workers killed with SIGKILL at random, and (on PostgreSQL) their database
connections cut, while steps fail and are retried; nothing is lost, nothing doubled.

    make chaos                                   # 2,000 runs, 3 workers, PostgreSQL
    python -m tests.chaos --runs 300 --workers 3 # a shorter one
    CHAOS_SEED=42 python -m tests.chaos ...      # the same failures and kill times

Each run (tests/flows.py, ``chaos``) has atomic steps (counted rows), non-atomic
ones (lines in a file), steps that fail 0-2 times before they succeed (atomic:
their row is undone with each failed attempt; non-atomic), a sleep, a wait for an
event sent while it waits, a ``ctx.group.parallel`` pair of those steps and an
invoked child run (itself with a failing step). One worker is SIGKILLed and
restarted every 1-3 s; every 2-5 s every worker's PostgreSQL connections are
terminated (``pg_terminate_backend``, by their application_name; never the
harness's own). A short version runs in the suite (tests/test_chaos.py). At the
end it checks: every run (and child) completed, none is stuck; every atomic
step's row exists exactly once; every failing step was retried until it
succeeded, each failure counted as an attempt; the non-atomic steps ran again at
most once per thread per kill or connection cut; every wait was resumed by its
event.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/durable_flows_chaos"


# The workers' PostgreSQL connections carry this application_name (libpq's PGAPPNAME),
# so that the harness can kill theirs and not its own.
WORKER_APP_NAME = "df-harness-worker"


def start_worker(db_name: str, log: Path, concurrency: int = 2) -> subprocess.Popen:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DF_DB_NAME": db_name,
        "PGAPPNAME": WORKER_APP_NAME,
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DURABLE_FLOWS_FAULTS", None)
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "manage.py"),
                "runflows",
                "--concurrency",
                str(concurrency),
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop_workers(procs: list[subprocess.Popen], patience: float = 60) -> None:
    """SIGTERM (a graceful stop), then SIGKILL whoever is still there after ``patience``."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(patience)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


PARENT_ATOMIC = [
    "chaos-atomic-0",
    "chaos-flaky-2",
    "chaos-par-a",
    "chaos-atomic-5",
    "chaos-atomic-7",
]
CHILD_ATOMIC = ["chaos-child-flaky", "chaos-child-atomic"]
FLAKY_STEPS = ["flaky-2", "par-a", "par-b", "flaky"]  # "flaky": the child's
APPENDS = ["append-1", "par-b", "append-6"]  # non-atomic steps: one line each


def run(
    *,
    runs: int,
    workers: int,
    db_name: str,
    workdir: Path,
    sleep: str = "2s",
    kill_every: tuple[float, float] = (1.0, 3.0),
    cut_every: tuple[float, float] | None = (2.0, 5.0),
    concurrency: int = 2,
    timeout: float = 900,
    seed: int | None = None,
    say: Callable[[str], None] = print,
) -> dict:
    """Send ``runs`` runs, execute them under ``workers`` processes while killing them
    (and, on PostgreSQL, cutting their connections: ``cut_every``); returns the figures."""
    from django.db import connection

    import durable_flows as df
    from durable_flows.models import Run, Step

    if seed is None:
        seed = chaos_seed()
    rng = random.Random(seed)
    lines = workdir / "appended.txt"
    lines.write_text("")
    counters = workdir / "attempts"
    counters.mkdir(exist_ok=True)
    failures = [rng.choice([0, 0, 1, 2]) for _ in range(runs)]
    for start in range(0, runs, 500):
        df.send(
            [
                df.Event(
                    name="test/chaos",
                    data={
                        "log": str(lines),
                        "counters": str(counters),
                        "key": f"k{i}",
                        "sleep": sleep,
                        "failures": failures[i],
                    },
                )
                for i in range(start, min(runs, start + 500))
            ]
        )
    waiting = Step.objects.filter(run__function_id="chaos", name="wait", status="waiting")
    chaos_runs = Run.objects.filter(function_id="chaos")
    if connection.vendor != "postgresql":
        cut_every = None

    def start(i: int) -> subprocess.Popen:
        return start_worker(db_name, workdir / f"worker-{i}.log", concurrency)

    procs = [start(i) for i in range(workers)]
    kills = cuts = connections_cut = exits = 0
    started = time.monotonic()
    next_kill = started + rng.uniform(*kill_every)
    next_cut = started + rng.uniform(*cut_every) if cut_every else float("inf")
    timed_out = False
    try:
        while chaos_runs.exclude(status="completed").exists():
            now = time.monotonic()
            if now - started > timeout:
                say(f"  not finished in {timeout:.0f}s: {_statuses(chaos_runs)}")
                timed_out = True
                break
            _release_waiters(waiting)
            for i, proc in enumerate(procs):
                if proc.poll() is not None:  # a worker must never exit by itself
                    exits += 1
                    procs[i] = start(i)
            if now >= next_kill:
                victim = rng.randrange(workers)
                procs[victim].send_signal(signal.SIGKILL)
                procs[victim].wait()
                kills += 1
                procs[victim] = start(victim)
                next_kill = now + rng.uniform(*kill_every)
                if kills % 10 == 0:
                    done = chaos_runs.filter(status="completed").count()
                    say(f"  {kills} kills, {cuts} connection cuts, {done}/{runs} done")
            if cut_every and now >= next_cut:
                cuts += 1
                connections_cut += cut_worker_connections()
                next_cut = now + rng.uniform(*cut_every)
            time.sleep(0.2)
    finally:
        stop_workers(procs)
    elapsed = time.monotonic() - started
    summary = {
        "seed": seed,
        "runs": runs,
        "completed": chaos_runs.filter(status="completed").count(),
        "stuck": Run.objects.exclude(status__in=["completed", "failed", "cancelled"]).count(),
        "left_running": Run.objects.filter(status="running").count(),
        "timed_out": timed_out,
        "kills": kills,
        "connection_cuts": cuts,
        "connections_killed": connections_cut,
        "workers_exited_by_themselves": exits,
        "seconds": round(elapsed, 1),
        **_figures(runs, failures, lines),
    }
    # Each kill or cut may make each thread of a worker execute its non-atomic step again.
    summary["threads"] = workers * concurrency
    summary["non_atomic_allowance"] = kills * concurrency + cuts * workers * concurrency
    return summary


def chaos_seed() -> int:
    """CHAOS_SEED, or a random seed (printed with the figures)."""
    value = os.environ.get("CHAOS_SEED")
    return int(value) if value else random.SystemRandom().randrange(10**6)


def _figures(runs: int, failures: list[int], lines: Path) -> dict:
    from durable_flows.models import Run, Step
    from tests.models import Effect

    parents = Run.objects.filter(function_id="chaos")
    children = Run.objects.filter(function_id="chaos-child")
    per_run = Counter(
        Effect.objects.filter(key__in=PARENT_ATOMIC + CHILD_ATOMIC).values_list("key", "run_id")
    )
    expected = [(k, r) for r in parents.values_list("pk", flat=True) for k in PARENT_ATOMIC]
    expected += [(k, r) for r in children.values_list("pk", flat=True) for k in CHILD_ATOMIC]
    # Run id: (failures planned for each of its failing steps, crashes counted to the run).
    planned = {}
    for group in (parents, children):
        for run_id, data, crashes in group.values_list("pk", "event__data", "attempt"):
            planned[run_id] = (data["failures"], crashes)
    flaky = Step.objects.filter(
        run__function_id__in=["chaos", "chaos-child"], name__in=FLAKY_STEPS, status="completed"
    ).values_list("run_id", "attempts")
    # A worker killed during a step is a failed attempt of the run (Run.attempt), not of
    # the step (but of a parallel step task, yes): the step may have fewer attempts.
    attempts = [(n, *planned[run_id]) for run_id, n in flaky]
    retried = Step.objects.filter(
        run__function_id__in=["chaos", "chaos-child"], attempts__gt=1
    ).values_list("attempts", flat=True)
    appended = Counter(line.rsplit(" ", 1)[1] for line in lines.read_text().splitlines() if line)
    outputs = list(parents.values_list("output", flat=True))
    return {
        "children_completed": children.filter(status="completed").count(),
        "transient_failures_planned": sum(failures) * len(FLAKY_STEPS),
        "failing_steps_completed": len(attempts),
        "failing_steps_attempts_short": sum(1 for n, f, crashes in attempts if n + crashes <= f),
        "failing_steps_attempts_exact": sum(1 for n, f, _ in attempts if n == f + 1),
        "step_retries": sum(n - 1 for n in retried),
        "runs_charged_with_crashes": sum(1 for _, crashes in planned.values() if crashes),
        "atomic_rows_missing": sum(1 for key in expected if not per_run[key]),
        "atomic_rows_doubled": sum(1 for n in per_run.values() if n > 1),
        "atomic_rows_unexpected": len(set(per_run) - set(expected)),
        "non_atomic_reexecutions": sum(appended.values()) - runs * len(APPENDS),
        "non_atomic_missing": sum(max(0, runs - appended[name]) for name in APPENDS),
        "waits_resumed_by_event": sum(1 for o in outputs if o and o["resumed_by"]),
    }


def cut_worker_connections() -> int:
    """Terminate every PostgreSQL connection of the workers (never the harness's own)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND application_name = %s",
            [WORKER_APP_NAME],
        )
        return cursor.fetchone()[0]


def _release_waiters(waiting) -> None:
    """Send the event each run that has begun waiting is waiting for."""
    import durable_flows as df

    keys = {data["key"] for data in waiting.values_list("run__event__data", flat=True)}
    if keys:
        df.send([df.Event(name="test/chaos.go", data={"key": key}) for key in sorted(keys)])


def _statuses(runs) -> dict:
    from django.db.models import Count

    return dict(runs.values_list("status").annotate(n=Count("id")))


def verify(summary: dict) -> list[str]:
    problems = []
    if summary["completed"] != summary["runs"] or summary["stuck"] or summary["timed_out"]:
        problems.append("not every run completed")
    if summary["children_completed"] != summary["runs"]:
        problems.append("not every invoked child run completed")
    if summary["left_running"]:
        problems.append("runs left in 'running'")
    if (
        summary["atomic_rows_missing"]
        or summary["atomic_rows_doubled"]
        or summary["atomic_rows_unexpected"]
    ):
        problems.append("an atomic step's row is missing or doubled")
    if summary["failing_steps_completed"] != 4 * summary["runs"]:
        problems.append("a failing step did not complete")
    if summary["failing_steps_attempts_short"] > summary["connection_cuts"] * summary["threads"]:
        # A failure is counted when it is recorded: one that happens as the connection is
        # cut cannot be (the run is handed back, and the step's next attempt succeeds).
        problems.append("a failed attempt of a step was not counted")
    if summary["waits_resumed_by_event"] != summary["runs"]:
        problems.append("a wait was not resumed by the event sent for it")
    if summary["non_atomic_missing"]:
        problems.append("a non-atomic step never ran")
    if summary["non_atomic_reexecutions"] > summary["non_atomic_allowance"]:
        problems.append("non-atomic steps re-executed more often than workers were hit")
    if summary["workers_exited_by_themselves"]:
        problems.append("a worker exited by itself")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--seed", type=int, default=None, help="default: CHAOS_SEED or random")
    parser.add_argument(
        "--no-cuts", action="store_true", help="do not terminate the workers' connections"
    )
    args = parser.parse_args()
    os.environ.setdefault("DATABASE_URL", DEFAULT_URL)
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    sys.path.insert(0, str(ROOT))
    from bench._common import _create_pg_database

    if os.environ["DATABASE_URL"].startswith("postgres"):
        _create_pg_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    call_command("flush", interactive=False, verbosity=0)
    import tempfile

    workdir = Path(tempfile.mkdtemp(prefix="df-chaos-"))
    seed = args.seed if args.seed is not None else chaos_seed()
    cuts = None if args.no_cuts or connection.vendor != "postgresql" else (2.0, 5.0)
    print(
        f"chaos: seed {seed} (CHAOS_SEED={seed} to reproduce), {args.runs} runs x 12 steps"
        " and an invoked child (atomic, non-atomic, failing 0-2 times, sleep, wait for an"
        f" event, parallel), {args.workers} workers, SIGKILL every 1-3 s"
        + (", connections cut every 2-5 s" if cuts else "")
        + f"; logs in {workdir}"
    )
    summary = run(
        runs=args.runs,
        workers=args.workers,
        db_name=connection.settings_dict["NAME"],
        workdir=workdir,
        cut_every=cuts,
        seed=seed,
    )
    for key, value in summary.items():
        print(f"  {key:<30} {value}")
    problems = verify(summary)
    print("chaos: " + ("FAILED: " + "; ".join(problems) if problems else "passed"))
    raise SystemExit(1 if problems else 0)


if __name__ == "__main__":
    main()
