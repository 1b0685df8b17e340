"""Functions that make mistakes with values: a step or function result that is not JSON,
and ``ctx.step.run`` called with keywords it does not take; and a step returning dates,
decimals and UUIDs."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from decimal import Decimal
from uuid import UUID

import durable_flows as df

from .flows import record


def _charge(shape: str) -> object:
    if shape == "nested":
        return {"items": [1, {"at": time(12, 30, tzinfo=UTC)}]}
    return {"tags": {"paid"}}


@df.function(id="charge-order", trigger=df.TriggerEvent(event="test/not-json"), retries=2)
def charge_order(ctx: df.Context) -> object:
    """``shape``: what is not JSON — the step's result ("set", "nested") or the
    function's own ("function")."""
    record("charge-order-body", ctx.run_id)
    shape = ctx.event.data["shape"]
    if shape == "function":
        return {"done": [ctx.step.run("ok", lambda: 1), object()]}
    return ctx.step.run("charge", _charge, shape)


def _add(a: int, b: int) -> int:
    return a + b


@df.function(id="step-typos", trigger=df.TriggerEvent(event="test/step-typo"), retries=2)
def step_typos(ctx: df.Context) -> object:
    """Calls ``ctx.step.run`` with a keyword it does not take; ``catch``: catches the
    ``TypeError`` and returns its message."""
    record("step-typos-body", ctx.run_id)
    if ctx.event.data.get("catch"):
        try:
            ctx.step.run("add", _add, 1, b=2)
        except TypeError as exc:
            return str(exc)
    return ctx.step.run("add", _add, 1, 2, atomc=False)


@df.function(id="invoke-not-json", trigger=df.TriggerEvent(event="test/invoke-not-json"))
def invoke_not_json(ctx: df.Context) -> object:
    return ctx.step.invoke("call", function="child", data={"at": [frozenset()]})


# Dates, times, decimals and UUIDs: encoded as DjangoJSONEncoder does (tests/test_values.py).
VALUES = {
    "when": datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
    "day": date(2030, 1, 2),
    "at": time(12, 30, 15, 250000),
    "price": Decimal("9.99"),
    "id": UUID("12345678-1234-5678-1234-567812345678"),
}


def _values() -> dict:
    return dict(VALUES)


@df.function(id="step-values", trigger=df.TriggerEvent(event="test/step-values"), retries=1)
def step_values(ctx: df.Context) -> dict:
    """A step returns dates, a decimal and a UUID; the body records what it saw (the repr of
    its items, types included; sorted, as PostgreSQL's jsonb orders keys its own way) on its
    first execution and on its replay after a failure outside steps."""
    got = ctx.step.run("values", _values)
    record(f"step-values:{sorted(got.items())!r}", ctx.run_id)
    if ctx.attempt == 0:
        raise RuntimeError("fail once, to be replayed")
    return {"step": got, "returned": VALUES}


@df.function(id="invoke-values", trigger=df.TriggerEvent(event="test/invoke-values"))
def invoke_values(ctx: df.Context) -> object:
    """Invokes ``echo`` with dates, a decimal and a UUID as its data: echo returns them."""
    return ctx.step.invoke("call", function="echo", data={"payload": VALUES})
