"""Functions the benchmarks run."""

from __future__ import annotations

import asyncio
import time

import durable_flows as df


def _now() -> float:
    return time.time()


@df.function(id="bench-one-step", trigger=df.TriggerEvent(event="bench/one-step"))
def one_step(ctx: df.Context) -> float:
    # The step returns the wall-clock time it started: latency = this - send time.
    return ctx.step.run("only", _now)


@df.function(id="bench-steps", trigger=df.TriggerEvent(event="bench/steps"))
def steps(ctx: df.Context) -> int:
    total = 0
    for i in range(ctx.event.data["steps"]):
        total += ctx.step.run("step", lambda i=i: i)
    return total


async def _io() -> float:
    await asyncio.sleep(0.2)  # a call to another system, waiting on the network
    return time.time()


@df.function(id="bench-async-io", trigger=df.TriggerEvent(event="bench/async-io"))
async def async_io(ctx: df.AsyncContext) -> float:
    return await ctx.step.run("io", _io, atomic=False)
