"""Correct uses of the steps' types: ``make lint`` runs mypy on this file, and so does
tests/test_typing.py. mypy infers each step's result from its function."""

from __future__ import annotations

from typing import assert_type

import durable_flows as df
from durable_flows.definitions.functions import Function


def add(a: int, b: int) -> int:
    return a + b


async def fetch(url: str) -> bytes:
    return url.encode()


@df.function(id="typing-child", trigger=df.TriggerEvent(event="typing/child"))
def child(ctx: df.Context) -> list[str]:
    return ["a"]


@df.function(id="typing-async-child", trigger=df.TriggerEvent(event="typing/async-child"))
async def async_child(ctx: df.AsyncContext) -> float:
    return 1.0


@df.function(id="typing-sync", trigger=df.TriggerEvent(event="typing/sync"))
def sync_function(ctx: df.Context) -> int:
    total = ctx.step.run("add", add, 1, 2)
    assert_type(total, int)
    assert_type(ctx.step.run("later", lambda: "x", atomic=False), str)
    assert_type(ctx.step.invoke("child", function=child), list[str])
    assert_type(ctx.step.invoke("async-child", function=async_child), float)
    return total


@df.function(id="typing-async", trigger=df.TriggerEvent(event="typing/async"))
async def async_function(ctx: df.AsyncContext) -> bytes:
    total = await ctx.step.run("add", add, 1, 2)
    assert_type(total, int)
    body = await ctx.step.run("fetch", fetch, "https://example.com", atomic=False)
    assert_type(body, bytes)
    assert_type(await ctx.step.invoke("child", function=child), list[str])
    assert_type(await ctx.step.invoke("async-child", function=async_child), float)
    await ctx.step.sleep("nap", "1s")
    return body


assert_type(sync_function, Function[int])
assert_type(async_function, Function[bytes])
