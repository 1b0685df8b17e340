"""Checkpoints: a step's result, validated as JSON, and its record."""

from __future__ import annotations

import inspect
import json
from typing import Any

from django.db import IntegrityError

from .. import storage
from ..conf import flow_settings
from ..definitions.values import json_bytes
from ..exceptions import LeaseLost, StepOutputError
from ..models import Run, Step


def encode_output(value: Any, *, what: str, root: str = "result") -> Any:
    """Validate a value as JSON within MAX_STEP_OUTPUT_BYTES; return it as replay will see it.

    ``what`` names the value in errors (``step 'charge' of function 'fulfil-order' returned
    a value``), ``root`` begins the path to what is wrong in it (``result['when']``).
    A ``StepOutputError`` is a mistake in the code, not a passing failure: it is not retried.
    """
    if inspect.isawaitable(value):
        if inspect.iscoroutine(value):
            value.close()  # never awaited, on purpose: no warning about it
        raise StepOutputError(
            f"{what} that is a coroutine (or another awaitable), not a result: make the "
            "durable function `async def` and await the step, with atomic=False for an "
            "async step function (`await ctx.step.run(id, fn, atomic=False)`), or make "
            "the step function synchronous"
        )
    try:
        encoded = json_bytes(value, root)
    except ValueError as exc:
        raise StepOutputError(f"{what} that {exc}") from None
    limit = flow_settings.MAX_STEP_OUTPUT_BYTES
    if len(encoded) > limit:
        raise StepOutputError(
            f"{what} of {len(encoded)} bytes, over MAX_STEP_OUTPUT_BYTES ({limit})"
        )
    return json.loads(encoded)


def step_output(value: Any, step: str, function_id: str) -> Any:
    """A step's result, checked by ``encode_output``."""
    return encode_output(value, what=f"step {step!r} of function {function_id!r} returned a value")


def checkpoint(run: Run, token: str, using: str, **fields: Any) -> tuple[bool, Step]:
    """Prove the lease and insert a new step's checkpoint in one statement (where the
    storage can: ``one_statement_checkpoints``). Returns (cancel requested?, the step);
    raises ``LeaseLost`` otherwise."""
    step = Step(run=run, **fields)
    return storage.of(using).checkpoint(step, token), step


def save_step(using: str, run: Run, existing: Step | None, **fields: Any) -> Step:
    """Write a step's checkpoint (inside the caller's transaction)."""
    if existing is not None:
        Step.objects.using(using).filter(pk=existing.pk).update(**fields)
        for key, value in fields.items():
            setattr(existing, key, value)
        return existing
    step = Step(run=run, **fields)
    try:
        # No savepoint: a duplicate aborts the caller's whole checkpoint transaction.
        step.save(using=using, force_insert=True)
    except IntegrityError:
        raise LeaseLost(f"step {fields.get('name')!r} of run {run.pk} was recorded elsewhere")
    return step
