"""The examples of docs/async.md (included there by pymdownx.snippets), run by
tests/test_async.py."""

from __future__ import annotations

# --8<-- [start:example]
import asyncio

import durable_flows as df

from .models import Ledger  # a model of yours


async def fetch_rate(currency: str) -> float:
    await asyncio.sleep(0.05)  # an HTTP call with an async client, say
    return {"EUR": 1.1, "GBP": 1.3}[currency]


def book(order_id: str, amount: float) -> str:
    Ledger.objects.create(key=f"{order_id}: {amount:.2f}")  # the ORM: a synchronous step
    return order_id


@df.function(id="convert-order", trigger=df.TriggerEvent(event="docs/order.placed"))
async def convert_order(ctx: df.AsyncContext) -> dict:
    data = ctx.event.data
    # An async step function is awaited on the event loop: atomic=False.
    rate = await ctx.step.run("rate", fetch_rate, data["currency"], atomic=False)
    # A synchronous one runs on the worker thread, in the checkpoint's transaction.
    booked = await ctx.step.run("book", book, data["order_id"], data["amount"] * rate)
    await ctx.step.sleep("cool-off", "1s")
    return {"booked": booked, "rate": rate}


# --8<-- [end:example]


# --8<-- [start:parallel]
@df.function(id="compare-rates", trigger=df.TriggerEvent(event="docs/rates.compare"))
async def compare_rates(ctx: df.AsyncContext) -> list[float]:
    # Each callable makes its step; the group awaits them (not the lambdas).
    eur, gbp = await ctx.group.parallel(
        (
            lambda: ctx.step.run("eur", fetch_rate, "EUR", atomic=False),
            lambda: ctx.step.run("gbp", fetch_rate, "GBP", atomic=False),
        )
    )
    return [eur, gbp]


# --8<-- [end:parallel]
