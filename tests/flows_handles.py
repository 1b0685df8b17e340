"""Functions started with ``df.start`` (no trigger) for tests/test_handles.py."""

from __future__ import annotations

import time

import durable_flows as df

from .models import Ledger


@df.function(id="started-only", retries=0)
def started_only(ctx: df.Context) -> dict:
    """Echoes how it was started; fails, or waits, when asked to."""
    data = ctx.event.data
    if data.get("fail"):
        ctx.step.run("boom", _boom, data["fail"])
    if data.get("sleep"):
        ctx.step.sleep("nap", data["sleep"])
    if data.get("ledger"):
        ctx.step.run("write", lambda: Ledger.objects.create(key=data["ledger"]).pk)
    if data.get("slow"):
        ctx.step.run("slow", time.sleep, data["slow"], atomic=False)
    return {"event": ctx.event.name, "data": data, "run_id": ctx.run_id}


def _boom(message: str) -> None:
    raise df.NonRetriableError(message)
