"""Defining functions and configuring the app: mistakes fail early and clearly."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.test import override_settings

import durable_flows as df
from durable_flows.conf import flow_settings
from durable_flows.definitions.functions import registry
from durable_flows.durations import parse_duration
from durable_flows.exceptions import ConfigurationError


def noop(ctx):
    return None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"id": "", "trigger": df.TriggerEvent(event="a")}, "function id"),
        ({"id": "x y", "trigger": df.TriggerEvent(event="a")}, "function id"),
        ({"id": "ok", "trigger": "user/signup"}, "trigger must be"),
        ({"id": "ok", "trigger": []}, "at least one trigger"),
        ({"id": "ok", "trigger": df.TriggerEvent(event="a"), "retries": 21}, "retries"),
        ({"id": "ok", "trigger": df.TriggerEvent(event="a"), "retries": -1}, "retries"),
        ({"id": "ok", "trigger": df.TriggerEvent(event="a"), "bogus": 1}, "unknown option"),
    ],
)
def test_bad_function_definitions_fail_at_decoration(kwargs, message):
    with pytest.raises(ConfigurationError, match=message):
        df.function(**kwargs)(noop)
    assert registry.get("ok") is None


@pytest.mark.parametrize(
    ("trigger", "message"),
    [
        ({"event": ""}, "non-empty event name"),
        ({"event": "user/*/x"}, "wildcard"),
        ({"event": "a", "expression": "event.data. =="}, "invalid CEL expression"),
    ],
)
def test_bad_triggers_fail_with_a_clear_message(trigger, message):
    with pytest.raises(ConfigurationError, match=message):
        df.TriggerEvent(**trigger)


def test_an_async_generator_or_an_async_on_failure_handler_is_refused_at_decoration():
    async def generator(ctx):
        yield None

    with pytest.raises(ConfigurationError, match="is an async generator"):
        df.function(id="async-gen", trigger=df.TriggerEvent(event="a"))(generator)
    assert registry.get("async-gen") is None

    async def handler(ctx, error):
        return None

    with pytest.raises(ConfigurationError, match="not `async def`"):
        df.function(id="async-handler", trigger=df.TriggerEvent(event="a"), on_failure=handler)


def test_a_second_function_with_the_same_id_is_refused():
    with pytest.raises(ConfigurationError, match="two durable functions have the id 'one-step'"):
        df.function(id="one-step", trigger=df.TriggerEvent(event="a"))(noop)


def test_durations():
    assert parse_duration("1h30m") == timedelta(hours=1, minutes=30)
    assert parse_duration("7d") == timedelta(days=7)
    assert parse_duration(timedelta(seconds=3)) == timedelta(seconds=3)
    for bad in ("", "soon", "5x", "-1s"):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)


def test_unknown_settings_keys_are_an_error():
    with override_settings(DURABLE_FLOWS={"LEASE_SECOND": 5}):
        with pytest.raises(ConfigurationError, match="unknown key.*LEASE_SECOND"):
            flow_settings.check()
    flow_settings.check()


def test_system_check_reports_bad_settings_with_a_stable_id():
    from durable_flows.checks import check_settings

    with override_settings(DURABLE_FLOWS={"NOPE": 1}):
        assert [e.id for e in check_settings()] == ["durable_flows.E001"]
    with override_settings(DURABLE_FLOWS={"DATABASE": "missing"}):
        assert [e.id for e in check_settings()] == ["durable_flows.E002"]
    with override_settings(USE_TZ=False):
        assert [e.id for e in check_settings()] == ["durable_flows.E003"]
    assert check_settings() == []


def test_the_public_api_is_exported():
    for name in df.__all__:
        assert getattr(df, name) is not None
    assert df.__version__


def test_runflows_rejects_bad_arguments():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="--concurrency"):
        call_command("runflows", "--concurrency", "0")
