"""``async def`` durable functions used by tests/test_async.py (imported by tests/flows.py)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import durable_flows as df

from .flows import record


async def _double(value: int) -> int:
    await asyncio.sleep(0.01)
    return value * 2


def _counted(key: str, run_id: str) -> int:
    """A synchronous, atomic step: the ORM on the worker thread, in the checkpoint's
    transaction."""
    return record(key, run_id)


@df.function(id="async-child", trigger=df.TriggerEvent(event="test/async.child"))
async def async_child(ctx: df.AsyncContext) -> int:
    return await ctx.step.run("double", _double, ctx.event.data["x"], atomic=False)


@df.function(id="async-every-step", trigger=df.TriggerEvent(event="test/async.every"))
async def async_every_step(ctx: df.AsyncContext) -> dict:
    run_id = ctx.run_id
    atomic = await ctx.step.run("atomic", _counted, "async-atomic", run_id)
    awaited = await ctx.step.run("awaited", _double, 21, atomic=False)
    # A synchronous fn may return a coroutine when the step is not atomic: it is awaited.
    wrapped = await ctx.step.run("wrapped", lambda: _double(5), atomic=False)
    await ctx.step.sleep("nap", timedelta(seconds=ctx.event.data["nap"]))
    await ctx.step.sleep_until("past", datetime(2000, 1, 1, tzinfo=UTC))
    sent = await ctx.step.send_event("send", df.Event(name="test/async.sent", data={}))
    child = await ctx.step.invoke("child", function=async_child, data={"x": 4})
    pair = await ctx.group.parallel(
        (
            lambda: ctx.step.run("left", _double, 1, atomic=False),
            lambda: ctx.step.run("right", _counted, "async-right", run_id),
        )
    )
    reply = await ctx.step.wait_for_event(
        "reply", event="test/async.reply", timeout="1h", match="data.key"
    )
    after = await ctx.step.run("after", _counted, "async-after", run_id)
    return {
        "atomic": atomic,
        "awaited": awaited,
        "wrapped": wrapped,
        "sent": len(sent),
        "child": child,
        "pair": list(pair),
        "reply": reply.data["value"] if reply else None,
        "after": after,
    }


@df.function(id="async-atomic-async-fn", trigger=df.TriggerEvent(event="test/async.atomic"))
async def async_atomic_async_fn(ctx: df.AsyncContext) -> int:
    return await ctx.step.run("refused", _double, 1)  # an async fn cannot be atomic


@df.function(id="async-atomic-coroutine", trigger=df.TriggerEvent(event="test/async.atomic-coro"))
async def async_atomic_coroutine(ctx: df.AsyncContext) -> int:
    # A synchronous fn returning a coroutine in an atomic step: never stored.
    return await ctx.step.run("refused", lambda: _double(1))


@df.function(id="sync-calls-async-fn", trigger=df.TriggerEvent(event="test/sync.async-fn"))
def sync_calls_async_fn(ctx: df.Context) -> int:
    return ctx.step.run("refused", _double, 1, atomic=False)  # a coroutine, not a result


@df.function(id="async-not-awaited", trigger=df.TriggerEvent(event="test/async.unawaited"))
async def async_not_awaited(ctx: df.AsyncContext) -> str:
    ctx.step.run("forgotten", _counted, "async-forgotten", ctx.run_id)
    if ctx.event.data["then_step"]:
        await ctx.step.run("next", _counted, "async-next", ctx.run_id)
    return "done"


@df.function(id="async-gathered", trigger=df.TriggerEvent(event="test/async.gathered"))
async def async_gathered(ctx: df.AsyncContext) -> list:
    return await asyncio.gather(
        ctx.step.run("a", _double, 1, atomic=False), ctx.step.run("b", _double, 2, atomic=False)
    )


async def _flaky_async(marker: str, failures: int) -> str:
    path = Path(marker)
    seen = len(path.read_text().splitlines()) + 1 if path.exists() else 1
    path.write_text("x\n" * seen)
    await asyncio.sleep(0)
    if seen <= failures:
        raise ValueError(f"flaky failure {seen}")
    return f"ok after {seen}"


@df.function(id="async-flaky", trigger=df.TriggerEvent(event="test/async.flaky"), retries=2)
async def async_flaky(ctx: df.AsyncContext) -> list:
    data = ctx.event.data
    before = await ctx.step.run("before", _counted, "async-flaky-before", ctx.run_id)
    args = (data["marker"], data["failures"])
    flaky = await ctx.step.run("flaky", _flaky_async, *args, atomic=False)
    return [before, flaky]


@df.function(id="async-sleeper", trigger=df.TriggerEvent(event="test/async.sleeper"))
async def async_sleeper(ctx: df.AsyncContext) -> str:
    await ctx.step.run("before", _counted, "async-sleeper-before", ctx.run_id)
    await ctx.step.sleep("nap", "1h")
    await ctx.step.run("after", _counted, "async-sleeper-after", ctx.run_id)
    return "woke"


async def _wait_on_io(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "answered"


@df.function(id="async-io", trigger=df.TriggerEvent(event="test/async.io"))
async def async_io(ctx: df.AsyncContext) -> str:
    return await ctx.step.run("io", _wait_on_io, ctx.event.data["seconds"], atomic=False)
