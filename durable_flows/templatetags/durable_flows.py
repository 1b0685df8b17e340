"""Filters for the dashboard and the admin: JSON, durations, statuses."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from django import template

register = template.Library()


@register.filter
def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


def format_duration(delta: timedelta | None) -> str:
    if delta is None:
        return ""
    seconds = delta.total_seconds()
    if seconds < 0:
        return "0 ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, seconds = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {seconds}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes}m"
    return f"{hours // 24}d {hours % 24}h"


@register.filter
def duration(delta: timedelta | None) -> str:
    return format_duration(delta)


@register.simple_tag
def between(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return ""
    return format_duration(end - start)
