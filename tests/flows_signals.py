"""Functions that wait for signals (tests/test_signals.py), and one whose code changes
under its runs (tests/test_patching.py)."""

from __future__ import annotations

import os

import durable_flows as df


@df.function(id="signal-waiter", retries=0)
def signal_waiter(ctx: df.Context) -> list:
    """Takes ``count`` signals named ``name`` (waiting ``timeout`` for each)."""
    data = ctx.event.data
    got = []
    for _ in range(data.get("count", 1)):
        got.append(
            ctx.step.wait_for_signal("take", data.get("name", "go"), data.get("timeout", "1h"))
        )
    return got


@df.function(id="patchable", trigger=df.TriggerEvent(event="test/patch"), retries=0)
def patchable(ctx: df.Context) -> dict:
    """Version 2 of its code (``PATCH_VERSION=2`` in the worker) adds a step, behind
    ``ctx.patched``; version 1 has only the nap."""
    new = False
    if os.environ.get("PATCH_VERSION") == "2":
        new = ctx.patched("extra-step")
        if new:
            ctx.step.run("extra", lambda: "extra")
    ctx.step.sleep("nap", ctx.event.data.get("nap", "2s"))
    return {"patched": new}


@df.function(id="async-signal-waiter", retries=0)
async def async_signal_waiter(ctx: df.AsyncContext) -> dict:
    """The same in an ``async def`` function: both are awaited."""
    new = await ctx.patched("async-change")
    got = await ctx.step.wait_for_signal("take", "go", "1h")
    return {"patched": new, "got": got}


def _fails_until(run_id: str, key: str, failures: int) -> str:
    from .flows import record

    seen = record(key, run_id)
    if seen <= failures:
        raise ValueError(f"{key}: failure {seen}")
    return f"{key} ok after {seen}"


@df.function(id="step-retries", trigger=df.TriggerEvent(event="test/step-retries"), retries=0)
def step_retries(ctx: df.Context) -> list:
    """The function retries nothing; its first step has retries of its own, its second
    none (``retries=0``) although it is asked to fail once."""
    data = ctx.event.data
    kept = ctx.step.run(
        "kept", _fails_until, ctx.run_id, "kept", data["failures"], atomic=False, retries=2
    )
    return [kept]


@df.function(id="step-no-retries", trigger=df.TriggerEvent(event="test/step-no-retries"))
def step_no_retries(ctx: df.Context) -> str:
    """The function retries 4 times, this step not at all."""
    return ctx.step.run("once", _fails_until, ctx.run_id, "once", 1, atomic=False, retries=0)


@df.function(id="async-step-retries", trigger=df.TriggerEvent(event="test/async-step-retries"))
async def async_step_retries(ctx: df.AsyncContext) -> str:
    return await ctx.step.run(
        "kept", _fails_until, ctx.run_id, "async-kept", 2, atomic=False, retries=3
    )


@df.function(id="bad-step-retries", trigger=df.TriggerEvent(event="test/bad-step-retries"))
def bad_step_retries(ctx: df.Context) -> str:
    return ctx.step.run("bad", str, 1, retries=ctx.event.data["retries"])
