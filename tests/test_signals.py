"""Signals to one run: ``df.signal`` and ``ctx.step.wait_for_signal``, through real
``runflows`` workers on both databases: kept until the run reaches the wait, delivered
once each, in send order per name, and never lost to a run being resumed elsewhere."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

import durable_flows as df
from durable_flows.models import Run, Signal, Step
from tests.conftest import wait_until
from tests.flows_signals import signal_waiter

pytestmark = pytest.mark.django_db(transaction=True)


def waiting(handle: df.RunHandle) -> bool:
    return handle.status == "waiting"


def test_a_signal_sent_before_the_wait_is_kept_and_delivered(start_worker):
    handle = df.start(signal_waiter, {"name": "approve"})
    df.signal(handle.id, "approve", {"by": "ada"})  # the run is still queued
    start_worker()
    assert handle.result(timeout=60) == [{"by": "ada"}]
    signal = Signal.objects.get()
    assert signal.delivered_at is not None and signal.step == "take"
    step = Step.objects.get(run_id=handle.id, name="take")
    assert step.kind == "wait_for_signal" and step.output["data"] == {"by": "ada"}


def test_a_signal_wakes_a_waiting_run_and_the_wait_holds_no_worker(start_worker):
    handle = df.start(signal_waiter, {"name": "approve"})
    start_worker()
    wait_until(lambda: waiting(handle), 60)
    assert Run.objects.get(pk=handle.id).lease_owner is None
    df.signal(handle.id, "approve")
    assert handle.result(timeout=60) == [{}]  # no data: an empty dict


def test_a_wait_without_a_signal_returns_none_at_its_timeout(start_worker):
    handle = df.start(signal_waiter, {"timeout": "1s"})
    start_worker()
    assert handle.result(timeout=60) == [None]


def test_signals_of_one_name_arrive_once_each_in_send_order(start_worker):
    handle = df.start(signal_waiter, {"count": 3, "name": "n"})
    for i in range(3):
        df.signal(handle.id, "n", {"i": i})
    df.signal(handle.id, "other", {"i": 99})  # another name: not taken here
    start_worker()
    assert handle.result(timeout=60) == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert Signal.objects.filter(delivered_at__isnull=True).get().name == "other"
    assert sorted(Signal.objects.exclude(step="").values_list("step", flat=True)) == [
        "take",
        "take:1",
        "take:2",
    ]


def test_signals_sent_while_the_run_is_resumed_elsewhere_are_never_lost(start_worker):
    """Two workers resume the run after each signal while more are being sent."""
    count = 25
    handle = df.start(signal_waiter, {"count": count, "name": "tick", "timeout": "1m"})
    start_worker("--concurrency", "2")
    start_worker("--concurrency", "2")
    wait_until(lambda: waiting(handle), 60)

    def send() -> None:
        for i in range(count):
            df.signal(handle.id, "tick", {"i": i})
        connection.close()

    sender = threading.Thread(target=send)
    sender.start()
    sender.join(60)
    assert handle.result(timeout=120) == [{"i": i} for i in range(count)]
    assert not Signal.objects.filter(delivered_at__isnull=True).exists()


def test_signalling_a_finished_or_unknown_run_raises_run_not_found(start_worker):
    handle = df.start(signal_waiter, {"timeout": "0s"})
    start_worker()
    handle.result(timeout=60)
    with pytest.raises(df.RunNotFound, match="completed"):
        df.signal(handle.id, "go")
    with pytest.raises(df.RunNotFound, match="no run"):
        df.signal("01NOSUCHRUN000000000000000", "go")
    assert not Signal.objects.exists()


def test_bad_signals_are_refused_and_store_nothing():
    handle = df.start(signal_waiter)
    with pytest.raises(ValueError, match="name"):
        df.signal(handle.id, "")
    with pytest.raises(ValueError, match="JSON object"):
        df.signal(handle.id, "go", ["not", "a", "dict"])  # type: ignore[arg-type]
    assert not Signal.objects.exists()


def test_the_api_sends_a_signal(admin_client, start_worker):
    handle = df.start(signal_waiter, {"name": "approve"})
    response = admin_client.post(
        f"/flows/api/runs/{handle.id}/signal/",
        {"name": "approve", "data": {"ok": True}},
        content_type="application/json",
    )
    assert response.status_code == 202, response.content
    assert response.json()["run_id"] == handle.id
    start_worker()
    assert handle.result(timeout=60) == [{"ok": True}]
    finished = admin_client.post(
        f"/flows/api/runs/{handle.id}/signal/", {"name": "approve"}, content_type="application/json"
    )
    assert finished.status_code == 404
    bad = admin_client.post(
        f"/flows/api/runs/{handle.id}/signal/", {"data": {}}, content_type="application/json"
    )
    assert bad.status_code == 400


def test_an_async_function_awaits_its_signal_and_patched(start_worker):
    handle = df.start("async-signal-waiter")
    start_worker()
    wait_until(lambda: waiting(handle), 60)
    df.signal(handle.id, "go", {"n": 1})
    assert handle.result(timeout=60) == {"patched": True, "got": {"n": 1}}
