"""Typed events: ``@df.event_schema`` (a dataclass or a Pydantic model), a function
triggered by the class receiving instances, ``df.send(instance)``, and every send path
refusing data that does not fit, with field errors, storing nothing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone
from pydantic import BaseModel

import durable_flows as df
from durable_flows.conf import db_alias
from durable_flows.definitions.payloads import ms
from durable_flows.engine.outcomes import receive
from durable_flows.exceptions import ConfigurationError
from durable_flows.models import Event, Run
from durable_flows.testing import run_until_idle
from tests.conftest import start
from tests.docs_examples import typed_events as examples
from tests.flows_typed import OrderPlaced, SignedUp
from tests.http_fixtures import bearer, event_key, staff

__all__ = ["event_key", "staff"]  # fixtures

pytestmark = pytest.mark.django_db(transaction=True)

PLACED = {"order_id": 7, "placed_at": "2030-01-02T03:04:05Z", "total": "9.99"}
BAD_ORDER = {"order_id": "seven", "placed_at": "2030-01-02T03:04:05Z", "total": "9.99"}
BAD_FIELDS = {"order_id": ["expected an integer, got a string"]}


def nothing_stored() -> bool:
    return not Event.objects.exists() and not Run.objects.exists()


# --- receiving instances -----------------------------------------------------------------


def test_a_function_triggered_by_a_dataclass_gets_an_instance(execute):
    (event_id,) = df.send(df.Event(name="typed/order.placed", data={**PLACED, "tags": ["a"]}))
    run = Run.objects.get(event_id=event_id)
    execute()
    run.refresh_from_db()
    assert run.status == "completed", run.error
    assert run.output == {
        "type": "OrderPlaced",
        "order_id": 7,
        "year": 2030,
        "double": "19.98",
        "tags": ["a"],
    }


def test_a_batch_of_pydantic_events_gets_an_instance_in_each(execute):
    ids = df.send(
        [
            SignedUp(user_id=1, email="a@example.com", at=datetime(2030, 1, 2, 3, tzinfo=UTC)),
            {
                "name": "typed/user.signed-up",
                "data": {"user_id": 2, "email": "b@x", "at": "2030-01-02T04:00:00Z"},
            },
        ]
    )
    execute()
    run = Run.objects.get(function_id="typed-signups")
    assert run.status == "completed", run.error
    assert run.output == {
        "event": "SignedUp",
        "events": ["SignedUp", "SignedUp"],
        "users": [1, 2],
        "hours": [3, 4],
    }
    assert Event.objects.get(pk=ids[0]).data == {
        "user_id": 1,
        "email": "a@example.com",
        "at": "2030-01-02T03:00:00Z",
    }


def test_df_send_of_a_dataclass_instance_stores_its_fields_encoded():
    placed = OrderPlaced(order_id=8, placed_at=datetime(2030, 1, 2, tzinfo=UTC), total=Decimal("5"))
    (event_id,) = df.send(placed)
    event = Event.objects.get(pk=event_id)
    assert event.name == "typed/order.placed"
    assert event.data == {
        "order_id": 8,
        "placed_at": "2030-01-02T00:00:00Z",
        "total": "5",
        "note": None,
        "tags": [],
    }
    run = Run.objects.get(event=event)
    run_until_idle()
    run.refresh_from_db()
    assert run.output["order_id"] == 8 and run.output["double"] == "10"


def test_stored_data_that_no_longer_fits_fails_the_run_at_once():
    # As if stored before the schema changed: straight into the inbox, past send()'s checks.
    with transaction.atomic():
        (event_id,) = receive(
            [
                {
                    "id": None,
                    "name": "typed/order.placed",
                    "data": BAD_ORDER,
                    "ts": ms(datetime.now(UTC)),
                }
            ],
            db_alias(),
        )
    run = Run.objects.get(event_id=event_id)
    run_until_idle()
    run.refresh_from_db()
    assert (run.status, run.attempt, run.error["type"]) == ("failed", 0, "NonRetriableError")
    assert run.error["message"] == (
        f"event {event_id} 'typed/order.placed': its data does not fit OrderPlaced: "
        "order_id: expected an integer, got a string"
    )


# --- every send path refuses data that does not fit ---------------------------------------


def test_df_send_refuses_the_whole_batch_with_field_errors():
    with pytest.raises(df.EventValidationError) as refused:
        df.send(
            [
                df.Event(name="typed/order.placed", data=PLACED),
                {"name": "typed/order.placed", "data": BAD_ORDER},
            ]
        )
    assert str(refused.value) == (
        "event 1 'typed/order.placed': 'data' does not fit OrderPlaced: "
        "order_id: expected an integer, got a string"
    )
    assert refused.value.fields == BAD_FIELDS
    assert nothing_stored()


def test_df_send_refuses_pydantic_errors_by_field():
    with pytest.raises(df.EventValidationError) as refused:
        df.send(df.Event(name="typed/user.signed-up", data={"user_id": "x", "at": "soon"}))
    assert set(refused.value.fields) == {"user_id", "email", "at"}
    assert refused.value.fields["email"] == ["Field required"]
    assert nothing_stored()


def test_the_rest_api_answers_400_with_field_errors(client, event_key):
    response = client.post(
        "/flows/api/events/",
        json.dumps(
            [
                {"name": "typed/order.placed", "data": PLACED},
                {"name": "typed/order.placed", "data": BAD_ORDER},
            ]
        ),
        content_type="application/json",
        **bearer(event_key),
    )
    assert response.status_code == 400
    body = response.json()
    assert body["fields"] == BAD_FIELDS
    assert body["error"] == body["detail"] and "does not fit OrderPlaced" in body["error"]
    assert nothing_stored()


def test_inngests_event_api_answers_400_with_field_errors(client, event_key):
    response = client.post(
        f"/e/{event_key}",
        json.dumps([{"name": "typed/order.placed", "data": BAD_ORDER}]),
        content_type="application/json",
    )
    assert response.status_code == 400
    body = response.json()
    assert (body["ids"], body["status"], body["fields"]) == ([], 400, BAD_FIELDS)
    assert "does not fit OrderPlaced" in body["error"]
    assert nothing_stored()


def test_the_dashboard_send_form_shows_the_field_errors(client, staff):
    client.force_login(staff)
    response = client.post(
        "/flows/events/send/", {"name": "typed/order.placed", "data": json.dumps(BAD_ORDER)}
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "does not fit OrderPlaced" in page
    assert "order_id: expected an integer, got a string" in page
    assert nothing_stored()


def test_send_event_in_a_step_fails_the_run_and_stores_nothing(execute):
    run = start("typed/send-bad")
    execute()
    run.refresh_from_db()
    assert (run.status, run.attempt) == ("failed", 0)
    assert "does not fit OrderPlaced: order_id: expected an integer" in run.error["message"]
    assert list(
        Event.objects.values_list("name", flat=True).exclude(name__startswith="durable_flows/")
    ) == ["typed/send-bad"]
    assert list(Run.objects.values_list("function_id", flat=True)) == ["typed-send-bad"]


# --- dataclass checks -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "fields"),
    [
        ({**PLACED, "extra": 1}, {"extra": ["unknown field"]}),
        (
            {"order_id": 7},
            {"placed_at": ["this field is required"], "total": ["this field is required"]},
        ),
        ({**PLACED, "order_id": True}, {"order_id": ["expected an integer, got a boolean"]}),
        (
            {**PLACED, "placed_at": "tomorrow"},
            {"placed_at": ["expected a datetime as an ISO 8601 string, got 'tomorrow'"]},
        ),
        (
            {**PLACED, "total": "lots"},
            {"total": ["expected a decimal number (a string or a number), got 'lots'"]},
        ),
        ({**PLACED, "note": 5}, {"note": ["expected a string, got an integer"]}),
        ({**PLACED, "tags": "a"}, {"tags": ["expected a list, got a string"]}),
    ],
)
def test_a_dataclass_is_constructed_from_the_data_with_basic_type_checks(data, fields):
    with pytest.raises(df.EventValidationError) as refused:
        df.send(df.Event(name="typed/order.placed", data=data))
    assert refused.value.fields == fields
    assert nothing_stored()


def test_optional_fields_numbers_for_decimals_and_defaults_are_accepted():
    df.send(df.Event(name="typed/order.placed", data={**PLACED, "total": 12.5, "note": None}))
    assert Event.objects.count() == 1


# --- mistakes in the code -----------------------------------------------------------------


@dataclass
class NotRegistered:
    x: int


def test_sending_an_unregistered_class_or_a_class_itself_is_a_clear_error():
    with pytest.raises(df.EventValidationError) as refused:
        df.send(NotRegistered(x=1))
    assert str(refused.value) == (
        "event: NotRegistered is not an event schema; decorate it with "
        "@df.event_schema('<event name>') to send it"
    )
    with pytest.raises(
        df.EventValidationError, match="got the class OrderPlaced; send an instance"
    ):
        df.send(OrderPlaced)
    assert nothing_stored()


def test_schema_mistakes_are_configuration_errors_at_import():
    with pytest.raises(ConfigurationError, match="two event schemas for 'typed/order.placed'"):

        @df.event_schema("typed/order.placed")
        @dataclass
        class Another:
            order_id: int

    with pytest.raises(ConfigurationError, match="must decorate a Pydantic model or a dataclass"):
        df.event_schema("typed/plain")(dict)
    with pytest.raises(ConfigurationError, match="must be an event name"):
        df.event_schema("typed/*")
    with pytest.raises(ConfigurationError, match="NotRegistered is not an event schema"):
        df.TriggerEvent(event=NotRegistered)
    with pytest.raises(ConfigurationError, match="already the schema of 'typed/user.signed-up'"):
        df.event_schema("typed/other")(SignedUp)


def test_a_pydantic_model_and_a_dataclass_are_both_accepted_kinds():
    assert issubclass(SignedUp, BaseModel)
    assert df.TriggerEvent(event=SignedUp).event == "typed/user.signed-up"
    assert df.TriggerEvent(event=OrderPlaced).schema is OrderPlaced


# --- the examples of docs/typed-events.md ---------------------------------------------------


def test_the_documented_examples_run_as_the_page_says():
    (event_id,) = examples.pay(12, Decimal("120.50"))
    run = Run.objects.get(event_id=event_id)
    run_until_idle()
    run.refresh_from_db()
    assert run.status == "completed", run.error
    assert run.output == {
        "month": timezone.now().month,
        "receipt": {"number": "R-12", "amount": "120.50"},
    }
    (refund_id,) = examples.request_refund(12)
    assert Event.objects.get(pk=refund_id).data == {"invoice_id": 12, "reason": "damaged"}
    assert examples.send_bad_data() == {
        "invoice_id": ["expected an integer, got a string"],
        "paid_at": ["this field is required"],
    }
    assert Event.objects.exclude(name__startswith="durable_flows/").count() == 2
