"""The engine's one source of "now", so tests can move time forward.

``durable_flows.testing`` offsets it; everything in the engine that decides
whether something is due asks this module, never ``timezone.now()`` directly.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

_offset = timedelta(0)


def now() -> datetime:
    return timezone.now() + _offset


def advance(delta: timedelta) -> None:
    global _offset
    _offset += delta


def reset() -> None:
    global _offset
    _offset = timedelta(0)


def offset() -> timedelta:
    """How far ``now()`` is ahead of the real time."""
    return _offset
