"""Inngest's Event API at /e/<key>: its wire format, and the real ``inngest`` client."""

from __future__ import annotations

import json
import time

import inngest
import pytest
from inngest._internal.errors import SendEventsError  # not re-exported by the SDK

from durable_flows.models import Event, Run
from durable_flows.testing import run_until_idle
from project.shop.models import Order, Stock
from tests.http_fixtures import event_key, revoked_key

__all__ = ["event_key", "revoked_key"]  # fixtures

SEED = "1795543573142,7sJGKGnd3MVwVQ=="


def post(client, key: str, body, **headers):
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post(f"/e/{key}", data, content_type="application/json", headers=headers)


@pytest.mark.django_db
def test_one_event_or_a_list_answers_200_with_ids_and_status(client, event_key):
    response = post(client, event_key, {"name": "test/one", "data": {"a": 1}})
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == 200 and len(body["ids"]) == 1 and "error" not in body
    response = post(client, event_key, [{"name": "test/one"}, {"name": "x", "id": "mine"}])
    assert response.json()["ids"][1] == "mine"
    assert Event.objects.count() == 3
    assert Run.objects.filter(function_id="one-step").count() == 2


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["wrong", "NO_EVENT_KEY_SET", "revoked"])
def test_a_wrong_or_revoked_key_is_401_json(client, key, revoked_key):
    key = revoked_key if key == "revoked" else key
    response = post(client, key, [{"name": "test/one"}])
    assert response.status_code == 401
    body = response.json()
    assert body["ids"] == [] and body["status"] == 401 and body["error"]
    assert not Event.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "status"),
    [
        ("{oops", 400),
        ('[{"name": "a", "data": {"x": NaN}}]', 400),
        ('[{"name": ""}]', 400),
        ('[{"data": {}}]', 400),
        ('[{"name": "durable_flows/function.failed"}]', 400),
        ('[{"name": "a", "data": [1]}]', 400),
        ("true", 400),
        (json.dumps([{"name": "a"}] * 5001), 400),
        (json.dumps({"name": "a", "data": {"b": "x" * 600_000}}), 413),
    ],
)
def test_bad_input_is_4xx_json_in_inngest_shape_and_stores_nothing(client, event_key, body, status):
    response = post(client, event_key, body)
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    payload = response.json()
    assert payload["ids"] == [] and payload["status"] == status and payload["error"]
    assert not Event.objects.exists()


@pytest.mark.django_db
def test_get_is_405_json(client, event_key):
    response = client.get(f"/e/{event_key}")
    assert response.status_code == 405 and response.json()["status"] == 405


@pytest.mark.django_db
def test_the_id_seed_header_makes_a_retried_request_idempotent(client, event_key):
    body = [{"name": "test/one"}, {"name": "test/one"}]
    first = post(client, event_key, body, **{"x-inngest-event-id-seed": SEED}).json()["ids"]
    again = post(client, event_key, body, **{"x-inngest-event-id-seed": SEED}).json()["ids"]
    assert first == again and first[0] != first[1]
    assert first[0].startswith("01") and len(first[0]) == 26
    assert Event.objects.count() == 2
    assert Run.objects.count() == 2  # the retry started no further runs
    other = post(client, event_key, body).json()["ids"]
    assert set(other).isdisjoint(first)


@pytest.mark.django_db(transaction=True)
def test_the_inngest_python_sdk_sends_events_and_their_runs_complete(live_server, event_key):
    client = inngest.Inngest(
        app_id="shop",
        event_key=event_key,
        event_api_base_url=live_server.url,
        is_production=True,
    )
    Stock.objects.create(item="widget", available=5)
    order = Order.objects.create(
        customer_email="ada@example.com", item="widget", quantity=2, total_cents=1800
    )
    ids = client.send_sync(
        [
            inngest.Event(name="shop/order.placed", data={"order_id": order.pk}),
            inngest.Event(name="test/three", id="order-1-placed"),
        ]
    )
    assert len(ids) == 2 and ids[1] == "order-1-placed"
    assert Event.objects.get(pk=ids[0]).data == {"order_id": order.pk}
    assert run_until_idle() == 2
    runs = {run.function_id: run for run in Run.objects.filter(event_id__in=ids)}
    assert {f: r.status for f, r in runs.items()} == {
        "fulfil-order": "completed",
        "three-steps": "completed",
    }
    # The example project's workflow did its work.
    order.refresh_from_db()
    assert order.status == "shipped"
    assert Stock.objects.get(item="widget").available == 3
    assert runs["fulfil-order"].output["tracking"] == order.shipment.tracking_number
    assert runs["three-steps"].output == {"a": 1, "b": 1, "c": 1}

    # A wrong key, and a bad event, surface as the SDK's own error, at once (no 5xx retries).
    wrong = inngest.Inngest(
        app_id="shop", event_key="wrong", event_api_base_url=live_server.url, is_production=True
    )
    began = time.monotonic()
    with pytest.raises(SendEventsError, match="Event key not found"):
        wrong.send_sync(inngest.Event(name="test/one"))
    assert time.monotonic() - began < 2  # a 4xx: the SDK did not retry
    with pytest.raises(SendEventsError, match="reserved"):
        client.send_sync(inngest.Event(name="durable_flows/function.finished"))
    assert not Event.objects.filter(name="durable_flows/function.finished", data={}).exists()
