"""The async variant of tests/model_flows.py: the same programs, interpreted by
``async def`` functions whose every step is awaited (``model-async-r<retries>``).

The steps' functions, the counters and the effects are model_flows' own, so the
harness observes an async run exactly as it observes a sync one; the oracle is the
same.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import durable_flows as df

from .model_flows import (
    GO_EVENT,
    GO_SIGNAL,
    RETRIES,
    SENT_EVENT,
    _append,
    _atomic,
    _crash,
    _flaky,
    _nonretriable,
    _retry_after,
    _slow,
)


async def interpret(ctx: df.AsyncContext) -> list:
    data = ctx.event.data
    return [await execute(ctx, data, op) for op in data["ops"]]


async def execute(ctx: df.AsyncContext, data: dict, op: dict) -> Any:
    if op.get("catch"):
        try:
            return await _execute(ctx, data, op)
        except df.StepError as exc:
            return {"caught": exc.error.get("type")}
    return await _execute(ctx, data, op)


async def _branch(ctx: df.AsyncContext, data: dict, ops: list) -> list:
    return [await execute(ctx, data, op) for op in ops]


async def _execute(ctx: df.AsyncContext, data: dict, op: dict) -> Any:
    kind, step, run_id = op["op"], op["name"], ctx.run_id
    directory, mode = data["dir"], data["mode"]
    atomic = bool(op.get("atomic", True))
    if kind == "atomic":
        return await ctx.step.run(step, _atomic, run_id, step)
    if kind == "append":
        return await ctx.step.run(step, _append, directory, run_id, step, atomic=False)
    if kind == "flaky":
        return await ctx.step.run(step, _flaky, directory, run_id, step, op, mode, atomic=atomic)
    if kind == "nonretriable":
        return await ctx.step.run(step, _nonretriable, run_id, step, atomic, atomic=atomic)
    if kind == "retry_after":
        args = (directory, run_id, step, op["failures"], op["after"])
        return await ctx.step.run(step, _retry_after, *args, atomic=False)
    if kind == "slow":
        args2 = (run_id, step, op["seconds"], atomic, mode)
        return await ctx.step.run(step, _slow, *args2, atomic=atomic)
    if kind == "crash":
        return await ctx.step.run(step, _crash, directory, run_id, step, op, mode, atomic=atomic)
    if kind == "sleep":
        await ctx.step.sleep(step, timedelta(seconds=op["seconds"]))
        return None
    if kind == "wait":
        timeout = timedelta(seconds=op["timeout"])
        event = await ctx.step.wait_for_event(
            step, event=GO_EVENT, match="data.key", timeout=timeout
        )
        return event.data.get("token") if event else None
    if kind == "signal":
        timeout = timedelta(seconds=op["timeout"])
        got = await ctx.step.wait_for_signal(step, GO_SIGNAL, timeout)
        return got.get("token") if got else None
    if kind == "patch":
        return await ctx.patched(step)
    if kind == "send":
        event = df.Event(name=SENT_EVENT, data={"key": data["key"], "from": step})
        return len(await ctx.step.send_event(step, event))
    if kind == "invoke":
        child = op["child"]
        payload = {**child, "mode": mode, "dir": directory, "key": f"{data['key']}/{step}"}
        function = f"model-async-child-r{child['retries']}"
        return await ctx.step.invoke(step, function=function, data=payload)
    if kind == "parallel":
        branches = [(lambda ops=ops: _branch(ctx, data, ops)) for ops in op["branches"]]
        return list(await ctx.group.parallel(branches))
    raise df.NonRetriableError(f"unknown op {kind!r}")


for _retries in RETRIES:
    df.function(
        id=f"model-async-r{_retries}",
        trigger=df.TriggerEvent(event=f"model/async-run.r{_retries}"),
        retries=_retries,
    )(interpret)
    df.function(id=f"model-async-child-r{_retries}", retries=_retries)(interpret)
