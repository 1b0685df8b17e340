"""``ctx.patched(change_id)``: changing a function's code while runs of it are in flight.

The answer is True for a run that reaches the call for the first time, and False for a
run that had already recorded steps past this point before the change existed (it
started under the old code and must keep its old path). It is recorded once per run,
as a step named ``patch:<change_id>``, and the same on every replay.
"""

from __future__ import annotations

import re

from django.db import transaction

from .. import clock
from ..exceptions import StepUsageError
from ..models import StepKind, StepStatus
from .signals import Runner
from .waiting import Checkpoint

_CHANGE_ID = re.compile(r"^[A-Za-z0-9._:/-]{1,200}$")


def patched(exe: Runner, change_id: str) -> bool:
    if not isinstance(change_id, str) or not _CHANGE_ID.match(change_id):
        raise StepUsageError(
            f"patched(change_id) must be 1-200 letters, digits or ._:/- , got {change_id!r}"
        )
    step_id = f"patch:{change_id}"
    first = exe.memos.get(step_id)
    if first is not None and step_id in exe.seen:  # asked again in this execution
        return bool(first.output)
    name, position, memo = exe.reach(step_id, StepKind.PATCH)
    if memo is not None and memo.status == StepStatus.COMPLETED:
        return bool(memo.output)
    # Steps recorded at or after this point: the run got there under the old code.
    old = any(
        other.position >= position and other.kind != StepKind.PATCH for other in exe.memos.values()
    )
    exe.boundary()
    cp = Checkpoint(exe, name, position, StepKind.PATCH, memo, clock.now())
    with transaction.atomic(using=exe.using):
        cp.fence()
        cp.save(StepStatus.COMPLETED, output=not old)
    return not old
