"""Invocation trees for tests/test_cancel_cascade.py: cancelling a run cancels the runs it
invoked that have not finished, recursively."""

from __future__ import annotations

import time

import durable_flows as df


@df.function(id="cascade-root", trigger=df.TriggerEvent(event="test/cascade"), retries=0)
def cascade_root(ctx: df.Context) -> object:
    return ctx.step.invoke("middle", function="cascade-middle", data=ctx.event.data)


@df.function(id="cascade-middle", retries=0)
def cascade_middle(ctx: df.Context) -> object:
    return ctx.step.invoke("leaf", function="cascade-leaf", data=ctx.event.data)


@df.function(id="cascade-leaf", retries=0)
def cascade_leaf(ctx: df.Context) -> str:
    if ctx.event.data.get("busy"):
        ctx.step.run("busy", time.sleep, ctx.event.data["busy"], atomic=False)
    ctx.step.sleep("nap", "1h")
    return "woke"
