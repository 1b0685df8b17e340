"""A function timeout and a concurrency limit apply to ``async def`` functions as to
synchronous ones, with real ``runflows`` workers on both databases (one worker thread
runs several async runs at once: the limit must still hold)."""

from __future__ import annotations

import pytest

import durable_flows as df
from durable_flows.models import Run
from tests.conftest import wait_until
from tests.models import Span
from tests.test_flow_control_workers import max_overlap

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_finish_timeout_cancels_a_sleeping_async_run(start_worker):
    (event_id,) = df.send(df.Event(name="test/async-timeout"))
    start_worker()
    run = wait_until(lambda: Run.objects.filter(event_id=event_id).first(), 30)
    with pytest.raises(df.RunCancelledError):
        df.handle(run.pk).result(timeout=60)
    run.refresh_from_db()
    assert run.error["type"] == "FunctionTimeout"
    assert run.steps.get(name="long").status == "cancelled"


def test_a_concurrency_limit_holds_for_async_runs_sharing_a_loop(start_worker):
    df.send([df.Event(name="test/async-limited") for _ in range(5)])
    start_worker("--concurrency", "2")
    wait_until(lambda: Span.objects.filter(key="async-limited").count() == 5, 90)
    spans = list(Span.objects.filter(key="async-limited").values_list("started", "ended"))
    assert max_overlap(spans) == 1
    assert set(Run.objects.values_list("status", flat=True)) == {"completed"}
