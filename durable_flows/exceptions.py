"""Errors raised to users, and the control-flow signals the engine uses internally."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from . import clock
from .durations import ensure_within_range, parse_duration


class DurableFlowsError(Exception):
    """Base class of every error durable_flows raises on purpose."""


class ConfigurationError(DurableFlowsError, ImproperlyConfigured):
    """A function definition or a setting is wrong; raised at import or start-up."""


class EventValidationError(DurableFlowsError, ValueError):
    """An event cannot be accepted as given; nothing was stored.

    ``fields``: when its data does not fit the event's schema (``@df.event_schema``),
    the messages for each field, such as ``{"order_id": ["expected an integer, got str"]}``
    (``"__all__"``: the data as a whole).
    """

    status_code = 400

    def __init__(self, message: str, *, fields: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.fields = fields or {}


class EventTooLargeError(EventValidationError):
    """An event is larger than ``MAX_EVENT_BYTES``; nothing was stored."""

    status_code = 413


class WorkerCrashed(DurableFlowsError):
    """The worker executing a step died (its process was killed or crashed): stored as a
    failed attempt of that step, and retried like any other failure."""


class NonRetriableError(DurableFlowsError):
    """Raise from a step (or the function body) to fail at once, without retries.

    Args:
        message: Stored as the error's message.
        cause: Anything that helps explain the failure (kept on the exception).
    """

    def __init__(self, message: str = "", *, cause: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.cause = cause


class RetryAfterError(DurableFlowsError):
    """Raise from a step to retry it at a given time instead of after the usual backoff.

    A ``retry_after`` that is not a duration or an aware datetime within range
    raises ``StepUsageError`` here, at the ``raise``: the step fails at once, saying why.

    Args:
        message: Stored as the attempt's error message.
        retry_after: When to retry: a duration (``timedelta``, ``"30s"``, or
            seconds as a number) or a timezone-aware ``datetime``.
    """

    def __init__(self, message: str, retry_after: timedelta | str | datetime | int | float) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = _checked_retry_after(retry_after)


class StepError(DurableFlowsError):
    """A step failed for good (retries exhausted, or not retriable).

    Raised inside the function at the step call; the function may catch it.
    ``error`` is the stored error dict (``type``, ``message``, ``traceback``).
    """

    def __init__(self, message: str, *, step_id: str = "", error: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.step_id = step_id
        self.error = error or {"type": "StepError", "message": message}


class NonDeterminismError(DurableFlowsError):
    """A replay met a recorded step of a different kind under the same step id."""


class StepOutputError(NonRetriableError):
    """A step's or function's result is not JSON (the message names the function, the
    step, the type and where it is) or is too large: a mistake in the code, so the run
    fails at once, without retries."""


class TooManyStepsError(NonRetriableError):
    """The run reached MAX_STEPS_PER_RUN."""


class NestedStepError(NonRetriableError):
    """A step was called from inside another step's function."""


class StepUsageError(NonRetriableError, ValueError):
    """A step was called with bad arguments (a bad duration, an unknown function...)."""


class StepArgumentError(NonRetriableError, TypeError):
    """A step was called with an argument it does not take (an unknown keyword, a ``fn``
    that is not callable): raised at the call, and the run fails without retries."""


class RunNotFound(DurableFlowsError, LookupError):
    """No run has this id (it never existed, or retention deleted it): from
    ``cancel()``, ``rerun()``, ``retry()`` and ``handle()``."""


class RunFailedError(DurableFlowsError):
    """``RunHandle.result()`` of a run that failed; ``error`` is the run's error dict
    (``type``, ``message``, and ``step`` when a step failed)."""

    def __init__(self, run_id: str, error: dict[str, Any] | None) -> None:
        self.run_id = run_id
        self.error = error or {}
        kind = self.error.get("type") or "Error"
        super().__init__(f"run {run_id} failed: {kind}: {self.error.get('message', '')}")


class RunCancelledError(DurableFlowsError):
    """``RunHandle.result()`` of a run that was cancelled (or skipped by flow control);
    ``error`` says why."""

    def __init__(self, run_id: str, error: dict[str, Any] | None, status: str = "cancelled"):
        self.run_id = run_id
        self.error = error or {}
        reason = self.error.get("message") or status
        super().__init__(f"run {run_id} was {status}: {reason}")


def _checked_retry_after(value: Any) -> Any:
    try:
        if isinstance(value, datetime):
            return ensure_within_range(value, clock.now(), what="RetryAfterError(retry_after)")
        parse_duration(value, what="RetryAfterError(retry_after)")
    except ValueError as exc:
        raise StepUsageError(str(exc)) from None
    return value


# --- control flow -----------------------------------------------------------
# BaseException subclasses: user code that catches ``Exception`` cannot swallow them.


class Interrupt(BaseException):  # noqa: N818 - a signal, not an error
    """The run's state has been saved (sleep, wait, retry, release); stop executing it."""


class LeaseLost(Interrupt):
    """Another worker owns the run now; nothing more may be recorded by this one."""


class RunCancelled(Interrupt):
    """The run was cancelled; it stops between steps. ``error`` says why (a timeout...)."""

    def __init__(self, error: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.error = error
