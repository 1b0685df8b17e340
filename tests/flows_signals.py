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
