"""Durable functions used by the tests; workers started by the tests load them too."""

from __future__ import annotations

import os
import time
from pathlib import Path

import durable_flows as df

from .models import Effect, Ledger


def record(key: str, run_id: str = "") -> int:
    Effect.objects.create(key=key, run_id=run_id, pid=os.getpid())
    return Effect.objects.filter(key=key, run_id=run_id).count()


@df.function(id="three-steps", trigger=df.TriggerEvent(event="test/three"))
def three_steps(ctx: df.Context) -> dict:
    record("body", ctx.run_id)
    a = ctx.step.run("a", record, "step-a", ctx.run_id)
    b = ctx.step.run("b", record, "step-b", ctx.run_id)
    c = ctx.step.run("c", record, "step-c", ctx.run_id)
    return {"a": a, "b": b, "c": c}


def _flaky(run_id: str, failures: int) -> str:
    seen = record("flaky", run_id)
    if seen <= failures:
        raise ValueError(f"flaky failure {seen}")
    return f"ok after {seen}"


@df.function(id="flaky", trigger=df.TriggerEvent(event="test/flaky"), retries=4)
def flaky(ctx: df.Context) -> str:
    return ctx.step.run("flaky", _flaky, ctx.run_id, ctx.event.data["failures"], atomic=False)


@df.function(id="flaky-no-retries", trigger=df.TriggerEvent(event="test/flaky0"), retries=0)
def flaky_no_retries(ctx: df.Context) -> str:
    return ctx.step.run("flaky", _flaky, ctx.run_id, 1, atomic=False)


def _non_retriable(run_id: str) -> None:
    record("non-retriable", run_id)
    raise df.NonRetriableError("card declined")


@df.function(id="non-retriable", trigger=df.TriggerEvent(event="test/nonretriable"))
def non_retriable(ctx: df.Context) -> None:
    ctx.step.run("charge", _non_retriable, ctx.run_id, atomic=False)


@df.function(id="catches", trigger=df.TriggerEvent(event="test/catches"), retries=1)
def catches(ctx: df.Context) -> dict:
    try:
        ctx.step.run("doomed", _flaky, ctx.run_id, 99, atomic=False)
    except df.StepError as exc:
        fallback = ctx.step.run("fallback", lambda: "used fallback")
        return {"caught": exc.error["type"], "fallback": fallback}
    return {"caught": None}


def _write_then(key: str, fail: bool) -> str:
    Ledger.objects.create(key=key)
    if fail:
        raise df.NonRetriableError("written, then failed")
    return key


@df.function(id="atomic-write", trigger=df.TriggerEvent(event="test/atomic"), retries=1)
def atomic_write(ctx: df.Context) -> str:
    data = ctx.event.data
    key = ctx.step.run("write", _write_then, data["key"], data.get("fail", False))
    ctx.step.run("after", record, "after-write", ctx.run_id)
    return key


def _slow(run_id: str, seconds: float, marker: str) -> str:
    Path(marker).write_text(str(os.getpid()))
    time.sleep(seconds)
    record("slow-done", run_id)
    return "slow done"


@df.function(id="slow", trigger=df.TriggerEvent(event="test/slow"))
def slow(ctx: df.Context) -> list:
    d = ctx.event.data
    first = ctx.step.run("first", record, "slow-first", ctx.run_id)
    middle = ctx.step.run("middle", _slow, ctx.run_id, d["seconds"], d["marker"], atomic=False)
    last = ctx.step.run("last", record, "slow-last", ctx.run_id)
    return [first, middle, last]


@df.function(id="many-steps", trigger=df.TriggerEvent(event="test/many"))
def many_steps(ctx: df.Context) -> int:
    total = 0
    for i in range(ctx.event.data["steps"]):
        total += ctx.step.run("add", lambda i=i: i)
    return total


@df.function(id="bad-output", trigger=df.TriggerEvent(event="test/bad-output"))
def bad_output(ctx: df.Context) -> None:
    ctx.step.run("set", lambda: {1, 2, 3})


@df.function(id="body-error", trigger=df.TriggerEvent(event="test/body-error"), retries=2)
def body_error(ctx: df.Context) -> None:
    record("body-error", ctx.run_id)
    raise RuntimeError("outside any step")


@df.function(id="wildcard", trigger=df.TriggerEvent(event="test.family.*"))
def wildcard(ctx: df.Context) -> str:
    return ctx.event.name


@df.function(
    id="pro-only",
    trigger=df.TriggerEvent(event="test/plan", expression="event.data.plan == 'pro'"),
)
def pro_only(ctx: df.Context) -> str:
    return ctx.event.data["plan"]


@df.function(id="one-step", trigger=df.TriggerEvent(event="test/one"))
def one_step(ctx: df.Context) -> int:
    return ctx.step.run("only", record, "one-step", ctx.run_id)


@df.function(
    id="on-finished",
    trigger=df.TriggerEvent(
        event="durable_flows/function.finished", expression="event.data.function_id == 'wildcard'"
    ),
)
def on_finished(ctx: df.Context) -> str:
    return ctx.event.data["run_id"]


@df.function(id="other-queue", trigger=df.TriggerEvent(event="test/other-queue"), queue="slow")
def other_queue(ctx: df.Context) -> str:
    return "ran on the slow queue"


def _ctx_info(ctx: df.Context, failures: int) -> dict:
    if ctx.attempt < failures:
        raise ValueError("not yet")
    return {"attempt": ctx.attempt}


@df.function(id="ctx-info", trigger=df.TriggerEvent(event="test/ctx"))
def ctx_info(ctx: df.Context) -> dict:
    step = ctx.step.run("attempts", _ctx_info, ctx, 2, atomic=False)
    return {
        "run_id": ctx.run_id,
        "function_id": ctx.function_id,
        "event": [ctx.event.id, ctx.event.name, ctx.event.data, ctx.event.ts],
        "events": len(ctx.events),
        "step_attempt": step["attempt"],
        "attempt_outside_steps": ctx.attempt,
    }


def _append(path: str, line: str) -> None:
    with open(path, "a") as log:
        log.write(line + "\n")


def _transient(counters: str, run_id: str, step: str, failures: int, key: str) -> int:
    """Write a row, then fail on the step's first ``failures`` attempts (counted in a file,
    which the rollback of the failed attempt's row does not undo)."""
    counter = Path(counters, f"{run_id}.{step}")
    with counter.open("ab") as attempts:
        attempts.write(b"x")
    seen = counter.stat().st_size
    record(key, run_id)
    if seen <= failures:
        raise ConnectionError(f"transient failure {seen} of {failures}")
    return seen


def _append_after(counters: str, run_id: str, step: str, failures: int, path: str) -> int:
    """Non-atomic: fail on the first ``failures`` attempts, then append a line."""
    counter = Path(counters, f"{run_id}.{step}")
    with counter.open("ab") as attempts:
        attempts.write(b"x")
    seen = counter.stat().st_size
    if seen <= failures:
        raise ConnectionError(f"transient failure {seen} of {failures}")
    _append(path, f"{run_id} {step}")
    return seen


@df.function(id="chaos", trigger=df.TriggerEvent(event="test/chaos"), retries=20)
def chaos(ctx: df.Context) -> dict:
    """Atomic steps (counted rows), non-atomic ones (lines in a file), steps that fail
    ``failures`` times before they succeed, a sleep, a wait for an event sent while the
    run is under way, two steps in parallel and an invoked child run."""
    data, run_id = ctx.event.data, ctx.run_id
    log, counters, failures = data["log"], data["counters"], data.get("failures", 0)
    ctx.step.run("atomic-0", record, "chaos-atomic-0", run_id)
    ctx.step.run("append-1", _append, log, f"{run_id} append-1", atomic=False)
    ctx.step.run("flaky-2", _transient, counters, run_id, "flaky-2", failures, "chaos-flaky-2")
    ctx.step.sleep("nap", data.get("sleep", "1s"))
    go = ctx.step.wait_for_event("wait", event="test/chaos.go", match="data.key", timeout="60s")
    both = ctx.group.parallel(
        (
            lambda: ctx.step.run(
                "par-a", _transient, counters, run_id, "par-a", failures, "chaos-par-a"
            ),
            lambda: ctx.step.run(
                "par-b", _append_after, counters, run_id, "par-b", failures, log, atomic=False
            ),
        )
    )
    child = ctx.step.invoke(
        "child",
        function="chaos-child",
        data={"counters": counters, "failures": failures, "parent": run_id},
    )
    ctx.step.run("atomic-5", record, "chaos-atomic-5", run_id)
    ctx.step.run("append-6", _append, log, f"{run_id} append-6", atomic=False)
    ctx.step.run("atomic-7", record, "chaos-atomic-7", run_id)
    return {"resumed_by": go.id if go else None, "parallel": list(both), "child": child}


@df.function(id="chaos-child", trigger=df.TriggerEvent(event="test/chaos.child"), retries=20)
def chaos_child(ctx: df.Context) -> str:
    """Invoked by ``chaos``: a step that fails before it succeeds, and an atomic one."""
    data = ctx.event.data
    args = (data["counters"], ctx.run_id, "flaky", data["failures"], "chaos-child-flaky")
    ctx.step.run("flaky", _transient, *args)
    ctx.step.run("atomic", record, "chaos-child-atomic", ctx.run_id)
    return data["parent"]


from . import flows_time  # noqa: E402,F401 - the time-and-events test functions


def _needs_permission(run_id: str) -> str:
    record("gate", run_id)
    if not Ledger.objects.filter(key=f"allow-{run_id}").exists():
        raise df.NonRetriableError("not allowed yet")
    return "allowed"


@df.function(id="gated", trigger=df.TriggerEvent(event="test/gated"), retries=0)
def gated(ctx: df.Context) -> str:
    ctx.step.run("before", record, "gated-before", ctx.run_id)
    return ctx.step.run("gate", _needs_permission, ctx.run_id, atomic=False)


from . import flows_control  # noqa: E402, F401  - flow-control test functions


def _write_then_maybe_fail(run_id: str, fail: bool) -> str:
    record("grouped", run_id)
    if fail:
        raise df.NonRetriableError("refused after writing")
    return run_id


@df.function(id="grouped-one-step", trigger=df.TriggerEvent(event="test/grouped"))
def grouped_one_step(ctx: df.Context) -> str:
    return ctx.step.run("write", _write_then_maybe_fail, ctx.run_id, ctx.event.data["fail"])


def _seen_elsewhere(run_id: str) -> list[int]:
    """From another database connection: are the first step's row and checkpoint committed?"""
    import threading

    from django.db import connections

    from durable_flows.models import Step

    seen: list[int] = []

    def look() -> None:
        try:
            seen.append(Effect.objects.filter(key="first", run_id=run_id).count())
            seen.append(Step.objects.filter(run_id=run_id, name="first").count())
        finally:
            connections.close_all()

    thread = threading.Thread(target=look)
    thread.start()
    thread.join()
    return seen


@df.function(id="checkpoint-visible", trigger=df.TriggerEvent(event="test/visible"))
def checkpoint_visible(ctx: df.Context) -> list[int]:
    ctx.step.run("first", record, "first", ctx.run_id)
    return ctx.step.run("second", _seen_elsewhere, ctx.run_id)


def _copy(value: object) -> object:
    return value


def _explode(text: str) -> None:
    raise ValueError(text)


@df.function(id="echo", trigger=df.TriggerEvent(event="test/echo"), retries=0)
def echo(ctx: df.Context) -> object:
    """Stores its event's payload again and again: step outputs, an error, its output."""
    payload = ctx.event.data["payload"]
    for _ in range(ctx.event.data.get("steps", 1)):
        ctx.step.run("copy", _copy, payload)
    if ctx.event.data.get("fail"):
        ctx.step.run("explode", _explode, repr(payload))
    return payload


# Failing, crashing and slow steps; values (not JSON, dates and decimals); started
# functions; invocation trees; signals and patches; typed events; async def functions
# and the docs' examples (docs/async.md, docs/typed-events.md); the programs of
# tests/model_based.py. Workers load them all, as the test process does.
from . import (  # noqa: E402, F401
    flows_async,
    flows_async_docs,
    flows_async_rules,
    flows_cascade,
    flows_failures,
    flows_groups,
    flows_handles,
    flows_signals,
    flows_typed,
    flows_values,
    model_flows,
    model_flows_async,
)
from .docs_examples import orchestration, typed_events  # noqa: E402, F401
