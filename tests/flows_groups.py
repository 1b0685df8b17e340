"""Parallel groups of every step kind, for tests/test_parallel_kinds.py."""

from __future__ import annotations

import time

import durable_flows as df

from .flows import record


def _double(run_id: str, n: int) -> int:
    record("group-run", run_id)
    return n * 2


@df.function(id="group-child", retries=0)
def group_child(ctx: df.Context) -> int:
    return ctx.event.data["n"] + 100


@df.function(id="mixed-group", trigger=df.TriggerEvent(event="test/mixed-group"), retries=0)
def mixed_group(ctx: df.Context) -> list:
    """A run, a sleep, a wait, an invoke, a signal and a send in one group."""
    run_id = ctx.run_id
    results = ctx.group.parallel(
        (
            lambda: ctx.step.run("double", _double, run_id, 21),
            lambda: ctx.step.sleep("nap", "1s"),
            lambda: ctx.step.wait_for_event(
                "reply", event="test/group.reply", timeout="1m", match="data.key"
            ),
            lambda: ctx.step.invoke("child", function=group_child, data={"n": 1}),
            lambda: ctx.step.wait_for_signal("nudge", "nudge", "1m"),
            lambda: ctx.step.send_event("tell", df.Event(name="test/group.told", data={})),
        )
    )
    double, nap, reply, child, nudge, told = results
    return [double, nap, reply.data["key"] if reply else None, child, nudge, len(told)]


@df.function(id="failing-group", trigger=df.TriggerEvent(event="test/failing-group"), retries=0)
def failing_group(ctx: df.Context) -> object:
    try:
        ctx.group.parallel(
            (
                lambda: ctx.step.sleep("nap", "1s"),
                lambda: ctx.step.invoke("bad", function="non-retriable", data={}),
                lambda: ctx.step.run("fine", lambda: "fine"),
            )
        )
    except df.StepError as exc:
        return {"caught": exc.error.get("type")}
    return "no error"


@df.function(id="fan-out-invokes", trigger=df.TriggerEvent(event="test/fan-out-invokes"), retries=0)
def fan_out_invokes(ctx: df.Context) -> int:
    count = ctx.event.data["count"]
    results = ctx.group.parallel(
        [
            (lambda i=i: ctx.step.invoke(f"child-{i}", function=group_child, data={"n": i}))
            for i in range(count)
        ]
    )
    return sum(results)


@df.function(id="async-mixed-group", trigger=df.TriggerEvent(event="test/async-group"))
async def async_mixed_group(ctx: df.AsyncContext) -> list:
    return list(
        await ctx.group.parallel(
            (
                lambda: ctx.step.run("double", _double, ctx.run_id, 2),
                lambda: ctx.step.sleep("nap", "1s"),
                lambda: ctx.step.invoke("child", function=group_child, data={"n": 2}),
            )
        )
    )


def _slowly(seconds: float) -> None:
    time.sleep(seconds)  # code outside steps: the group is still planning meanwhile


@df.function(id="invoke-races-park", trigger=df.TriggerEvent(event="test/invoke-races-park"))
def invoke_races_park(ctx: df.Context) -> list:
    """The child is started (and may finish) while the group goes on planning its next
    member, before the run is parked: the run must still be woken for it."""
    return list(
        ctx.group.parallel(
            (
                lambda: ctx.step.invoke("child", function=group_child, data={"n": 5}),
                lambda: (_slowly(1.0), ctx.step.wait_for_signal("go", "go", "1h"))[1],
            )
        )
    )
