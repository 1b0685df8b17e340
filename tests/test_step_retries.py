"""``ctx.step.run(..., retries=N)`` overrides the function's ``retries`` for that step,
in sync and async functions, in-process and through real ``runflows`` workers; a bad
value is refused at the call."""

from __future__ import annotations

import pytest

from durable_flows.models import Run
from tests.conftest import effects, start

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_step_retries_more_than_its_function(execute):
    run = start("test/step-retries", failures=2)
    execute()
    run.refresh_from_db()
    assert run.status == "completed", run.error
    assert run.output == ["kept ok after 3"]
    assert run.steps.get(name="kept").attempts == 3


def test_a_step_retries_past_its_own_limit_fails(execute):
    run = start("test/step-retries", failures=3)
    execute()
    run.refresh_from_db()
    assert run.status == "failed"
    assert (run.steps.get(name="kept").attempts, effects("kept", run)) == (3, 3)


def test_a_step_with_no_retries_fails_at_once_in_a_retrying_function(execute):
    run = start("test/step-no-retries")
    execute()
    run.refresh_from_db()
    assert run.status == "failed"
    assert effects("once", run) == 1
    assert run.steps.get().attempts == 1


def test_an_async_step_has_its_own_retries_too(execute):
    run = start("test/async-step-retries")
    execute()
    run.refresh_from_db()
    assert run.status == "completed", run.error
    assert effects("async-kept", run) == 3


@pytest.mark.parametrize("retries", [-1, 21, True, "2"])
def test_a_bad_retries_value_fails_the_run_at_the_call(execute, retries):
    run = start("test/bad-step-retries", retries=retries)
    execute()
    run = Run.objects.get(pk=run.pk)
    assert run.status == "failed"
    assert run.error["type"] == "StepArgumentError"
    assert "retries=...) must be an integer from 0 to 20" in run.error["message"]
    assert run.attempt == 0  # a mistake in the code: not retried
