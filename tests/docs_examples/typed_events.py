"""The examples of the typed events page (docs/typed-events.md includes them from here);
tests/test_typed_events.py imports and runs them."""

from __future__ import annotations

# --8<-- [start:schemas]
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.utils import timezone
from pydantic import BaseModel

import durable_flows as df


@df.event_schema("billing/invoice.paid")
@dataclass
class InvoicePaid:
    invoice_id: int
    amount: Decimal
    paid_at: datetime
    note: str | None = None


@df.event_schema("billing/refund.requested")
class RefundRequested(BaseModel):
    invoice_id: int
    reason: str


# --8<-- [end:schemas]


# --8<-- [start:function]
def make_receipt(invoice_id: int, amount: Decimal) -> dict:
    return {"number": f"R-{invoice_id}", "amount": amount}


@df.function(id="thank-payer", trigger=df.TriggerEvent(event=InvoicePaid))
def thank_payer(ctx: df.Context) -> dict:
    paid = ctx.event.data  # an InvoicePaid, made from the stored data on every run
    receipt = ctx.step.run("receipt", make_receipt, paid.invoice_id, paid.amount)
    # The step returned a Decimal; it is stored, and seen here, as the string "120.50".
    return {"month": paid.paid_at.month, "receipt": receipt}


# --8<-- [end:function]


# --8<-- [start:send]
def pay(invoice_id: int, amount: Decimal) -> list[str]:
    return df.send(InvoicePaid(invoice_id=invoice_id, amount=amount, paid_at=timezone.now()))


def request_refund(invoice_id: int) -> list[str]:
    return df.send(RefundRequested(invoice_id=invoice_id, reason="damaged"))


# --8<-- [end:send]


# --8<-- [start:refuse]
def send_bad_data() -> dict[str, list[str]]:
    try:
        df.send(df.Event(name="billing/invoice.paid", data={"invoice_id": "12", "amount": 5}))
    except df.EventValidationError as exc:
        return exc.fields  # nothing was stored
    raise AssertionError("refused")


# --8<-- [end:refuse]
