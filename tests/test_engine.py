"""Executing runs: checkpoints, retries, errors, atomic steps (in-process worker)."""

from __future__ import annotations

import pytest
from django.test import override_settings

import durable_flows as df
from durable_flows.models import Event, Run, Step
from durable_flows.testing import run_until_idle
from tests.conftest import effects, start
from tests.models import Ledger

pytestmark = pytest.mark.django_db(transaction=True)


def test_each_step_executes_once_and_the_body_once_without_replay():
    run = start("test/three")
    run_until_idle()
    run.refresh_from_db()
    assert run.status == "completed"
    assert run.output == {"a": 1, "b": 1, "c": 1}
    assert [effects(k, run) for k in ("step-a", "step-b", "step-c")] == [1, 1, 1]
    # Staying on one worker, the function body is not replayed per step.
    assert effects("body", run) == 1
    steps = list(run.steps.all())
    assert [s.name for s in steps] == ["a", "b", "c"]
    assert {(s.kind, s.status, s.attempts) for s in steps} == {("run", "completed", 1)}
    assert all(s.started_at <= s.ended_at for s in steps)
    assert run.started_at is not None and run.ended_at >= run.started_at


def test_a_step_failing_twice_then_succeeding_completes_with_three_attempts(execute):
    run = start("test/flaky", failures=2)
    execute()
    run.refresh_from_db()
    assert run.status == "completed", run.error
    assert run.output == "ok after 3"
    step = run.steps.get()
    assert (step.status, step.attempts, step.error) == ("completed", 3, None)
    assert effects("flaky", run) == 3


def test_retries_are_exhausted_after_retries_plus_one_attempts(execute):
    run = start("test/flaky", failures=99)
    execute()
    run.refresh_from_db()
    assert run.status == "failed"
    step = run.steps.get()
    assert (step.status, step.attempts) == ("failed", 5)
    assert run.error["type"] == "ValueError"
    assert run.error["message"] == "flaky failure 5"
    assert "Traceback" in run.error["traceback"]


def test_non_retriable_error_fails_after_one_attempt(execute):
    run = start("test/nonretriable")
    execute()
    run.refresh_from_db()
    assert run.status == "failed"
    assert run.steps.get().attempts == 1
    assert effects("non-retriable", run) == 1
    assert run.error["type"] == "NonRetriableError"
    assert run.error["message"] == "card declined"


def test_retries_zero_is_honoured(execute):
    run = start("test/flaky0")
    execute()
    run.refresh_from_db()
    assert run.status == "failed"
    assert run.steps.get().attempts == 1


def test_a_caught_step_error_lets_the_function_continue(execute):
    run = start("test/catches")
    execute()
    run.refresh_from_db()
    assert run.status == "completed"
    assert run.output == {"caught": "ValueError", "fallback": "used fallback"}
    doomed, fallback = run.steps.all()
    assert (doomed.status, doomed.attempts) == ("failed", 2)
    assert fallback.status == "completed"


def test_an_atomic_step_that_raises_leaves_no_row_behind(execute):
    run = start("test/atomic", key="k-fail", fail=True)
    execute()
    run.refresh_from_db()
    assert run.status == "failed"
    assert not Ledger.objects.filter(key="k-fail").exists()


def test_an_atomic_step_that_succeeds_leaves_exactly_one_row(execute):
    run = start("test/atomic", key="k-ok")
    execute()
    run.refresh_from_db()
    assert run.status == "completed"
    assert Ledger.objects.filter(key="k-ok").count() == 1


def test_errors_outside_steps_retry_the_function_then_fail(execute):
    run = start("test/body-error")
    execute()
    run.refresh_from_db()
    assert run.status == "failed"
    assert run.error["type"] == "RuntimeError"
    assert effects("body-error", run) == 3  # retries=2


def test_a_result_that_is_not_json_fails_the_step_without_retry(execute):
    run = start("test/bad-output")
    execute()
    run.refresh_from_db()
    assert run.status == "failed"
    step = run.steps.get()
    assert step.attempts == 1
    assert step.error["message"] == (
        "step 'set' of function 'bad-output' returned a value that is not JSON: set at result"
    )


NOT_JSON = {
    "set": "step 'charge' of function 'charge-order' returned a value that is not JSON: "
    "set at result['tags']",
    "nested": "step 'charge' of function 'charge-order' returned a value that is not JSON: "
    "time with a UTC offset at result['items'][1]['at'] (a time of day is encoded without one)",
    "function": "function 'charge-order' returned a value that is not JSON: "
    "object at result['done'][1]",
}


@pytest.mark.parametrize("shape", NOT_JSON)
def test_a_value_that_is_not_json_is_named_with_its_step_function_type_and_path(execute, shape):
    """A programming error, like NonRetriableError: the run fails at once though the
    function has retries=2, and its error points at the value, not into the engine."""
    run = start("test/not-json", shape=shape)
    execute()
    run.refresh_from_db()
    assert (run.status, run.attempt) == ("failed", 0)
    assert effects("charge-order-body", run) == 1
    assert run.error["type"] == "StepOutputError"
    assert run.error["message"] == NOT_JSON[shape]
    assert (
        run.error["traceback"] == f"durable_flows.exceptions.StepOutputError: {NOT_JSON[shape]}\n"
    )
    if shape != "function":
        step = run.steps.get(name="charge")
        assert (step.status, step.attempts, step.error) == ("failed", 1, run.error)


TYPO = (
    "ctx.step.run('add', ...) got unexpected keyword argument {named}. Its keywords are its "
    "own options (atomic=, retries=); fn's arguments go positionally after fn, as in "
    "ctx.step.run('add', fn, 1, 2), and for keyword arguments pass functools.partial(fn, b=2) "
    "or a lambda"
)


def test_an_unknown_keyword_to_a_step_fails_the_run_at_the_call_without_retries(execute):
    run = start("test/step-typo")
    execute()
    run.refresh_from_db()
    assert (run.status, run.attempt) == ("failed", 0)
    assert effects("step-typos-body", run) == 1  # the body was not retried
    assert not run.steps.exists()
    assert run.error["type"] == "StepArgumentError"
    assert run.error["message"] == TYPO.format(named="'atomc' (did you mean 'atomic'?)")
    assert 'ctx.step.run("add", _add, 1, 2, atomc=False)' in run.error["traceback"]


def test_an_unknown_keyword_to_a_step_is_a_type_error_the_function_may_catch(execute):
    run = start("test/step-typo", catch=True)
    execute()
    run.refresh_from_db()
    assert run.status == "completed", run.error
    assert run.output == TYPO.format(named="'b'")
    assert not run.steps.exists()


@override_settings(DURABLE_FLOWS={"MAX_STEP_OUTPUT_BYTES": 10, "RETRY_BACKOFF_SECONDS": (0,)})
def test_a_result_over_the_size_limit_fails_and_says_why():
    run = start("test/three")
    run_until_idle()
    run.refresh_from_db()
    # the step results (1) fit; the function's output does not
    assert run.status == "failed"
    assert "MAX_STEP_OUTPUT_BYTES" in run.error["message"]


@override_settings(DURABLE_FLOWS={"MAX_STEPS_PER_RUN": 5})
def test_a_run_that_reaches_max_steps_fails_clearly():
    run = start("test/many", steps=10)
    run_until_idle()
    run.refresh_from_db()
    assert run.status == "failed"
    assert "MAX_STEPS_PER_RUN" in run.error["message"]
    assert run.steps.count() == 5


def test_repeated_step_ids_are_numbered_in_call_order():
    run = start("test/many", steps=4)
    run_until_idle()
    run.refresh_from_db()
    assert run.output == 0 + 1 + 2 + 3
    assert [s.name for s in run.steps.all()] == ["add", "add:1", "add:2", "add:3"]


def test_a_recorded_step_is_returned_from_its_record_on_replay():
    run = start("test/three")
    run_until_idle()
    # Reset the run to queued: a replay must not execute any step again.
    Run.objects.filter(pk=run.pk).update(status="queued", available_at=run.created_at)
    run_until_idle()
    assert [effects(k, run) for k in ("step-a", "step-b", "step-c")] == [1, 1, 1]
    assert effects("body", run) == 2


def test_a_replay_that_meets_a_different_kind_of_step_fails_clearly():
    run = start("test/three")
    # A run that executed before (it has started) with a different function.
    Run.objects.filter(pk=run.pk).update(started_at=run.created_at)
    Step.objects.create(run=run, name="a", kind="sleep", status="completed", position=0)
    run_until_idle()
    run.refresh_from_db()
    assert run.status == "failed"
    assert run.error["type"] == "NonDeterminismError"
    assert "'a'" in run.error["message"]


def test_lifecycle_events_are_sent_and_can_trigger_functions():
    run = start("test.family.created")
    run_until_idle()
    run.refresh_from_db()
    assert run.output == "test.family.created"
    finished = Event.objects.get(name="durable_flows/function.finished", data__run_id=run.pk)
    assert finished.data["function_id"] == "wildcard"
    follower = Run.objects.get(function_id="on-finished")
    assert follower.status == "completed"
    assert follower.output == run.pk


def test_a_failed_run_sends_failed_and_finished_events(execute):
    run = start("test/nonretriable")
    execute()
    names = set(Event.objects.filter(data__run_id=run.pk).values_list("name", flat=True))
    assert names == {"durable_flows/function.finished", "durable_flows/function.failed"}


def test_the_logger_does_not_repeat_lines_on_replay(caplog):
    from durable_flows.definitions.functions import registry

    fn = registry.get("flaky")
    original = fn.fn

    def logged(ctx):
        ctx.logger.info("before the step")
        result = original(ctx)
        ctx.logger.info("after the step")
        return result

    fn.fn = logged
    try:
        with caplog.at_level("INFO", logger="durable_flows.run"):
            run = start("test/flaky", failures=2)
            run_until_idle()  # two failed attempts: the function is entered three times
    finally:
        fn.fn = original
    run.refresh_from_db()
    assert run.status == "completed"
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("durable_flows.run")]
    assert lines.count("before the step") == 1
    assert lines.count("after the step") == 1


def test_cancel_a_queued_run_and_rerun_it():
    run = start("test/one")
    cancelled = df.cancel(run.pk)
    assert cancelled.status == "cancelled"
    assert Event.objects.filter(name="durable_flows/function.cancelled", data__run_id=run.pk)
    new_id = df.rerun(run.pk)
    assert new_id != run.pk
    run_until_idle()
    new = Run.objects.get(pk=new_id)
    assert (new.status, new.event_id, new.function_id) == ("completed", run.event_id, "one-step")
    assert Run.objects.get(pk=run.pk).status == "cancelled"


def test_cancelling_a_finished_run_changes_nothing():
    run = start("test/one")
    run_until_idle()
    assert df.cancel(run.pk).status == "completed"


def test_rerun_of_unknown_run_is_a_clear_error():
    with pytest.raises(LookupError, match="no run"):
        df.rerun("nope")


def test_the_context_describes_the_run_and_the_current_attempt(execute):
    run = start("test/ctx", k="v")
    execute()
    run.refresh_from_db()
    assert run.status == "completed", run.error
    event = run.event
    assert run.output == {
        "run_id": run.pk,
        "function_id": "ctx-info",
        "event": [event.id, "test/ctx", {"k": "v"}, event.ts],
        "events": 1,
        "step_attempt": 2,
        "attempt_outside_steps": 0,
    }


@pytest.mark.django_db(transaction=False)
def test_runflows_burst_in_process_sees_the_tests_own_transaction():
    from django.core.management import call_command

    run = start("test/three")
    call_command("runflows", "--burst", verbosity=0)
    run.refresh_from_db()
    assert run.status == "completed"


def test_a_failed_run_retried_from_its_failed_step_keeps_its_completed_steps(execute):
    from durable_flows.control import NotRetriable, retry

    run = start("test/gated")
    execute()
    run.refresh_from_db()
    assert run.status == "failed"
    with pytest.raises(NotRetriable):
        retry(start("test/one").pk)  # queued, not failed
    Ledger.objects.create(key=f"allow-{run.pk}")
    assert retry(run.pk).status == "queued"
    execute()
    run.refresh_from_db()
    assert (run.status, run.output, run.error) == ("completed", "allowed", None)
    assert effects("gated-before", run) == 1  # the completed step was not executed again
    assert effects("gate", run) == 2
    gate = run.steps.get(name="gate")
    assert (gate.status, gate.attempts) == ("completed", 1)
