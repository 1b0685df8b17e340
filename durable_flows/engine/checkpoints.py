"""Checkpoints: a step's result, validated as JSON, and its record."""

from __future__ import annotations

import json
from typing import Any

from django.db import IntegrityError

from .. import storage
from ..conf import flow_settings
from ..definitions.payloads import json_bytes
from ..exceptions import LeaseLost, StepOutputError
from ..models import Run, Step


def encode_output(value: Any, *, what: str = "step result") -> Any:
    """Validate a result as JSON within MAX_STEP_OUTPUT_BYTES; return it as replay will see it."""
    try:
        encoded = json_bytes(value)
    except ValueError as exc:
        raise StepOutputError(f"{what} {exc}") from None
    limit = flow_settings.MAX_STEP_OUTPUT_BYTES
    if len(encoded) > limit:
        raise StepOutputError(
            f"{what} is {len(encoded)} bytes, over MAX_STEP_OUTPUT_BYTES ({limit})"
        )
    return json.loads(encoded)


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
