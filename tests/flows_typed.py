"""Typed events: a dataclass and a Pydantic model registered as event schemas, and the
functions that receive them as instances (tests/test_typed_events.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel

import durable_flows as df


@df.event_schema("typed/order.placed")
@dataclass
class OrderPlaced:
    order_id: int
    placed_at: datetime
    total: Decimal
    note: str | None = None
    tags: list[str] = field(default_factory=list)


@df.event_schema("typed/user.signed-up")
class SignedUp(BaseModel):
    user_id: int
    email: str
    at: datetime


@df.function(id="typed-order", trigger=df.TriggerEvent(event=OrderPlaced), retries=0)
def typed_order(ctx: df.Context) -> dict:
    """What it got: the class of its data and values that only instances have."""
    order = ctx.event.data
    return {
        "type": type(order).__name__,
        "order_id": order.order_id,
        "year": order.placed_at.year,
        "double": order.total * 2,
        "tags": order.tags,
    }


@df.function(
    id="typed-signups",
    trigger=df.TriggerEvent(event=SignedUp),
    batch_events=df.Batch(max_size=2, timeout="1h"),
    retries=0,
)
def typed_signups(ctx: df.Context) -> dict:
    """A batch: each of ``ctx.events`` has a ``SignedUp`` as its data."""
    return {
        "event": type(ctx.event.data).__name__,
        "events": [type(e.data).__name__ for e in ctx.events],
        "users": [e.data.user_id for e in ctx.events],
        "hours": [e.data.at.hour for e in ctx.events],
    }


@df.function(id="typed-send-bad", trigger=df.TriggerEvent(event="typed/send-bad"), retries=2)
def typed_send_bad(ctx: df.Context) -> list:
    """``ctx.step.send_event`` with data that does not fit ``OrderPlaced``."""
    return ctx.step.send_event(
        "send", [{"name": "typed/order.placed", "data": {"order_id": "seven"}}]
    )
