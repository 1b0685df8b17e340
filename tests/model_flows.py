"""Durable functions that interpret a generated *program* (tests/model_based.py).

A program travels in the run's event data, so ``runflows`` workers (which import
this module through tests/flows.py) execute exactly what the harness generated::

    {"mode": "real", "dir": "/tmp/...", "key": "k-3", "retries": 2, "ops": [...]}

``mode`` is "ref" when the in-process reference executes the program: it cannot
lose its process, so a step that would kill it (``os._exit``) raises
``WorkerCrashed`` instead (the engine's specification: a crash counts as a
failed attempt), a step that would raise ``SystemExit`` or ``KeyboardInterrupt``
raises an ``Exception`` of that name (the engine's specification: a step's
BaseException fails the step like an Exception; raised in the test process it
would stop pytest) and slow steps do not sleep.

Attempts are counted durably, outside any transaction, in one file per
(run, step): ``dir/counters/<run_id>.<step>``, one byte per attempt.
Atomic writes are ``Effect(key="m|<step>", run_id=...)`` rows; non-atomic effects
are lines "<run_id> <step>" appended to ``dir/appends.txt``.
"""

from __future__ import annotations

import functools
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import durable_flows as df

from .models import Effect

RETRIES = (0, 1, 2, 3)  # one top-level and one child function per value
CRASH_EXIT_CODE = 86  # what a crashing step exits with (the harness tells it from others)
GO_EVENT = "model/go"  # resumes a wait step: data {"key": <program key>, "token": <step>}
GO_SIGNAL = "go"  # resumes a signal step: data {"token": <step>}
SENT_EVENT = "model/sent"  # sent by send steps; each starts one model-listener run


class WorkerCrashed(Exception):  # noqa: N818 - the engine's error type for a crash
    """The reference's stand-in for a step that kills its process."""


# Stand-ins, for the reference, of the BaseExceptions a real step raises.
_STAND_INS: dict[str, type[Exception]] = {
    name: type(name, (Exception,), {"__module__": __name__})
    for name in ("SystemExit", "KeyboardInterrupt")
}
_REAL: dict[str, type[BaseException]] = {
    "ValueError": ValueError,
    "SystemExit": SystemExit,
    "KeyboardInterrupt": KeyboardInterrupt,
}


def counter_path(directory: str, run_id: str, step: str) -> Path:
    return Path(directory, "counters", f"{run_id}.{step}")


def attempts_made(directory: str, run_id: str, step: str) -> int:
    """How many times the step's function was entered (crashed attempts included)."""
    path = counter_path(directory, run_id, step)
    return path.stat().st_size if path.exists() else 0


def _count(directory: str, run_id: str, step: str) -> int:
    """Count one more attempt, durably (a file written before anything else): 1, 2, ..."""
    path = counter_path(directory, run_id, step)
    with path.open("ab") as counter:
        counter.write(b"x")
    return path.stat().st_size


def _effect(run_id: str, step: str) -> None:
    Effect.objects.create(key=f"m|{step}", run_id=run_id, pid=os.getpid())


def _error(kind: str, mode: str, message: str) -> BaseException:
    if mode == "ref" and kind in _STAND_INS:
        return _STAND_INS[kind](message)
    return _REAL[kind](message)


# --- the steps' functions ------------------------------------------------------------


def _atomic(run_id: str, step: str) -> str:
    _effect(run_id, step)
    return step


def _append(directory: str, run_id: str, step: str) -> str:
    with open(os.path.join(directory, "appends.txt"), "a") as lines:
        lines.write(f"{run_id} {step}\n")
    return step


def _flaky(directory: str, run_id: str, step: str, op: dict, mode: str) -> str:
    seen = _count(directory, run_id, step)
    if op["atomic"]:
        _effect(run_id, step)  # undone with the failed attempt
    if seen <= op["failures"]:
        raise _error(op["exc"], mode, f"{step}: failure {seen}")
    return step


def _nonretriable(run_id: str, step: str, atomic: bool) -> None:
    if atomic:
        _effect(run_id, step)
    raise df.NonRetriableError(f"{step}: refused")


def _retry_after(directory: str, run_id: str, step: str, failures: int, after: str) -> str:
    seen = _count(directory, run_id, step)
    if seen <= failures:
        raise df.RetryAfterError(f"{step}: not yet ({seen})", after)
    return step


def _slow(run_id: str, step: str, seconds: float, atomic: bool, mode: str) -> str:
    if atomic:
        _effect(run_id, step)
    if mode == "real":
        time.sleep(seconds)
    return step


def _crash(directory: str, run_id: str, step: str, op: dict, mode: str) -> str:
    seen = _count(directory, run_id, step)
    if op["atomic"]:
        _effect(run_id, step)  # must be rolled back by the crash
    if seen <= op["times"]:
        if mode == "real":
            os._exit(CRASH_EXIT_CODE)
        raise WorkerCrashed(f"{step}: crash {seen}")
    return step


# --- the interpreter -----------------------------------------------------------------


def interpret(ctx: df.Context) -> list:
    data = ctx.event.data
    return [execute(ctx, data, op) for op in data["ops"]]


def execute(ctx: df.Context, data: dict, op: dict) -> Any:
    if op.get("catch"):
        try:
            return _execute(ctx, data, op)
        except df.StepError as exc:
            return {"caught": exc.error.get("type")}
    return _execute(ctx, data, op)


def _branch(ctx: df.Context, data: dict, ops: list) -> list:
    return [execute(ctx, data, op) for op in ops]


def _execute(ctx: df.Context, data: dict, op: dict) -> Any:
    kind, step, run_id = op["op"], op["name"], ctx.run_id
    directory, mode = data["dir"], data["mode"]
    atomic = bool(op.get("atomic", True))
    if kind == "atomic":
        return ctx.step.run(step, _atomic, run_id, step)
    if kind == "append":
        return ctx.step.run(step, _append, directory, run_id, step, atomic=False)
    if kind == "flaky":
        return ctx.step.run(step, _flaky, directory, run_id, step, op, mode, atomic=atomic)
    if kind == "nonretriable":
        return ctx.step.run(step, _nonretriable, run_id, step, atomic, atomic=atomic)
    if kind == "retry_after":
        args = (directory, run_id, step, op["failures"], op["after"])
        return ctx.step.run(step, _retry_after, *args, atomic=False)
    if kind == "slow":
        return ctx.step.run(step, _slow, run_id, step, op["seconds"], atomic, mode, atomic=atomic)
    if kind == "crash":
        return ctx.step.run(step, _crash, directory, run_id, step, op, mode, atomic=atomic)
    if kind == "sleep":
        ctx.step.sleep(step, timedelta(seconds=op["seconds"]))
        return None
    if kind == "wait":
        timeout = timedelta(seconds=op["timeout"])
        event = ctx.step.wait_for_event(step, event=GO_EVENT, match="data.key", timeout=timeout)
        return event.data.get("token") if event else None
    if kind == "signal":
        got = ctx.step.wait_for_signal(step, GO_SIGNAL, timedelta(seconds=op["timeout"]))
        return got.get("token") if got else None
    if kind == "patch":
        return ctx.patched(step)
    if kind == "send":
        event = df.Event(name=SENT_EVENT, data={"key": data["key"], "from": step})
        return len(ctx.step.send_event(step, event))
    if kind == "invoke":
        child = op["child"]
        payload = {**child, "mode": mode, "dir": directory, "key": f"{data['key']}/{step}"}
        return ctx.step.invoke(step, function=f"model-child-r{child['retries']}", data=payload)
    if kind == "parallel":
        branches = [functools.partial(_branch, ctx, data, ops) for ops in op["branches"]]
        return list(ctx.group.parallel(branches))
    raise df.NonRetriableError(f"unknown op {kind!r}")


for _retries in RETRIES:
    df.function(
        id=f"model-r{_retries}",
        trigger=df.TriggerEvent(event=f"model/run.r{_retries}"),
        retries=_retries,
    )(interpret)
    df.function(
        id=f"model-child-r{_retries}",
        trigger=df.TriggerEvent(event=f"model/child.r{_retries}"),  # started by invoke only
        retries=_retries,
    )(interpret)


def _listened(run_id: str, source: str) -> str:
    Effect.objects.create(key=f"l|{source}", run_id=run_id, pid=os.getpid())
    return source


# Retries: another run's crash may hit a listener too (each hit is one of its attempts).
@df.function(id="model-listener", trigger=df.TriggerEvent(event=SENT_EVENT), retries=10)
def listener(ctx: df.Context) -> str:
    """One per event a send step sent: its row must exist exactly once."""
    return ctx.step.run("record", _listened, ctx.run_id, ctx.event.data["from"])
