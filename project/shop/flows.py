"""Example workflows: order fulfilment with atomic steps writing to this app's tables."""

from __future__ import annotations

import hashlib

from django.db.models import F

import durable_flows as df

from .models import Order, Shipment, Stock


def reserve_stock(order_id: int) -> dict:
    order = Order.objects.get(pk=order_id)
    updated = Stock.objects.filter(item=order.item, available__gte=order.quantity).update(
        available=F("available") - order.quantity
    )
    if not updated:
        raise df.NonRetriableError(f"not enough {order.item!r} in stock")
    Order.objects.filter(pk=order_id).update(status=Order.Status.RESERVED)
    return {"item": order.item, "quantity": order.quantity}


def charge_card(order_id: int) -> dict:
    # A real payment call is not a database write, so this step is not atomic
    # (atomic=False): it may run again if the worker dies mid-call, which is why
    # payment APIs take an idempotency key.
    order = Order.objects.get(pk=order_id)
    charge_id = "ch_" + hashlib.sha256(f"order-{order_id}".encode()).hexdigest()[:16]
    return {"charge_id": charge_id, "amount_cents": order.total_cents}


def mark_paid(order_id: int) -> None:
    Order.objects.filter(pk=order_id).update(status=Order.Status.PAID)


def create_shipment(order_id: int) -> str:
    tracking = f"TRK{order_id:08d}"
    Shipment.objects.create(order_id=order_id, tracking_number=tracking)
    Order.objects.filter(pk=order_id).update(status=Order.Status.SHIPPED)
    return tracking


@df.function(id="fulfil-order", trigger=df.TriggerEvent(event="shop/order.placed"), retries=3)
def fulfil_order(ctx: df.Context) -> dict:
    order_id = ctx.event.data["order_id"]
    reserved = ctx.step.run("reserve-stock", reserve_stock, order_id)
    charge = ctx.step.run("charge-card", charge_card, order_id, atomic=False)
    ctx.step.run("mark-paid", mark_paid, order_id)
    tracking = ctx.step.run("create-shipment", create_shipment, order_id)
    ctx.logger.info("order %s shipped as %s", order_id, tracking)
    return {
        "order_id": order_id,
        "charge": charge["charge_id"],
        "tracking": tracking,
        "reserved": reserved,
    }


@df.function(
    id="big-order-alert",
    trigger=df.TriggerEvent(
        event="shop/order.placed", expression="event.data.total_cents >= 100000"
    ),
)
def big_order_alert(ctx: df.Context) -> str:
    return ctx.step.run(
        "notify-sales", lambda: f"big order {ctx.event.data['order_id']}", atomic=False
    )


@df.function(
    id="alert-ops-on-failure",
    trigger=df.TriggerEvent(
        event="durable_flows/function.failed",
        expression="event.data.function_id == 'fulfil-order'",
    ),
)
def alert_ops_on_failure(ctx: df.Context) -> str:
    """Lifecycle events are ordinary events: any function can react to another's failure."""
    error = ctx.event.data["error"]
    return ctx.step.run(
        "page-ops",
        lambda: f"run {ctx.event.data['run_id']} failed: {error['message']}",
        atomic=False,
    )


# --- onboarding: durable sleep, wait_for_event, cancellation -----------------------
#
# A signup gets a welcome message, then (after a delay) a tips message, then the
# flow waits for the user's first login: a login within the window ends it, no
# login sends a nudge. "shop/user.deleted" for the same user cancels it at any
# point. The delays are a day and three days; an event may shorten them
# ("tips_after", "login_within": e.g. "2s") so that `make demo` shows the whole flow.


def send_message(user_id: int, kind: str) -> dict:
    # Stands in for an email API call (atomic=False: not a database write).
    return {"user_id": user_id, "message": kind}


@df.function(
    id="onboarding",
    trigger=df.TriggerEvent(event="shop/user.signup"),
    cancel=[df.Cancel(event="shop/user.deleted", match="data.user_id")],
    timeouts=df.Timeouts(finish="30d"),
)
def onboarding(ctx: df.Context) -> dict:
    data = ctx.event.data
    user_id = data["user_id"]
    ctx.step.run("send-welcome", send_message, user_id, "welcome", atomic=False)
    ctx.step.sleep("wait-before-tips", data.get("tips_after", "1d"))
    ctx.step.run("send-tips", send_message, user_id, "tips", atomic=False)
    login = ctx.step.wait_for_event(
        "wait-for-login",
        event="shop/user.login",
        match="data.user_id",
        timeout=data.get("login_within", "3d"),
    )
    if login is None:
        ctx.step.run("send-nudge", send_message, user_id, "nudge", atomic=False)
        ctx.logger.info("user %s did not log in: nudged", user_id)
    return {"user_id": user_id, "logged_in": login is not None}
