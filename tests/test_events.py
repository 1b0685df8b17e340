"""Sending events: validation, deduplication, transactions, fan-out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import transaction
from django.utils import timezone

import durable_flows as df
from durable_flows.models import Event, Run
from durable_flows.testing import run_until_idle

pytestmark = pytest.mark.django_db(transaction=True)


def test_send_returns_ids_in_order_and_stores_events():
    ids = df.send([df.Event(name="test/one", data={"n": 1}), df.Event(name="test/one", id="mine")])
    assert len(ids) == 2 and ids[1] == "mine"
    first = Event.objects.get(pk=ids[0])
    assert (first.name, first.data) == ("test/one", {"n": 1})
    assert abs(first.ts - int(timezone.now().timestamp() * 1000)) < 60_000
    assert Run.objects.filter(event_id__in=ids).count() == 2


def test_generated_ids_sort_by_time():
    ids = [df.send(df.Event(name="nobody/listens"))[0] for _ in range(5)]
    assert ids == sorted(ids) and len(ids[0]) == 26


def test_the_same_event_id_twice_starts_one_run_per_function():
    assert df.send(df.Event(name="test/one", id="order-42")) == ["order-42"]
    assert df.send(df.Event(name="test/one", id="order-42")) == ["order-42"]
    assert df.send([df.Event(name="test/one", id="x"), df.Event(name="test/one", id="x")]) == [
        "x",
        "x",
    ]
    assert Run.objects.filter(event_id="order-42").count() == 1
    assert Run.objects.filter(event_id="x").count() == 1
    assert Event.objects.filter(pk="order-42").count() == 1


def test_an_event_id_is_reusable_after_the_dedup_window():
    df.send(df.Event(name="test/one", id="daily"))
    Event.objects.filter(pk="daily").update(received_at=timezone.now() - timedelta(hours=25))
    df.send(df.Event(name="test/one", id="daily"))
    assert Run.objects.filter(event_id="daily").count() == 2


def test_one_event_fans_out_to_every_matching_function():
    (event_id,) = df.send(df.Event(name="test/plan", data={"plan": "pro"}))
    assert set(Run.objects.filter(event_id=event_id).values_list("function_id", flat=True)) == {
        "pro-only"
    }
    (free,) = df.send(df.Event(name="test/plan", data={"plan": "free"}))
    assert not Run.objects.filter(event_id=free).exists()  # the expression is false
    (missing,) = df.send(df.Event(name="test/plan", data={}))
    assert not Run.objects.filter(event_id=missing).exists()  # a missing field is false


def test_a_trailing_wildcard_matches_a_family_of_names():
    ids = df.send([df.Event(name="test.family.a"), df.Event(name="test.familyx")])
    assert Run.objects.filter(event_id=ids[0], function_id="wildcard").exists()
    assert not Run.objects.filter(event_id=ids[1]).exists()


def test_an_event_in_a_rolled_back_transaction_starts_nothing():
    with pytest.raises(RuntimeError), transaction.atomic():
        df.send(df.Event(name="test/one"))
        raise RuntimeError("roll back")
    assert not Event.objects.exists()
    assert not Run.objects.exists()


def test_an_event_commits_with_the_callers_transaction():
    with transaction.atomic():
        (event_id,) = df.send(df.Event(name="test/one"))
    assert Run.objects.filter(event_id=event_id).count() == 1


def test_a_future_ts_delays_the_runs():
    later = datetime.now(UTC) + timedelta(hours=1)
    (event_id,) = df.send(df.Event(name="test/one", ts=later))
    run = Run.objects.get(event_id=event_id)
    assert run.available_at >= later - timedelta(seconds=1)
    run_until_idle()
    assert Run.objects.get(pk=run.pk).status == "queued"


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"name": ""}, "'name' must be a non-empty string"),
        ({"data": {}}, "'name' must be a non-empty string"),
        ({"name": 5}, "'name' must be a non-empty string"),
        ({"name": "durable_flows/function.finished"}, "reserved"),
        ({"name": "a", "data": [1]}, "'data' must be a JSON object"),
        ({"name": "a", "data": {"x": float("nan")}}, "not JSON-serialisable"),
        ({"name": "a", "data": {"x": object()}}, "not JSON-serialisable"),
        ({"name": "a", "ts": "yesterday"}, "'ts' must be milliseconds"),
        ({"name": "a", "ts": datetime(2030, 1, 1)}, "timezone-aware"),
        ({"name": "a", "id": ""}, "'id' must be a non-empty string"),
        ("not an event", "expected an event object"),
    ],
)
def test_bad_events_are_refused_clearly_and_nothing_is_stored(event, message):
    with pytest.raises(ValueError, match=message):
        df.send([{"name": "test/one"}, event])
    assert not Event.objects.exists()
    assert not Run.objects.exists()


def test_an_event_over_max_event_bytes_is_refused():
    from durable_flows.exceptions import EventTooLargeError

    with pytest.raises(EventTooLargeError, match="MAX_EVENT_BYTES"):
        df.send(df.Event(name="test/one", data={"blob": "x" * 600_000}))
    assert not Event.objects.exists()
