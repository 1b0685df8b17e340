"""Helpers for your own tests of durable functions.

``run_until_idle()`` executes every runnable run in the calling thread, so it
works inside a test's transaction (``pytest.mark.django_db`` or ``TestCase``).
``advance()`` moves the engine's clock forward, so that a run sleeping for a
week (or waiting for an event until a timeout) is due at once::

    run_until_idle()              # the run reaches ctx.step.sleep("wait", "7d")
    with time_machine():          # the clock is put back on exit
        advance("7d")
        run_until_idle()          # the run wakes up and finishes
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from . import clock
from .conf import db_alias
from .durations import parse_duration
from .models import Run, RunStatus
from .worker import Worker


def run_until_idle(*, queues: list[str] | None = None) -> int:
    """Execute runnable runs (and those they make runnable) until none is left.

    Returns how many run executions took place. Sleeping and waiting runs that
    are not due yet are left as they are; due cron ticks and timeouts are handled.
    """
    return Worker(queues=queues, burst=True, name="durable_flows.testing").drain()


def now() -> datetime:
    """The engine's current time (the real time plus any ``advance()``)."""
    return clock.now()


def advance(by: timedelta | str) -> datetime:
    """Move the engine's clock forward by ``by`` (``timedelta`` or ``"7d"``); returns the new now.

    Affects this process only (``run_until_idle()``, ``send()``, ``cancel()``...),
    not ``runflows`` processes. Undo it with ``reset_clock()`` or ``time_machine()``.
    """
    delta = parse_duration(by, what="advance(by)")
    clock.advance(delta)
    return clock.now()


def advance_to_next_wake() -> datetime | None:
    """Move the clock to the next time a sleeping or waiting run is due (a sleep ending,
    a timeout); returns that time, or None (and leaves the clock) if no run has one."""
    current = clock.now()
    upcoming = (
        Run.objects.using(db_alias())
        .filter(status__in=[RunStatus.QUEUED, RunStatus.WAITING], available_at__gt=current)
        .order_by("available_at")
        .values_list("available_at", flat=True)
        .first()
    )
    if upcoming is None:
        return None
    clock.advance(upcoming - current)
    return upcoming


def reset_clock() -> None:
    """Put the engine's clock back to the real time."""
    clock.reset()


@contextmanager
def time_machine(by: timedelta | str | None = None) -> Iterator[None]:
    """Within the block, ``advance()`` freely (and optionally start ``by`` ahead); the clock
    is put back as it was on exit."""
    saved = clock.offset()
    try:
        if by is not None:
            advance(by)
        yield
    finally:
        clock.reset()
        clock.advance(saved)
