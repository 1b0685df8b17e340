"""The orchestration guide's examples do what the page says, with a real worker."""

from __future__ import annotations

import pytest

import durable_flows as df
from durable_flows.models import Run, Step
from tests.conftest import wait_until
from tests.docs_examples import orchestration as examples

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_approval_example_waits_for_its_signal(start_worker):
    (event_id,) = df.send(df.Event(name="expense/submitted", data={"expense_id": 9}))
    start_worker()
    run = wait_until(lambda: Run.objects.filter(event_id=event_id, status="waiting").first(), 60)
    examples.approve(run.pk, approved=True, by="ada")
    assert df.handle(run.pk).result(timeout=60) == "approved"
    assert Step.objects.get(run_id=run.pk, name="notify").output == "expense 9: approved"


def test_the_patched_example_takes_the_new_path_for_a_new_run(start_worker):
    (event_id,) = df.send(df.Event(name="shop/order.paid", data={"order_id": 3}))
    start_worker()
    run = wait_until(lambda: Run.objects.filter(event_id=event_id).first(), 30)
    assert df.handle(run.pk).result(timeout=60) == ["sms for 3", "email for 3"]
