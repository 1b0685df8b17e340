"""Sending events: validation, deduplication, transactions, fan-out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import transaction
from django.utils import timezone

import durable_flows as df
from durable_flows.exceptions import EventValidationError
from durable_flows.models import Event, Run
from durable_flows.testing import advance, run_until_idle

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


def test_an_event_id_is_reusable_after_the_dedup_window_and_history_is_kept():
    (first,) = df.send(df.Event(name="test/keep", id="order-7", data={"v": 1}))
    (done,) = df.send(df.Event(name="test/one", id="once", data={"v": 1}))
    assert (first, done) == ("order-7", "once")  # a sender's id is its first event's id
    run_until_idle()  # event-keeper sleeps for 2 days; one-step completes
    sleeping = Run.objects.get(event_id="order-7")
    finished = Run.objects.get(event_id="once")
    assert (sleeping.status, finished.status) == ("waiting", "completed")

    advance("25h")  # past the 24 h window: the same sender ids make new events
    (second,) = df.send(df.Event(name="test/keep", id="order-7", data={"v": 2}))
    (again,) = df.send(df.Event(name="test/one", id="once", data={"v": 2}))
    assert second not in ("order-7", again) and again != "once"
    # Within the new window the id deduplicates against the newest event.
    assert df.send(df.Event(name="test/keep", id="order-7", data={"v": 3})) == [second]

    stored = {e.pk: (e.sender_id, e.data) for e in Event.objects.exclude(sender_id=None)}
    assert stored == {
        "order-7": ("order-7", {"v": 1}),
        second: ("order-7", {"v": 2}),
        "once": ("once", {"v": 1}),
        again: ("once", {"v": 2}),
    }
    assert Run.objects.filter(event_id=second).count() == 1
    assert Run.objects.get(event_id=again).function_id == "one-step"
    finished.refresh_from_db()
    assert finished.event_id == "once" and finished.event.data == {"v": 1}

    advance("2d")
    run_until_idle()
    sleeping.refresh_from_db()
    assert sleeping.status == "completed"
    kept = {"id": "order-7", "data": {"v": 1}}
    assert sleeping.output == {"before": kept, "after": kept}  # resumed with its own event


def test_a_stored_event_cannot_be_saved_over():
    (event_id,) = df.send(df.Event(name="nobody/listens", id="fixed"))
    event = Event.objects.get(pk=event_id)
    event.data = {"rewritten": True}
    with pytest.raises(TypeError, match="never change"):
        event.save()
    with pytest.raises(TypeError, match="never change"):
        Event(id="fixed", name="x", data={}, ts=0).save(force_update=True)
    assert Event.objects.get(pk=event_id).data == {}


@pytest.mark.postgres
def test_two_senders_reusing_an_expired_id_at_once_store_one_new_event():
    """The second sender waits on the first's lock, then sees its event: one new event."""
    import threading

    from django.db import connection

    df.send(df.Event(name="test/one", id="race"))
    advance("25h")
    inside, release = threading.Event(), threading.Event()
    results: dict[str, list[str]] = {}

    def first() -> None:
        with transaction.atomic():
            results["first"] = df.send(df.Event(name="test/one", id="race"))
            inside.set()
            release.wait(10)
        connection.close()

    def second() -> None:
        inside.wait(10)
        results["second"] = df.send(df.Event(name="test/one", id="race"))
        connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    inside.wait(10)
    threads[1].join(0.5)
    assert threads[1].is_alive()  # blocked on the first sender's lock
    release.set()
    for thread in threads:
        thread.join(10)
    assert results["first"] == results["second"] != ["race"]
    assert Event.objects.filter(sender_id="race").count() == 2
    assert Run.objects.filter(event__sender_id="race").count() == 2


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
        ({"name": ""}, "'name' must be a non-empty string, got ''"),
        ({"data": {}}, "'name' is missing"),
        ({"name": 5}, "'name' must be a non-empty string, not int"),
        ({"name": "a\ud800"}, "'name' contains an unpaired surrogate"),
        ({"name": "a", "id": "\udfff"}, "'id' contains an unpaired surrogate"),
        ({"name": "a", "id": 7}, "'id' must be a non-empty string, not int"),
        ({"name": "durable_flows/function.finished"}, "reserved"),
        ({"name": "a", "data": [1]}, "'data' must be a JSON object, not list"),
        (
            {"name": "a", "data": {"x": float("nan")}},
            r"'data' is not JSON: float nan at data\['x'\]",
        ),
        ({"name": "a", "data": {"x": object()}}, r"'data' is not JSON: object at data\['x'\]"),
        ({"name": "a", "ts": "yesterday"}, "'ts' must be an integer of milliseconds"),
        ({"name": "a", "ts": datetime(2030, 1, 1)}, "timezone-aware"),
        ({"name": "a", "ts": 1.7e12}, "'ts' must be an integer of milliseconds .* not float"),
        ({"name": "a", "ts": float("inf")}, "'ts' must be an integer of milliseconds"),
        ({"name": "a", "ts": True}, "'ts' must be an integer of milliseconds"),
        ({"name": "a", "ts": -1}, "'ts' -1 is before the epoch"),
        ({"name": "a", "ts": 253402300799999}, "'ts' 253402300799999 is too far in the future"),
        ({"name": "a", "ts": datetime(9999, 1, 1, tzinfo=UTC)}, "too far in the future"),
        ({"name": "a", "id": ""}, "'id' must be a non-empty string"),
        ("not an event", "expected an event object"),
    ],
)
def test_bad_events_are_refused_clearly_and_nothing_is_stored(event, message):
    with pytest.raises(ValueError, match=message):
        df.send([{"name": "test/one"}, event])
    assert not Event.objects.exists()
    assert not Run.objects.exists()


def test_event_data_that_is_not_json_is_named_with_the_event_and_the_path():
    placed = {"order": {"id": 7, "receipt": b"%PDF"}}
    with pytest.raises(EventValidationError) as refused:
        df.send(df.Event(name="shop/order.placed", data=placed))
    assert str(refused.value) == (
        "event 'shop/order.placed': 'data' is not JSON: bytes at data['order']['receipt']"
    )
    with pytest.raises(EventValidationError) as refused:
        df.send([{"name": "test/one"}, {"name": "test/three", "data": {"tags": [1, {2}]}}])
    assert str(refused.value) == "event 1 'test/three': 'data' is not JSON: set at data['tags'][1]"
    assert not Event.objects.exists()


def test_an_event_over_max_event_bytes_is_refused():
    from durable_flows.exceptions import EventTooLargeError

    with pytest.raises(EventTooLargeError, match="MAX_EVENT_BYTES"):
        df.send(df.Event(name="test/one", data={"blob": "x" * 600_000}))
    assert not Event.objects.exists()


def test_the_admin_api_and_dashboard_show_every_event_of_a_reused_sender_id(client):
    from django.contrib.auth.models import User

    df.send(df.Event(name="nobody/listens", id="reused", data={"v": 1}))
    advance("25h")
    (second,) = df.send(df.Event(name="nobody/listens", id="reused", data={"v": 2}))
    client.force_login(User.objects.create_superuser("root", password="x"))
    pages = {
        "admin": "/admin/durable_flows/event/?q=reused",
        "dashboard": "/flows/events/?sender_id=reused",
    }
    for where, url in pages.items():
        page = client.get(url).content.decode()
        assert ">reused<" in page and second in page, where
    listed = client.get("/flows/api/events/?sender_id=reused").json()["results"]
    assert [(e["id"], e["sender_id"], e["data"]) for e in listed] == [
        (second, "reused", {"v": 2}),
        ("reused", "reused", {"v": 1}),
    ]
    for pk, v in (("reused", 1), (second, 2)):
        assert client.get(f"/flows/api/events/{pk}/").json()["data"] == {"v": v}
        assert f"&quot;v&quot;: {v}" in client.get(f"/flows/events/{pk}/").content.decode()


def test_the_migration_keeps_recent_ids_deduplicating():
    """0006 moved the sender's id out of the primary key: ids of events inside the
    window become their sender ids, so a resend right after upgrading stays a duplicate."""
    import importlib
    from types import SimpleNamespace

    from django.apps import apps
    from django.db import connection

    migration = importlib.import_module("durable_flows.migrations.0006_event_sender_id")
    now = timezone.now()
    Event.objects.bulk_create(
        [
            Event(id="recent", name="test/one", data={}, ts=0, received_at=now),
            Event(id="old", name="test/one", data={}, ts=0, received_at=now - timedelta(days=2)),
        ]
    )
    migration.backfill_recent_sender_ids(apps, SimpleNamespace(connection=connection))
    assert dict(Event.objects.values_list("id", "sender_id")) == {"recent": "recent", "old": None}
    assert df.send(df.Event(name="test/one", id="recent")) == ["recent"]
    assert not Run.objects.exists()


def test_ts_is_int_milliseconds_or_an_aware_datetime_up_to_100_years_ahead():
    from durable_flows.definitions.payloads import ms
    from durable_flows.durations import MAX_DURATION

    now = timezone.now()
    latest = now + MAX_DURATION - timedelta(minutes=1)
    ids = df.send(
        [
            df.Event(name="nobody/listens", ts=0),
            df.Event(name="nobody/listens", ts=ms(latest)),
            df.Event(name="nobody/listens", ts=datetime(2026, 1, 1, tzinfo=UTC)),
        ]
    )
    assert [Event.objects.get(pk=pk).ts for pk in ids] == [0, ms(latest), 1767225600000]
