"""Model-based, differential test: random programs, executed three ways, must agree.

A *program* (tests/model_flows.py) is a random list of operations: atomic
writes, non-atomic appends, steps failing N times (ValueError, SystemExit,
KeyboardInterrupt), NonRetriableError, RetryAfterError, sleeps, waits for an
event (sent at a random moment, or never), an invoked child program, a sent
event, a ``ctx.group.parallel`` group, slow steps, and a step that kills its
process (``os._exit``) on its first k attempts. Each program is

1. predicted by a model of the engine's specification (``predict``): every
   run's status, output, error type, and every step's status and attempts;
2. executed in-process by the reference executor (what
   ``durable_flows.testing.run_until_idle`` does, with the clock moved on
   instead of waiting; one commit per step; a crash modelled as the engine
   specifies it: a failed attempt, error type WorkerCrashed);
3. executed by real ``runflows`` processes (2 x ``--concurrency 2`` by
   default; PostgreSQL with group commit, or SQLite), restarted when a step
   kills one.

The model and the reference must agree exactly, and the workers with the
reference, except that the workers count a crash as an attempt of the run
(``Run.attempt``, at least the number of deaths of workers that held it), not
of the step it interrupted. Effects are checked in both executions: an
atomic step's row exists exactly once if the step completed (else never), a
non-atomic step ran at least once if it completed and again at most once per
crash that hit its run, every sent event started exactly one listener run. A
run that a crash hit while it was not its own (another thread's step killed the
process, or the other workers declared a live one dead) may legitimately differ
(the crash counts as one of its attempts): it is reported as *perturbed*, and
only the invariants are checked for it.

By hand (prints the seed; MODEL_SEED or --seed reproduces the programs)::

    python -m tests.model_based --programs 500                  # PostgreSQL
    python -m tests.model_based --programs 500 --database sqlite
    MODEL_SEED=1234 python -m tests.model_based --programs 30 --only 7,12

``make soak`` runs both. PostgreSQL: the database named by MODEL_DATABASE_URL
(default ``durable_flows_model`` on 127.0.0.1), created if need be and flushed.
A bounded version is part of the suite (tests/test_model_based.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/durable_flows_model"
FINISHED = ("completed", "failed", "cancelled", "skipped")

# --- programs ---------------------------------------------------------------------------


class Chooser(Protocol):
    """Where a program's random choices come from (random.Random, or hypothesis)."""

    def randint(self, a: int, b: int) -> int: ...
    def choice(self, seq: list) -> Any: ...
    def uniform(self, a: float, b: float) -> float: ...
    def chance(self, p: float) -> bool: ...


class RandomChooser:
    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def randint(self, a: int, b: int) -> int:
        return self._rng.randint(a, b)

    def choice(self, seq: list) -> Any:
        return self._rng.choice(seq)

    def uniform(self, a: float, b: float) -> float:
        return self._rng.uniform(a, b)

    def chance(self, p: float) -> bool:
        return self._rng.random() < p


def _weighted(**weights: int) -> list[str]:
    return [kind for kind, weight in weights.items() for _ in range(weight)]


# The first kind of each list is the simplest: hypothesis shrinks towards it.
TOP_KINDS = _weighted(
    atomic=3,
    flaky=3,
    append=2,
    wait=2,
    parallel=2,
    sleep=1,
    nonretriable=1,
    retry_after=1,
    invoke=1,
    send=1,
    slow=1,
    signal=1,
    patch=1,
)
# Any step kind may be a parallel group's member (waits park the run).
BRANCH_KINDS = _weighted(
    atomic=2, append=1, flaky=2, nonretriable=1, retry_after=1, slow=1, sleep=1, send=1, invoke=1
)
CHILD_KINDS = _weighted(atomic=2, append=1, flaky=2, nonretriable=1, slow=1, send=1)
EXCEPTIONS = ["ValueError", "ValueError", "ValueError", "SystemExit", "KeyboardInterrupt"]


def generate_programs(seed: int, count: int) -> list[dict]:
    """``count`` programs; the same seed and count give the same programs."""
    chooser = RandomChooser(seed)
    budget = max(2, count // 5)  # process deaths the crash steps may cause, in all
    programs = []
    for index in range(count):
        program = generate_program(chooser, crashes=budget > 0)
        budget -= crash_deaths(program)
        programs.append({"index": index, **program})
    return programs


def generate_program(ch: Chooser, *, crashes: bool = True) -> dict:
    retries = ch.randint(0, 3)
    ops, crashed = [], False
    for i in range(ch.randint(1, 6)):
        kinds = TOP_KINDS + ["crash"] if crashes and not crashed else TOP_KINDS
        kind = ch.choice(kinds)
        crashed = crashed or kind == "crash"
        ops.append(generate_op(ch, kind, f"{i}-{kind}", retries))
    # Half the programs run as ``async def`` functions (tests/model_flows_async.py).
    return {"retries": retries, "ops": ops, "async": ch.chance(0.5)}


def generate_op(ch: Chooser, kind: str, name: str, retries: int) -> dict:
    op: dict[str, Any] = {"op": kind, "name": name}
    if kind == "flaky":
        op.update(failures=ch.randint(0, retries + 1), exc=ch.choice(EXCEPTIONS))
        op.update(atomic=ch.chance(0.5), catch=ch.chance(0.3))
    elif kind == "nonretriable":
        op.update(atomic=ch.chance(0.5), catch=ch.chance(0.5))
    elif kind == "retry_after":
        op.update(failures=ch.randint(1, 2), after=ch.choice(["0.2s", "0.4s"]))
        op.update(catch=ch.chance(0.3))
    elif kind == "sleep":
        op.update(seconds=round(ch.uniform(0, 1), 2))
    elif kind in ("wait", "signal"):
        if ch.chance(0.6):  # the event is sent `delay` seconds after the wait began
            op.update(send=True, delay=round(ch.uniform(0, 1), 2), timeout=10.0)
        else:
            op.update(send=False, delay=None, timeout=round(ch.uniform(0.5, 1.5), 2))
    elif kind == "slow":
        op.update(seconds=round(ch.uniform(0.3, 1.0), 2), atomic=ch.chance(0.5))
    elif kind == "crash":
        op.update(times=ch.randint(1, 2), atomic=ch.chance(0.5))
    elif kind == "invoke":
        child_retries = ch.randint(0, 2)
        child_ops = []
        for j in range(ch.randint(1, 3)):
            child_kind = ch.choice(CHILD_KINDS)
            child_ops.append(generate_op(ch, child_kind, f"{j}-{child_kind}", child_retries))
        op.update(child={"retries": child_retries, "ops": child_ops}, catch=ch.chance(0.4))
    elif kind == "parallel":
        branches = []
        for b in range(ch.randint(2, 3)):
            branch = []
            for j in range(ch.randint(1, 2)):
                step_kind = ch.choice(BRANCH_KINDS)
                prefix = name.split("-")[0]
                branch.append(generate_op(ch, step_kind, f"{prefix}.{b}.{j}-{step_kind}", retries))
            branches.append(branch)
        op.update(branches=branches, catch=ch.chance(0.3))
    return op


def crash_deaths(program: dict) -> int:
    """How many times the program's crash step kills a process (before the run fails)."""
    crashes = [op for op in _ops(program) if op["op"] == "crash"]
    return sum(min(op["times"], program["retries"] + 1) for op in crashes)


def _ops(program: dict) -> Iterator[dict]:
    """The program's own ops (parallel branches included, not its child's)."""
    for op in program["ops"]:
        yield op
        for branch in op.get("branches", ()):
            yield from branch


# --- the model: what the engine's specification says happens -----------------------------


class _StepFailed(Exception):
    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


def predict(program: dict) -> dict:
    """The run's outcome and steps, per the specification (as ``observe`` presents them)."""
    steps: dict[str, list] = {}
    children: dict[str, dict] = {}
    sent: list[str] = []
    retries = program["retries"]
    outcome: dict[str, Any] = {"status": "completed", "output": None, "error": None}
    try:
        output = [_predict(op, retries, steps, children, sent) for op in program["ops"]]
        outcome["output"] = output
    except _StepFailed as exc:
        outcome.update(status="failed", error=exc.error)
    return {**outcome, "steps": steps, "children": children, "sent": sorted(sent)}


def _predict(op: dict, retries: int, steps: dict, children: dict, sent: list) -> Any:
    if op.get("catch"):
        try:
            return _predict_op(op, retries, steps, children, sent)
        except _StepFailed as exc:
            return {"caught": exc.error}
    return _predict_op(op, retries, steps, children, sent)


def _predict_op(op: dict, retries: int, steps: dict, children: dict, sent: list) -> Any:
    kind, name = op["op"], op["name"]
    if kind in ("atomic", "append", "slow"):
        steps[name] = ["run", "completed", 1]
        return name
    if kind in ("flaky", "retry_after", "crash"):
        failures = op["times"] if kind == "crash" else op["failures"]
        error = {"crash": "WorkerCrashed", "retry_after": "RetryAfterError"}.get(
            kind, op.get("exc")
        )
        if failures <= retries:  # each failure (a crash too) is an attempt; retried
            steps[name] = ["run", "completed", failures + 1]
            return name
        steps[name] = ["run", "failed", retries + 1]
        raise _StepFailed(error)
    if kind == "nonretriable":
        steps[name] = ["run", "failed", 1]
        raise _StepFailed("NonRetriableError")
    if kind == "sleep":
        steps[name] = ["sleep", "completed", 1]
        return None
    if kind == "wait":
        steps[name] = ["wait_for_event", "completed", 1]
        return name if op["send"] else None
    if kind == "signal":
        steps[name] = ["wait_for_signal", "completed", 1]
        return name if op["send"] else None
    if kind == "patch":
        steps[f"patch:{name}"] = ["patch", "completed", 1]
        return True
    if kind == "send":
        steps[name] = ["send_event", "completed", 1]
        sent.append(name)
        return 1
    if kind == "invoke":
        child = children[name] = predict(op["child"])
        if child["status"] == "completed":
            steps[name] = ["invoke", "completed", 1]
            return child["output"]
        steps[name] = ["invoke", "failed", 1]
        raise _StepFailed(child["error"])
    if kind == "parallel":
        # Every branch goes on until it ends or one of its steps fails for good; then
        # the group raises the first branch's error.
        results: list[Any] = []
        errors: list[_StepFailed] = []
        for branch in op["branches"]:
            try:
                results.append([_predict(o, retries, steps, children, sent) for o in branch])
            except _StepFailed as exc:
                errors.append(exc)
                results.append(None)
        if errors:
            raise errors[0]
        return results
    raise AssertionError(f"unknown op {kind!r}")


# --- executing --------------------------------------------------------------------------------


def _event(program: dict, mode: str, directory: Path, nonce: str):
    import durable_flows as df

    data = {
        "retries": program["retries"],
        "ops": program["ops"],
        "mode": mode,
        "dir": str(directory),
        "key": f"{nonce}-{mode}-{program['index']}",
    }
    family = "async-run" if program.get("async") else "run"
    return df.Event(name=f"model/{family}.r{program['retries']}", data=data)


def _prepare(directory: Path) -> None:
    (directory / "counters").mkdir(parents=True, exist_ok=True)
    (directory / "appends.txt").touch()


def _send(programs: list[dict], mode: str, directory: Path, nonce: str) -> dict[str, int]:
    """Start one run per program; returns {run id: program index}."""
    import durable_flows as df
    from durable_flows.models import Run

    events = [_event(program, mode, directory, nonce) for program in programs]
    ids = df.send(events)
    index_of = {event_id: program["index"] for event_id, program in zip(ids, programs, strict=True)}
    runs = Run.objects.filter(event_id__in=ids, parent_run__isnull=True)
    return {run_id: index_of[event_id] for run_id, event_id in runs.values_list("pk", "event_id")}


def _armed_waits(runs: dict[str, int], by_index: dict[int, dict]) -> list[tuple[str, dict]]:
    """The wait steps now waiting whose event is to be sent: (run id, op)."""
    from durable_flows.models import Step

    waiting = Step.objects.filter(
        run_id__in=list(runs), kind__in=["wait_for_event", "wait_for_signal"], status="waiting"
    ).values_list("run_id", "name")
    found = []
    for run_id, name in waiting:
        op = next(op for op in by_index[runs[run_id]]["ops"] if op["name"] == name)
        if op["send"]:
            found.append((run_id, op))
    return found


def _go(run_id: str, op: dict) -> None:
    import durable_flows as df
    from durable_flows.models import Run
    from tests.model_flows import GO_EVENT

    if op["op"] == "signal":
        from tests.model_flows import GO_SIGNAL

        with contextlib.suppress(df.RunNotFound):  # it timed out meanwhile
            df.signal(run_id, GO_SIGNAL, {"token": op["name"]})
        return
    key = Run.objects.select_related("event").get(pk=run_id).event.data["key"]
    df.send(df.Event(name=GO_EVENT, data={"key": key, "token": op["name"]}))


@contextmanager
def _one_commit_per_step() -> Iterator[None]:
    """The reference commits each step on its own: group commit is what it checks."""
    from durable_flows.engine import group_commit

    eligible = group_commit.eligible
    group_commit.eligible = lambda function: False
    try:
        yield
    finally:
        group_commit.eligible = eligible


def _drain(deadline: float) -> None:
    """``run_until_idle()``, stopped (between steps) at ``deadline``."""
    from durable_flows.worker import Worker

    worker = Worker(burst=True, name="model-reference")
    timer = threading.Timer(max(0.0, deadline - time.monotonic()), worker.stop)
    timer.start()
    try:
        worker.drain()
    finally:
        timer.cancel()


def execute_reference(programs: list[dict], directory: Path, nonce: str, timeout: float):
    """In-process: events sent as soon as their wait began, time moved on to every wake-up."""
    from durable_flows import testing

    _prepare(directory)
    by_index = {program["index"]: program for program in programs}
    deadline = time.monotonic() + timeout
    released: set[tuple[str, str]] = set()
    with _one_commit_per_step(), testing.time_machine():
        runs = _send(programs, "ref", directory, nonce)
        while time.monotonic() < deadline:
            _drain(deadline)
            due = [
                (r, op) for r, op in _armed_waits(runs, by_index) if (r, op["name"]) not in released
            ]
            for run_id, op in due:
                released.add((run_id, op["name"]))
                _go(run_id, op)
            if not due and testing.advance_to_next_wake() is None:
                break
    return runs


@dataclass
class RealExecution:
    runs: dict[str, int] = field(default_factory=dict)
    deaths: list[tuple[int, int]] = field(default_factory=list)  # (pid, exit code)
    run_hits: Counter = field(default_factory=Counter)  # run id: deaths while it was leased
    task_hits: Counter = field(default_factory=Counter)  # run id: deaths while a step task was
    # Run id: workers lost while they may have held it (as last seen, which may be stale).
    maybe_hits: Counter = field(default_factory=Counter)
    unobserved_deaths: int = 0  # deaths of workers whose row was never seen
    live_declared_dead: int = 0  # live workers whose heartbeat was late: the others took back
    decoys: int = 0
    events_sent: int = 0
    seconds: float = 0.0


def execute_real(
    programs: list[dict],
    directory: Path,
    nonce: str,
    *,
    db_name: str,
    logs: Path,
    processes: int = 2,
    concurrency: int = 2,
    timeout: float = 150,
    seed: int = 0,
    say: Callable[[str], None] = print,
) -> RealExecution:
    """Real ``runflows`` processes; one that exits (a crashing step) is restarted at once."""
    from tests.chaos import start_worker, stop_workers

    _prepare(directory)
    rng = random.Random(seed)
    by_index = {program["index"]: program for program in programs}
    result = RealExecution()
    waves = [programs[i::3] for i in range(3)]
    wave_at = [0.0, rng.uniform(0.5, 2.0), rng.uniform(2.0, 4.0)]
    result.runs.update(_send(waves[0], "real", directory, nonce))
    waves[0] = []
    procs = [
        start_worker(db_name, logs / f"worker-{i}.log", concurrency=concurrency)
        for i in range(processes)
    ]
    started = time.monotonic()
    tracker = _Tracker(result)
    scheduled: dict[tuple[str, str], tuple[float, dict]] = {}  # wait: (when to send, op)
    released: set[tuple[str, str]] = set()
    next_decoy = started + rng.uniform(0.2, 1.0)
    try:
        while True:
            now = time.monotonic()
            tracker.look({proc.pid for proc in procs if proc.poll() is None})
            for i, proc in enumerate(procs):
                code = proc.poll()
                if code is None:
                    continue
                result.deaths.append((proc.pid, code))
                tracker.died(proc.pid)
                procs[i] = start_worker(db_name, logs / f"worker-{i}.log", concurrency=concurrency)
            for wave in (1, 2):
                if waves[wave] and now - started >= wave_at[wave]:
                    result.runs.update(_send(waves[wave], "real", directory, nonce))
                    waves[wave] = []
            for run_id, op in _armed_waits(result.runs, by_index):
                if (run_id, op["name"]) not in released:
                    scheduled.setdefault((run_id, op["name"]), (now + op["delay"], op))
            for wait, (due, op) in list(scheduled.items()):
                if due <= now:
                    del scheduled[wait]
                    released.add(wait)
                    _go(wait[0], op)
                    result.events_sent += 1
            if now >= next_decoy:
                _decoy(nonce, result.decoys)
                result.decoys += 1
                next_decoy = now + rng.uniform(0.2, 1.0)
            if not any(waves) and _all_finished():
                break
            if now - started > timeout:
                say(f"  model: not finished in {timeout:.0f}s")
                break
            time.sleep(0.05)
    finally:
        stop_workers(procs, patience=20)
    result.seconds = time.monotonic() - started
    return result


def _decoy(nonce: str, n: int) -> None:
    """An event of the awaited name that no run waits for (another key)."""
    import durable_flows as df
    from tests.model_flows import GO_EVENT

    df.send(df.Event(name=GO_EVENT, data={"key": f"{nonce}-decoy-{n}", "token": "decoy"}))


def _all_finished() -> bool:
    from durable_flows.models import Run

    return (
        not Run.objects.filter(function_id__startswith="model-")
        .exclude(status__in=FINISHED)
        .exists()
    )


class _Tracker:
    """Which runs (and parallel step tasks) each worker holds, looked at every loop.

    When a worker process dies, or when the other workers declare a live one dead
    (its heartbeat was late by LEASE_SECONDS: they delete its row and take its runs
    back), each run it held is charged one attempt (``Run.attempt``; a step task's
    step, one of its attempts). What a dead worker held is read as soon as it died
    (certain); what a worker declared dead held, as last seen (it may have let go of
    a run since): only a possible charge.
    """

    def __init__(self, result: RealExecution) -> None:
        self.result = result
        self.worker_of: dict[int, str] = {}  # pid: worker id
        self.held: dict[str, tuple[list[str], list[str]]] = {}  # worker id: (runs, tasks' runs)
        self.present: set[str] = set()

    def _read(self) -> tuple[dict[str, int], dict[str, tuple[list[str], list[str]]]]:
        from durable_flows.models import Run, StepTask
        from durable_flows.models import Worker as WorkerRow

        rows = dict(WorkerRow.objects.values_list("pk", "pid"))
        held: dict[str, tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
        for run_id, owner in Run.objects.filter(status="running").values_list("pk", "lease_owner"):
            held[owner][0].append(run_id)
        for run_id, owner in StepTask.objects.filter(status="running").values_list(
            "run_id", "lease_owner"
        ):
            held[owner][1].append(run_id)
        return rows, held

    def look(self, alive: set[int]) -> None:
        """Note what each worker holds; charge those that vanished while their process lives."""
        rows, held = self._read()
        for worker_id, pid in rows.items():
            if pid in alive:
                self.worker_of[pid] = worker_id
                self.held[worker_id] = held.get(worker_id, ([], []))
        for worker_id in self.present - set(rows):
            pid = next((p for p, w in self.worker_of.items() if w == worker_id), None)
            if pid in alive:  # declared dead while alive: it comes back under the same id
                self.result.live_declared_dead += 1
                self._charge(worker_id, certain=False)
        self.present = {worker_id for worker_id, pid in rows.items() if pid in alive}

    def died(self, pid: int) -> None:
        """A worker process exited: charge what it held (read now, if its row is still
        there, else as last seen)."""
        rows, held = self._read()
        worker_id = self.worker_of.pop(pid, None)
        worker_id = worker_id or next((w for w, p in rows.items() if p == pid), None)
        if worker_id is None:
            self.result.unobserved_deaths += 1  # its row was never seen
            return
        certain = worker_id in rows  # what it held cannot have changed since it died
        if certain:
            self.held[worker_id] = held.get(worker_id, ([], []))
        self.present.discard(worker_id)
        self._charge(worker_id, certain=certain)

    def _charge(self, worker_id: str, *, certain: bool) -> None:
        runs, tasks = self.held.pop(worker_id, ([], []))
        if certain:
            self.result.run_hits.update(runs)
            self.result.task_hits.update(tasks)
        else:
            self.result.maybe_hits.update(runs + tasks)


# --- observing --------------------------------------------------------------------------------


class _World:
    """Everything an execution left behind, read once."""

    def __init__(self, directory: Path) -> None:
        from durable_flows.models import Run
        from tests.models import Effect

        self.directory = directory
        self.effects: Counter = Counter()
        for run_id, key in Effect.objects.filter(key__startswith="m|").values_list("run_id", "key"):
            self.effects[(run_id, key[2:])] += 1
        listened = Counter(
            Effect.objects.filter(key__startswith="l|").values_list("run_id", flat=True)
        )
        self.listeners: dict[str, list[tuple[str, str, int]]] = defaultdict(list)
        for run in Run.objects.filter(function_id="model-listener").select_related("event"):
            data = run.event.data if run.event else {}
            entry = (data.get("from", "?"), run.status, listened[run.pk])
            self.listeners[data.get("key", "?")].append(entry)
        self.appends: Counter = Counter()
        for line in (directory / "appends.txt").read_text().splitlines():
            run_id, _, step = line.partition(" ")
            self.appends[(run_id, step)] += 1

    def observe(self, run: Any) -> dict:
        from durable_flows.models import Run, Step

        steps = {
            name: [kind, status, attempts]
            for name, kind, status, attempts in Step.objects.filter(run_id=run.pk).values_list(
                "name", "kind", "status", "attempts"
            )
        }
        children = {
            child.parent_step: self.observe(child)
            for child in Run.objects.filter(parent_run_id=run.pk).select_related("event")
        }
        key = run.event.data.get("key") if run.event else None
        listeners = self.listeners.get(key, [])
        return {
            "status": run.status,
            "output": run.output,
            "error": (run.error or {}).get("type") if run.status == "failed" else None,
            "steps": steps,
            "children": children,
            "sent": sorted(source for source, _, _ in listeners),
            "run": run.pk,
            "attempt": run.attempt,
            "listeners": listeners,
        }


def observe_all(runs: dict[str, int], directory: Path) -> tuple[dict[int, dict], _World]:
    from durable_flows.models import Run

    world = _World(directory)
    observed = {}
    for run in Run.objects.filter(pk__in=list(runs)).select_related("event"):
        observed[runs[run.pk]] = world.observe(run)
    return observed, world


# --- checking ---------------------------------------------------------------------------------


def check_effects(program: dict, obs: dict, world: _World, allowance: Counter) -> list[str]:
    """Exactly-once atomic rows, at-least-once appends (again at most once per crash that
    hit the run: ``allowance``), one listener per sent event; and the run finished."""
    problems = []
    run_id, steps = obs["run"], obs["steps"]
    if obs["status"] not in FINISHED:
        problems.append(f"run {run_id} stuck in {obs['status']!r}")
    extra = 0
    for op in _ops(program):
        name = op["name"]
        completed = steps.get(name, [None, None])[1] == "completed"
        if op["op"] == "atomic" or (op["op"] != "append" and op.get("atomic")):
            rows = world.effects[(run_id, name)]
            if rows != int(completed):
                problems.append(f"atomic step {name}: {rows} row(s), step {steps.get(name)}")
        elif op["op"] == "append":
            lines = world.appends[(run_id, name)]
            if completed and not lines:
                problems.append(f"non-atomic step {name} completed but never ran")
            extra += max(0, lines - int(completed))
    if extra > allowance[run_id]:
        problems.append(
            f"non-atomic steps ran {extra} extra time(s), {allowance[run_id]} crash(es) hit the run"
        )
    sent = {op["name"] for op in _ops(program) if op["op"] == "send"}
    for source, status, rows in obs["listeners"]:
        if source not in sent or steps.get(source, [0, 0])[1] != "completed":
            problems.append(f"a listener run for {source!r}, which was not sent")
        if status != "completed" or rows != 1:
            problems.append(f"listener of {source!r}: {status}, {rows} row(s)")
    for source in sent:
        n = sum(1 for s, _, _ in obs["listeners"] if s == source)
        if steps.get(source, [0, 0])[1] == "completed" and n != 1:
            problems.append(f"send step {source}: {n} listener runs")
    for op in program["ops"]:
        child = obs["children"].get(op["name"])
        if op["op"] == "invoke" and child is not None:
            inner = check_effects(op["child"], child, world, allowance)
            problems += [f"child {op['name']}: {p}" for p in inner]
    return problems


def compare(expected: dict, got: dict, crash_steps: frozenset[str] = frozenset()) -> list[str]:
    """Differences between two observations (or a prediction). ``crash_steps``: steps
    that killed their process; if both runs failed of it, the step's record may be
    missing or still ``running`` (the process died before it could write one)."""
    diffs = []
    for what in ("status", "output", "error"):
        if expected[what] != got[what]:
            diffs.append(f"{what}: expected {expected[what]!r}, got {got[what]!r}")
    crashed = expected["error"] == got["error"] == "WorkerCrashed"
    for name in sorted(set(expected["steps"]) | set(got["steps"])):
        want, have = expected["steps"].get(name), got["steps"].get(name)
        if crashed and name in crash_steps and (have is None or have[1] in ("running", "failed")):
            continue
        if want != have:
            diffs.append(f"step {name}: expected {want}, got {have}")
    if expected["sent"] != got["sent"]:
        diffs.append(f"listeners: expected {expected['sent']}, got {got['sent']}")
    for name in sorted(set(expected["children"]) | set(got["children"])):
        want, have = expected["children"].get(name), got["children"].get(name)
        if want is None or have is None:
            diffs.append(f"child {name}: expected {_brief(want)}, got {_brief(have)}")
        else:
            diffs += [f"child {name}: {d}" for d in compare(want, have)]
    return diffs


def _brief(obs: dict | None) -> str:
    return "none" if obs is None else f"{obs['status']} {obs['error'] or ''}".strip()


@dataclass
class Finding:
    index: int
    # "model": the reference disagrees with the model; "differs": the workers with the
    # reference; "effects", "reference effects": an invariant; "crashes counted": a
    # Run.attempt that is not the number of deaths of workers that held the run.
    kind: str
    details: list[str]

    def __str__(self) -> str:
        return f"program {self.index} [{self.kind}]: " + "; ".join(self.details[:6])


def check(
    programs: list[dict],
    reference: dict[int, dict],
    ref_world: _World,
    real: dict[int, dict],
    real_world: _World,
    execution: RealExecution,
) -> tuple[list[Finding], list[Finding]]:
    """Problems, and (not problems) differences of runs that another run's crash hit."""
    problems: list[Finding] = []
    perturbed: list[Finding] = []
    for program in programs:
        index = program["index"]
        ref, got = reference.get(index), real.get(index)
        if ref is None or got is None:
            problems.append(Finding(index, "missing", ["no run"]))
            continue
        diffs = compare(predict(program), ref)
        if diffs:
            problems.append(Finding(index, "model", diffs))
        effects = check_effects(program, ref, ref_world, Counter())
        if effects:
            problems.append(Finding(index, "reference effects", effects))
        crashed = _own_crashes(program, got, real_world.directory)
        workers_ref = _as_workers_count(ref, crashed)
        charges = _charges(program, workers_ref, got, crashed, execution)
        effects = check_effects(program, got, real_world, charges)
        if effects:
            problems.append(Finding(index, "effects", effects))
        uncounted = [
            f"run {run_id}: attempt {attempt}, but {execution.run_hits[run_id]} worker(s)"
            " holding it died or were declared dead"
            for run_id, attempt in _attempts(got)
            if attempt < execution.run_hits[run_id]
        ]
        if uncounted:
            problems.append(Finding(index, "crashes counted", uncounted))
        diffs = compare(workers_ref, got, frozenset(crashed))
        if diffs and (sum(charges.values()) or _crashed_by_another(got, crashed, execution)):
            perturbed.append(Finding(index, "perturbed", diffs))
        elif diffs:
            problems.append(Finding(index, "differs", diffs))
    return problems, perturbed


def _charges(
    program: dict, ref: dict, got: dict, crashed: dict[str, int], execution: RealExecution
) -> Counter:
    """Attempts charged to the run and its children by workers lost while they held them,
    other than its own crashes: seen by the harness, or counted by the engine
    (``Run.attempt``); and, when workers were lost, a parallel step's attempts beyond
    the reference's (the harness may not have seen the step task being held)."""
    charges: Counter = Counter()
    for run_id, attempt in _attempts(got):
        seen = execution.run_hits[run_id] + execution.maybe_hits[run_id]
        charges[run_id] = max(seen, attempt) + execution.task_hits[run_id]
    charges[got["run"]] -= sum(crashed.values())
    if execution.deaths or execution.live_declared_dead:
        for op in program["ops"]:
            for branch in op.get("branches", ()):
                for step in branch:
                    want = ref["steps"].get(step["name"], [0, 0, 0])[2]
                    have = got["steps"].get(step["name"], [0, 0, 0])[2]
                    charges[got["run"]] += max(0, have - want)
    return +charges


def _crashed_by_another(got: dict, crashed: dict[str, int], execution: RealExecution) -> bool:
    """A ``WorkerCrashed`` failure (of the run or a child) that its own crash steps cannot
    explain, in a round where other programs' steps killed workers: a worker died holding
    one of its step tasks between two of the harness's looks."""

    def failed_by_crash(obs: dict) -> bool:
        return obs.get("error") == "WorkerCrashed" or any(
            failed_by_crash(child) for child in obs.get("children", {}).values()
        )

    from tests.model_flows import CRASH_EXIT_CODE

    crash_exits = sum(1 for _, code in execution.deaths if code == CRASH_EXIT_CODE)
    return failed_by_crash(got) and crash_exits > sum(crashed.values())


def _own_crashes(program: dict, obs: dict, directory: Path) -> dict[str, int]:
    """{crash step: how often it killed its process} (its attempts up to ``times``)."""
    from tests.model_flows import attempts_made

    return {
        op["name"]: min(op["times"], attempts_made(str(directory), obs["run"], op["name"]))
        for op in _ops(program)
        if op["op"] == "crash"
    }


def _as_workers_count(ref: dict, crashed: dict[str, int]) -> dict:
    """The reference's observation as the workers record it: a crash (the reference's
    stand-in exception) is an attempt of the run (``Run.attempt``), not of the step it
    interrupted, so a crash step that completed has its other attempts only."""
    steps = dict(ref["steps"])
    for name, crashes in crashed.items():
        if name in steps and steps[name][1] == "completed":
            kind, status, attempts = steps[name]
            steps[name] = [kind, status, attempts - crashes]
    return {**ref, "steps": steps}


def _attempts(obs: dict) -> Iterator[tuple[str, int]]:
    """(run id, Run.attempt) of the run and of its children."""
    yield obs["run"], obs["attempt"]
    for child in obs["children"].values():
        yield from _attempts(child)


# --- the whole check ---------------------------------------------------------------------------


def run_model(
    programs: list[dict],
    *,
    db_name: str,
    workdir: Path,
    seed: int,
    processes: int = 2,
    concurrency: int = 2,
    timeout: float = 150,
    reference_timeout: float = 60,
    say: Callable[[str], None] = print,
) -> dict:
    """Execute ``programs`` both ways and check them; returns a summary with the findings.
    ``timeout``: for the workers to finish every run; ``reference_timeout``: in-process."""
    from durable_flows.models import Run
    from tests.model_flows import CRASH_EXIT_CODE

    nonce = f"{seed}-{programs[0]['index'] if programs else 0}-{os.getpid()}-{time.time_ns()}"
    began = time.monotonic()
    ref_runs = execute_reference(programs, workdir / "ref", nonce, reference_timeout)
    ref_seconds = time.monotonic() - began
    execution = execute_real(
        programs,
        workdir / "real",
        nonce,
        db_name=db_name,
        logs=workdir,
        processes=processes,
        concurrency=concurrency,
        timeout=timeout,
        seed=seed,
        say=say,
    )
    reference, ref_world = observe_all(ref_runs, workdir / "ref")
    real, real_world = observe_all(execution.runs, workdir / "real")
    problems, perturbed = check(programs, reference, ref_world, real, real_world, execution)
    stuck = Run.objects.filter(function_id__startswith="model-").exclude(status__in=FINISHED)
    crash_exits = sum(1 for _, code in execution.deaths if code == CRASH_EXIT_CODE)
    others = [
        f"pid {pid} exit code {code}" for pid, code in execution.deaths if code != CRASH_EXIT_CODE
    ]
    if others:  # only a crashing step may end a worker
        problems.append(Finding(-1, "workers exited", others))
    return {
        "programs": len(programs),
        "runs_both_ways": Run.objects.filter(function_id__startswith="model-").count(),
        "reference_seconds": round(ref_seconds, 1),
        "workers_seconds": round(execution.seconds, 1),
        "crash_exits": crash_exits,
        "other_exits": len(others),
        "runs_hit_by_crashes": len(execution.run_hits + execution.task_hits + execution.maybe_hits),
        "unobserved_deaths": execution.unobserved_deaths,
        "live_declared_dead": execution.live_declared_dead,
        "waits_released": execution.events_sent,
        "decoy_events": execution.decoys,
        "stuck": stuck.count(),
        "perturbed": len(perturbed),
        "problems": len(problems),
        "findings": problems,
        "perturbations": perturbed,
    }


def report(summary: dict, programs: list[dict], seed: int, say: Callable[[str], None] = print):
    by_index = {program["index"]: program for program in programs}
    for key, value in summary.items():
        if key not in ("findings", "perturbations"):
            say(f"  {key:<20} {value}")
    for finding in summary["perturbations"]:
        say(f"  (perturbed by another run's crash) {finding}")
    for finding in summary["findings"]:
        say(f"  PROBLEM seed={seed} {finding}")
        if finding.index in by_index:
            say(f"    program: {json.dumps(by_index[finding.index], separators=(',', ':'))}")


def seed_from_env(default: int | None = None) -> int:
    value = os.environ.get("MODEL_SEED")
    if value:
        return int(value)
    return default if default is not None else random.SystemRandom().randrange(10**6)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--programs", type=int, default=500)
    parser.add_argument("--seed", type=int, default=None, help="default: MODEL_SEED or random")
    parser.add_argument("--database", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--round", type=int, default=50, help="programs executed at a time")
    parser.add_argument("--only", default="", help="comma-separated program indexes")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else seed_from_env()
    workdir = Path(tempfile.mkdtemp(prefix="df-model-"))
    # A database of its own (it is flushed): MODEL_DATABASE_URL, not DATABASE_URL.
    if args.database == "sqlite":
        os.environ["DATABASE_URL"] = f"sqlite:///{workdir / 'model.sqlite3'}"
    else:
        os.environ["DATABASE_URL"] = os.environ.get("MODEL_DATABASE_URL", DEFAULT_URL)
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    sys.path.insert(0, str(ROOT))
    if os.environ["DATABASE_URL"].startswith("postgres"):
        from bench._common import _create_pg_database

        _create_pg_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    import logging

    from django.core.management import call_command
    from django.db import connection

    logging.getLogger("durable_flows").setLevel(logging.WARNING)  # the reference's retries

    call_command("migrate", verbosity=0)
    call_command("flush", interactive=False, verbosity=0)
    programs = generate_programs(seed, args.programs)
    if args.only:
        wanted = {int(i) for i in args.only.split(",")}
        programs = [program for program in programs if program["index"] in wanted]
    print(
        f"model: seed {seed} (MODEL_SEED={seed} to reproduce), {len(programs)} programs on "
        f"{connection.vendor}, {args.processes} workers x {args.concurrency} threads; in {workdir}"
    )
    failed = 0
    for start in range(0, len(programs), args.round):
        chunk = programs[start : start + args.round]
        summary = run_model(
            chunk,
            db_name=connection.settings_dict["NAME"],
            workdir=workdir / f"round-{start}",
            seed=seed + start,
            processes=args.processes,
            concurrency=args.concurrency,
            timeout=max(150.0, 3.0 * len(chunk)),
        )
        print(f"round {start}-{start + len(chunk) - 1}:")
        report(summary, chunk, seed)
        failed += summary["problems"] + summary["stuck"]
    print("model: " + (f"FAILED ({failed} problems)" if failed else "passed"))
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
