"""Functions whose steps fail, crash their process or take long: the failure paths.

Calls are counted in a file named by the event (``marker``): a file survives the
rollback of an atomic step and the death of the worker process.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import durable_flows as df

from .flows import record


def count_call(marker: str) -> int:
    """Note one call in ``marker``; how many calls so far, this one included."""
    with open(marker, "a") as log:
        log.write(f"{os.getpid()}\n")
    return len(Path(marker).read_text().splitlines())


def _once(marker: str, tag: str) -> str:
    if count_call(marker) == 1:
        raise ConnectionError("transient")
    return tag


@df.function(id="transient", trigger=df.TriggerEvent(event="bad/transient"))
def transient(ctx: df.Context) -> str:
    data = ctx.event.data
    return ctx.step.run("call", _once, data["marker"], data["tag"], atomic=data["atomic"])


def _always(marker: str) -> None:
    count_call(marker)
    raise ValueError("always")


@df.function(id="always-fails", trigger=df.TriggerEvent(event="bad/always"), retries=2)
def always_fails(ctx: df.Context) -> None:
    ctx.step.run("call", _always, ctx.event.data["marker"])


@df.function(id="quick", trigger=df.TriggerEvent(event="good/quick"))
def quick(ctx: df.Context) -> int:
    return ctx.step.run("write", record, "quick", ctx.run_id)


def _crash(marker: str) -> None:
    count_call(marker)
    os._exit(3)


@df.function(id="crasher", trigger=df.TriggerEvent(event="bad/crash"), retries=1)
def crasher(ctx: df.Context) -> None:
    ctx.step.run("boom", _crash, ctx.event.data["marker"])


def _raise(kind: str, marker: str) -> None:
    count_call(marker)
    raise {"SystemExit": SystemExit(2), "KeyboardInterrupt": KeyboardInterrupt()}[kind]


@df.function(id="base-exception", trigger=df.TriggerEvent(event="bad/base"), retries=1)
def base_exception(ctx: df.Context) -> None:
    ctx.step.run("raise", _raise, ctx.event.data["kind"], ctx.event.data["marker"])


def _sleep(run_id: str, seconds: float, marker: str) -> str:
    Path(marker).write_text("started")
    time.sleep(seconds)
    record("slow-atomic", run_id)
    return "slept"


@df.function(id="slow-atomic", trigger=df.TriggerEvent(event="slow/atomic"))
def slow_atomic(ctx: df.Context) -> str:
    data = ctx.event.data
    return ctx.step.run("sleep", _sleep, ctx.run_id, data["seconds"], data["marker"])
