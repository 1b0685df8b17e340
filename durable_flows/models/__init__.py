"""The app's tables, one module per concept; import them from here."""

from .cron import CronTick
from .events import Event
from .flow import FlowKey, RunEvent, StepTask, StepTaskStatus
from .ids import FlowManager, new_id
from .keys import EventKey, EventKeyQuerySet
from .runs import CLAIMABLE, FINISHED, Run, RunQuerySet, RunStatus
from .signals import Signal
from .steps import Step, StepKind, StepStatus
from .waits import Wait, WaitKind, WaitPath, WaitStatus
from .workers import Worker

__all__ = [
    "CLAIMABLE",
    "FINISHED",
    "CronTick",
    "Event",
    "EventKey",
    "EventKeyQuerySet",
    "FlowKey",
    "FlowManager",
    "Run",
    "RunEvent",
    "RunQuerySet",
    "RunStatus",
    "Signal",
    "Step",
    "StepKind",
    "StepStatus",
    "StepTask",
    "StepTaskStatus",
    "Wait",
    "WaitKind",
    "WaitPath",
    "WaitStatus",
    "Worker",
    "new_id",
]
