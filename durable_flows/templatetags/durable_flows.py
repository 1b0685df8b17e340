"""Tags and filters for the dashboard and the admin: bounded JSON, durations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django import template
from django.utils.safestring import SafeString

from .. import display

register = template.Library()


def _raw_url(field: str | None, step: Any = None) -> str | None:
    """The raw JSON of a value on this page: the page's own URL with ``?json=``."""
    if not field:
        return None
    query = {"json": field} if step is None else {"json": field, "step": step}
    return "?" + urlencode(query)


@register.simple_tag
def json_block(value: Any, field: str | None = None, step: Any = None) -> SafeString:
    """``value`` pretty-printed within the page's budget; ``field`` names its raw JSON."""
    return display.json_block(value, _raw_url(field, step))


@register.simple_tag
def error_block(error: Any, field: str | None = None, step: Any = None) -> SafeString:
    return display.error_block(error, _raw_url(field, step))


@register.filter
def one_line(value: Any) -> str:
    return display.one_line(value)


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


@register.filter
def epoch_ms(value: Any) -> str:
    """An event's ``ts`` (milliseconds since the epoch) as a UTC date and time."""
    try:
        moment = datetime.fromtimestamp(int(value) / 1000, UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return str(value)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"
