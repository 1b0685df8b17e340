"""``on_failure=handler(ctx, error)``: a companion function run once per finally-failed run.

As in Inngest, the companion (``<id>-failure``) is an ordinary durable function
triggered by ``durable_flows/function.failed`` for that function's id, so it is
stored, retried and checkpointed like any other; other functions may trigger
on the same event. The handler sees the failed run's own triggering event as
``ctx.event``, and the failed run's ``error`` dict.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def failure_handler(handler: Callable[..., Any]) -> Callable[[Any], Any]:
    def on_failure(ctx: Any) -> Any:
        failed = ctx.event
        data = failed.data
        ctx.failed_event = failed
        ctx.failed_run_id = data.get("run_id")
        # The engine's Context loads stored events; this layer never touches models.
        ctx.event = ctx._stored_event(data["event_id"]) if data.get("event_id") else None
        ctx.events = [ctx.event] if ctx.event is not None else []
        return handler(ctx, data.get("error") or {})

    # Stable identity for the registry's duplicate-id check across re-imports.
    on_failure.__module__ = getattr(handler, "__module__", __name__)
    on_failure.__qualname__ = f"{getattr(handler, '__qualname__', 'handler')}.on_failure"
    return on_failure
