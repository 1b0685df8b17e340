"""``async def`` functions under a timeout and a concurrency limit, for
tests/test_async_rules.py: the rules apply as to synchronous functions."""

from __future__ import annotations

import asyncio
import time

import durable_flows as df

from .models import Span


async def _span(key: str, run_id: str, seconds: float) -> float:
    """Await for ``seconds`` and return when it started (the Span row is written by the
    synchronous step that follows, on the worker thread)."""
    started = time.time()
    await asyncio.sleep(seconds)
    return started


def _record(key: str, run_id: str, started: float) -> None:
    Span.objects.create(key=key, run_id=run_id, label="", started=started, ended=time.time())


@df.function(
    id="async-finish-timeout",
    trigger=df.TriggerEvent(event="test/async-timeout"),
    timeouts=df.Timeouts(finish="1s"),
    retries=0,
)
async def async_finish_timeout(ctx: df.AsyncContext) -> str:
    await ctx.step.sleep("long", "1h")
    return "woke"


@df.function(
    id="async-one-at-a-time",
    trigger=df.TriggerEvent(event="test/async-limited"),
    concurrency=df.Concurrency(limit=1),
)
async def async_one_at_a_time(ctx: df.AsyncContext) -> None:
    started = await ctx.step.run("wait", _span, "async-limited", ctx.run_id, 0.3, atomic=False)
    await ctx.step.run("record", _record, "async-limited", ctx.run_id, started)
