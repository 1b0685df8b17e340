"""Functions that wait for signals, for tests/test_signals.py."""

from __future__ import annotations

import durable_flows as df


@df.function(id="signal-waiter", retries=0)
def signal_waiter(ctx: df.Context) -> list:
    """Takes ``count`` signals named ``name`` (waiting ``timeout`` for each)."""
    data = ctx.event.data
    got = []
    for _ in range(data.get("count", 1)):
        got.append(
            ctx.step.wait_for_signal("take", data.get("name", "go"), data.get("timeout", "1h"))
        )
    return got
