"""Periodic work every worker does (about twice a second): cron ticks and timeouts.

Each part is safe to run on any number of workers at once: cron ticks are
claimed through a unique constraint, timeouts through conditional updates.
"""

from __future__ import annotations

import logging

from . import clock, scheduler
from .engine import timeouts

log = logging.getLogger("durable_flows.worker")


def run(using: str) -> int:
    """Do what is due now; returns how many runs were started or cancelled."""
    now = clock.now()
    started = scheduler.schedule_due(using, now)
    if started:
        log.info("cron: started %d run(s)", started)
    cancelled = timeouts.sweep(using, now)
    if cancelled:
        log.info("timeouts: cancelled %d run(s)", cancelled)
    return started + cancelled
