"""The examples of docs/orchestration.md, executed by tests/test_docs_orchestration.py."""

from __future__ import annotations

import durable_flows as df


def notify_employee(expense_id: int, outcome: str) -> str:
    return f"expense {expense_id}: {outcome}"


# --8<-- [start:approval]
@df.function(id="expense-approval", trigger=df.TriggerEvent(event="expense/submitted"))
def expense_approval(ctx: df.Context) -> str:
    decision = ctx.step.wait_for_signal("decision", "approval", "7d")
    if decision is None:
        outcome = "expired"
    else:
        outcome = "approved" if decision["approved"] else "rejected"
    ctx.step.run("notify", notify_employee, ctx.event.data["expense_id"], outcome)
    return outcome


def approve(run_id: str, approved: bool, by: str) -> str:
    """What a view does when a manager decides."""
    return df.signal(run_id, "approval", {"approved": approved, "by": by})


# --8<-- [end:approval]


def send_sms(order_id: int) -> str:
    return f"sms for {order_id}"


def send_email(order_id: int) -> str:
    return f"email for {order_id}"


# --8<-- [start:patched]
@df.function(id="receipts", trigger=df.TriggerEvent(event="shop/order.paid"))
def receipts(ctx: df.Context) -> list[str]:
    order_id = ctx.event.data["order_id"]
    sent = []
    if ctx.patched("sms-receipt"):
        sent.append(ctx.step.run("sms", send_sms, order_id))  # the new code
    sent.append(ctx.step.run("email", send_email, order_id))  # what old runs did
    return sent


# --8<-- [end:patched]
