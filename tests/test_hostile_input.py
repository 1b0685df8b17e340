"""Property-based: whatever a caller passes to send(), it is stored whole or refused
with a clear EventValidationError, and a refusal stores nothing."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import durable_flows as df
from durable_flows.exceptions import EventValidationError
from durable_flows.models import Event, Run

pytestmark = pytest.mark.django_db(transaction=True)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
)
json_like = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
anything = json_like | st.binary(max_size=10) | st.tuples(st.integers()) | st.sets(st.integers())
events = st.fixed_dictionaries(
    {"name": st.text(max_size=20) | anything},
    optional={
        "data": st.dictionaries(st.text(max_size=8), json_like, max_size=4) | anything,
        "id": st.text(max_size=12) | anything,
        "ts": st.integers(min_value=-(2**64), max_value=2**64) | anything,
    },
)


def nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth):
        value = {"a": value}
    return value


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.lists(events, min_size=1, max_size=3))
def test_send_stores_everything_or_nothing(batch):
    Event.objects.all().delete()
    Run.objects.all().delete()
    try:
        ids = df.send(batch)
    except EventValidationError as exc:
        assert str(exc)
        assert not Event.objects.exists() and not Run.objects.exists()
        return
    stored = Event.objects.filter(pk__in=ids)
    assert stored.count() == len(set(ids))
    for event_id, item in zip(ids, batch, strict=True):
        assert Event.objects.get(pk=event_id).name == item["name"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (nested(5000), "nested too deeply"),
        ({"s": "\ud800"}, "unpaired surrogate"),
        ({"s": "a\x00b"}, "NUL"),
        ({"n": float("inf")}, r"'data' is not JSON: float inf at data\['n'\]"),
    ],
)
def test_hostile_data_is_refused_clearly(data, message):
    with pytest.raises(EventValidationError, match=message):
        df.send(df.Event(name="test/one", data=data))
    assert not Event.objects.exists()


def test_odd_but_valid_unicode_round_trips():
    data = {"emoji": "🦄", "rtl": "שלום", "zw": "a\u200bb", "big": 2**53, "deep": nested(50)}
    (event_id,) = df.send(df.Event(name="test/ünïcode ✓", data=data))
    assert Event.objects.get(pk=event_id).data == data


# --- the same over HTTP ---------------------------------------------------------------

raw_bodies = (
    st.binary(max_size=64)
    | st.text(max_size=64).map(str.encode)
    | st.lists(events, max_size=3).map(lambda b: _dumps(b))
    | events.map(lambda e: _dumps(e))
    | st.sampled_from(
        [
            b'{"name": "a", "name": "b"}',  # duplicate keys: the last wins, as in JSON parsers
            b'[{"name": "a", "data": {"x": Infinity}}]',
            b"[" * 5000 + b"]" * 5000,
            b'{"name": "a", "data": {"s": "\\ud800"}}',
            b'{"name": "a\\u0000"}',
            b"\xff\xfe",
        ]
    )
)


def _dumps(value) -> bytes:
    import json

    try:
        return json.dumps(value, default=repr).encode()
    except (ValueError, RecursionError):
        return b"{}"


@pytest.fixture
def key(db) -> str:
    from durable_flows.keys import create_key

    return create_key("hostile")[1]


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(body=raw_bodies)
def test_http_endpoints_answer_every_body_with_json_and_never_5xx(client, key, body):
    for url, auth in (
        (f"/e/{key}", {}),
        ("/flows/api/events/", {"HTTP_AUTHORIZATION": f"Bearer {key}"}),
    ):
        before = Event.objects.count()
        response = client.post(url, body, content_type="application/json", **auth)
        assert response.status_code < 500, (url, body, response.content[:300])
        assert response["Content-Type"].startswith("application/json")
        if response.status_code >= 400:
            assert response.json()["error"]
            assert Event.objects.count() == before  # a refusal stores nothing
