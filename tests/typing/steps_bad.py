# ruff: noqa: F841 - the assignments are what mypy checks
"""Wrong uses of the steps' types: tests/test_typing.py checks that mypy reports each
line marked ``# error:`` (and nothing else)."""

from __future__ import annotations

import durable_flows as df


def add(a: int, b: int) -> int:
    return a + b


async def fetch(url: str) -> bytes:
    return url.encode()


@df.function(id="typing-child", trigger=df.TriggerEvent(event="typing/child"))
def child(ctx: df.Context) -> list[str]:
    return ["a"]


def sync_function(ctx: df.Context) -> None:
    ctx.step.run("add", add, 1, "2")  # error: arg-type
    ctx.step.run("add", add, 1)  # error: arg-type
    text: str = ctx.step.run("add", add, 1, 2)  # error: assignment
    number: int = ctx.step.invoke("child", function=child)  # error: assignment


async def async_function(ctx: df.AsyncContext) -> None:
    await ctx.step.run("fetch", fetch, 1, atomic=False)  # error: arg-type
    text: str = await ctx.step.run("fetch", fetch, "u", atomic=False)  # error: arg-type
    count: int = await ctx.step.run("add", add, 1, 2)
    data: bytes = ctx.step.run("fetch", fetch, "u", atomic=False)  # error: assignment
