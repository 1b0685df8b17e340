"""Starting cron-triggered runs: exactly one run per tick, however many workers.

Every worker calls ``schedule_due()`` about twice a second. For each function
with ``TriggerCron`` triggers it finds the latest tick that is due and, if it
is newer than the last one recorded, inserts a ``CronTick`` row: the unique
(function, tick) constraint lets exactly one worker win, and that worker
creates the run in the same transaction.

Missed ticks (every worker was down): only the most recent missed tick runs,
once, when a worker is back; older ones are skipped, never started as a burst.
A schedule seen for the first time (a new deployment) starts at its next tick:
the current tick is recorded as a baseline without a run.
"""

from __future__ import annotations

from datetime import datetime

from django.db import IntegrityError, transaction

from . import notify
from .definitions.functions import Function, registry
from .definitions.payloads import SCHEDULED_EVENT, ms
from .engine import waits
from .models import CronTick, Event, Run


def _latest_due(function: Function, now: datetime) -> tuple[datetime, str]:
    ticks = [(trigger.schedule.previous(now), trigger.cron) for trigger in function.crons]
    return max(ticks)


def schedule_due(using: str, now: datetime) -> int:
    """Start the runs of cron ticks that are due; returns how many were started."""
    started = 0
    for function in registry.all():
        if not function.crons:
            continue
        due, cron = _latest_due(function, now)
        ticks = CronTick.objects.using(using).filter(function_id=function.id)
        last = ticks.order_by("-tick").values_list("tick", flat=True).first()
        if last is not None and due <= last:
            continue
        if _start_tick(function, due, cron, using, now):
            started += 1
    return started


def _start_tick(function: Function, due: datetime, cron: str, using: str, now: datetime) -> bool:
    with transaction.atomic(using=using):
        tick = CronTick(function_id=function.id, tick=due, created_at=now)
        try:
            with transaction.atomic(using=using):
                tick.save(using=using, force_insert=True)
        except IntegrityError:
            return False  # another worker has this tick
        earlier = CronTick.objects.using(using).filter(function_id=function.id, tick__lt=due)
        if not earlier.exists():
            return False  # first sight of this function's schedule: a baseline, no run
        event = Event(
            name=SCHEDULED_EVENT,
            data={"function_id": function.id, "cron": cron, "tick": due.isoformat()},
            ts=ms(due),
            received_at=now,
        )
        event.save(using=using, force_insert=True)
        run = Run.start(function, event, now)
        run.save(using=using, force_insert=True)
        waits.arm_cancel_rules([run], using)
        CronTick.objects.using(using).filter(pk=tick.pk).update(run=run)
        notify.work_available(using)
    return True
