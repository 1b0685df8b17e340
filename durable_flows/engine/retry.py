"""The retry policy: given an error and the attempts made, retry at a time, or give up."""

from __future__ import annotations

import random
import traceback
from datetime import datetime, timedelta
from typing import Any

from .. import clock
from ..conf import flow_settings
from ..durations import parse_duration
from ..exceptions import NonRetriableError, RetryAfterError, StepError, StepOutputError
from ..models import Step


def backoff(failures: int) -> timedelta:
    """Delay before retry number ``failures`` (1-based): the table's value plus jitter."""
    table = flow_settings.RETRY_BACKOFF_SECONDS
    base = table[min(failures - 1, len(table) - 1)]
    jitter = random.uniform(0, flow_settings.RETRY_JITTER_SECONDS)
    return timedelta(seconds=base + jitter)


def retry_at(exc: BaseException, failures: int, retries: int) -> datetime | None:
    """When to try again after the ``failures``-th failed attempt, or None to give up."""
    if isinstance(exc, NonRetriableError | StepError) or failures > retries:
        return None
    now = clock.now()
    if isinstance(exc, RetryAfterError):
        value = exc.retry_after
        if isinstance(value, datetime):
            return max(now, value)
        try:
            return now + parse_duration(value, what="retry_after")
        except ValueError:
            pass
    return now + backoff(failures)


def error_dict(exc: BaseException) -> dict[str, Any]:
    """An exception as stored JSON: ``type``, ``message``, ``traceback``, and ``class``
    (its import path, as the Tasks framework's ``exception_class_path``)."""
    if isinstance(exc, StepError) and exc.error:
        return dict(exc.error)
    message = getattr(exc, "message", None) or str(exc)
    # A value that is not JSON: the message says whose and where; the frames, all the
    # engine's (the step's function had returned), would not.
    if isinstance(exc, StepOutputError):
        lines = traceback.format_exception_only(exc)
    else:
        lines = traceback.format_exception(exc)
    return {
        "type": type(exc).__name__,
        "class": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "message": str(message),
        "traceback": "".join(lines),
    }


# An attempt's message in a step's history is cut to this many characters.
ATTEMPT_MESSAGE = 1000


def attempt_history(
    step: Step | None,
    started_at: datetime,
    error: dict[str, Any],
    ended_at: datetime | None = None,
) -> list[dict[str, Any]]:
    """``step``'s failed attempts with one more: the attempt that began at ``started_at``
    and raised ``error`` at ``ended_at`` (now): its type, class and message, not its
    traceback."""
    message = str(error.get("message") or "")
    summary = {"type": error.get("type") or "Error", "message": message[:ATTEMPT_MESSAGE]}
    if error.get("class"):
        summary["class"] = error["class"]
    entry = {
        "started_at": started_at.isoformat(),
        "ended_at": (ended_at or clock.now()).isoformat(),
        "error": summary,
    }
    return [*((step.failed_attempts or []) if step else []), entry]
