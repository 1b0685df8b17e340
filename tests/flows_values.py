"""Functions that make mistakes with values: a step or function result that is not JSON,
and ``ctx.step.run`` called with keywords it does not take."""

from __future__ import annotations

from datetime import UTC, time

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
