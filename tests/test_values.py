"""Dates, times, decimals and UUIDs as values: encoded as Django's ``DjangoJSONEncoder``
encodes them in event data, step results, function outputs and invoke data; a step
returns the same (encoded) value on its first execution as on its replay."""

from __future__ import annotations

import json

import pytest

import durable_flows as df
from durable_flows.models import Event, Run
from tests.conftest import effects, start
from tests.flows_values import VALUES
from tests.http_fixtures import bearer, event_key, staff

__all__ = ["event_key", "staff"]  # fixtures

pytestmark = pytest.mark.django_db(transaction=True)

# As DjangoJSONEncoder writes them: ISO 8601 (milliseconds, "Z" for UTC), strings.
ENCODED = {
    "when": "2030-01-02T03:04:05.678Z",
    "day": "2030-01-02",
    "at": "12:30:15.250",
    "price": "9.99",
    "id": "12345678-1234-5678-1234-567812345678",
}


def test_event_data_is_stored_encoded_and_the_function_sees_it_so(execute):
    (event_id,) = df.send(df.Event(name="test/echo", data={"payload": VALUES}))
    assert Event.objects.get(pk=event_id).data == {"payload": ENCODED}
    run = Run.objects.get(event_id=event_id)
    execute()
    run.refresh_from_db()
    assert (run.status, run.output) == ("completed", ENCODED)
    assert run.steps.get(name="copy").output == ENCODED


def test_event_data_round_trips_through_the_rest_api(client, staff, event_key):
    (sent,) = df.send(df.Event(name="test/values", data=VALUES))
    client.force_login(staff)
    shown = client.get(f"/flows/api/events/{sent}/").json()["data"]
    assert shown == ENCODED
    response = client.post(
        "/flows/api/events/",
        json.dumps({"name": "test/values", "data": shown}),
        content_type="application/json",
        **bearer(event_key),
    )
    assert response.status_code == 201, response.json()
    (posted,) = response.json()["ids"]
    assert Event.objects.get(pk=posted).data == Event.objects.get(pk=sent).data == ENCODED


def test_a_step_returns_the_same_values_on_its_first_execution_and_on_replay(execute):
    run = start("test/step-values")
    execute()
    run.refresh_from_db()
    assert run.status == "completed", run.error
    assert run.output == {"step": ENCODED, "returned": ENCODED}
    # The body saw the step's result twice (first execution, replay after its failure),
    # both times as the same strings: their reprs, types included, are one key.
    assert effects(f"step-values:{sorted(ENCODED.items())!r}", run) == 2
    step = run.steps.get()
    assert (step.output, step.attempts) == (ENCODED, 1)


def test_invoke_data_is_encoded_for_the_child(execute):
    run = start("test/invoke-values")
    execute()
    run.refresh_from_db()
    assert (run.status, run.output) == ("completed", ENCODED), run.error
    child = Run.objects.get(parent_run=run)
    assert child.event.data == {"payload": ENCODED}


def test_plain_json_is_stored_as_given_and_a_set_is_still_refused():
    (event_id,) = df.send(df.Event(name="test/values", data={"n": 1, "s": "x", "l": [1.5]}))
    assert Event.objects.get(pk=event_id).data == {"n": 1, "s": "x", "l": [1.5]}
    with pytest.raises(df.EventValidationError, match=r"is not JSON: set at data\['tags'\]"):
        df.send(df.Event(name="test/values", data={"when": VALUES["when"], "tags": {1}}))
    assert Event.objects.count() == 1
