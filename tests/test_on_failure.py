"""on_failure: a durable handler run once after a run has finally failed."""

from __future__ import annotations

import pytest

import durable_flows as df
from durable_flows.definitions.functions import registry
from durable_flows.exceptions import ConfigurationError
from durable_flows.models import Run
from durable_flows.testing import run_until_idle
from tests.models import Effect

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_handler_runs_once_with_the_failed_run_event_and_error():
    (event_id,) = df.send(df.Event(name="test/fails", data={"order_id": "o-1"}))
    run_until_idle()
    failed = Run.objects.get(function_id="fails")
    assert failed.status == "failed"
    handler_run = Run.objects.get(function_id="fails-failure")
    assert handler_run.status == "completed", handler_run.error
    assert handler_run.event.name == "durable_flows/function.failed"
    assert handler_run.output == {
        "event": "test/fails",
        "error": "child exploded",
        "failed_run": failed.pk,
    }
    assert [s.name for s in handler_run.steps.all()] == ["alert"]
    assert Effect.objects.filter(key="on-failure", run_id="o-1").count() == 1
    assert failed.event_id == event_id


def test_no_handler_run_when_the_run_succeeds_or_for_other_functions():
    df.send(df.Event(name="test/nonretriable"))  # fails, but has no on_failure
    df.send(df.Event(name="test/one"))
    run_until_idle()
    assert not Run.objects.filter(function_id="fails-failure").exists()


def test_the_companion_function_is_registered_and_described():
    companion = registry.get("fails-failure")
    assert companion is not None
    assert companion.describe()["triggers"] == [
        {
            "event": "durable_flows/function.failed",
            "expression": "event.data.function_id == 'fails'",
        }
    ]
    assert registry.get("fails").describe()["on_failure"] == "fails-failure"


def test_on_failure_must_be_callable():
    with pytest.raises(ConfigurationError, match="on_failure"):
        df.function(id="bad-handler", trigger=df.TriggerEvent(event="x/y"), on_failure="nope")
