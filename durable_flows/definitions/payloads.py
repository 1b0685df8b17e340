"""Events as values: the ``Event`` dataclass, the checks an item to send must pass (its
data encoded by ``values``, checked by ``schemas``), and the names of the app's own
lifecycle events.

Nothing here stores anything: ``events.send()`` does, with these pieces.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from django.utils import timezone

from .. import clock
from ..conf import flow_settings
from ..durations import MAX_DURATION
from ..exceptions import EventTooLargeError, EventValidationError
from . import schemas
from .values import as_stored

# Names beginning with the prefix are the app's own events; senders may not use them.
RESERVED_PREFIX = "durable_flows/"
FINISHED_EVENT = RESERVED_PREFIX + "function.finished"
FAILED_EVENT = RESERVED_PREFIX + "function.failed"
CANCELLED_EVENT = RESERVED_PREFIX + "function.cancelled"
INVOKED_EVENT = RESERVED_PREFIX + "function.invoked"
SCHEDULED_EVENT = RESERVED_PREFIX + "scheduled.timer"


class StoredEvent(Protocol):
    """What ``Event.from_model`` reads from a stored event row."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def data(self) -> Any: ...
    @property
    def ts(self) -> int: ...


@dataclass
class Event:
    """An event to send, or the event a run received (``ctx.event``).

    Attributes:
        name: The event's name, such as ``"shop/order.placed"``; names beginning
            ``durable_flows/`` are reserved for the app's own events.
        data: A JSON object (at most ``MAX_EVENT_BYTES`` with the rest of the event);
            dates, times, ``Decimal`` and ``UUID`` in it are stored as strings. On a
            received event whose trigger is an event schema: an instance of it.
        id: A sender's id: the same id sent again within ``EVENT_DEDUP_SECONDS``
            stores nothing and starts nothing. On a received event: its stored id.
        ts: When the event happened, in milliseconds since the epoch or as an aware
            ``datetime``; a time in the future delays the runs it starts. Default: now.
    """

    name: str
    data: Any = field(default_factory=dict)
    id: str | None = None
    ts: int | datetime | None = None

    @classmethod
    def from_model(cls, event: StoredEvent) -> Event:
        return cls(name=event.name, data=event.data, id=event.id, ts=event.ts)


def ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def from_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=UTC)


def normalise(item: Any, index: int, *, system: bool) -> dict[str, Any]:
    """An item to send (an ``Event``, a mapping, or an instance of an event schema) checked
    and made plain: ``id``, ``name``, ``data`` (as it will be stored: dates, decimals...
    encoded) and ``ts`` (int milliseconds). Data must fit the schema registered for its
    name. ``index`` numbers it in errors; only ``system`` items may have a reserved name."""
    where = f"event {index}" if index else "event"
    if isinstance(item, Event):
        raw: Mapping[str, Any] = {
            "name": item.name,
            "data": item.data,
            "id": item.id,
            "ts": item.ts,
        }
    elif isinstance(item, Mapping):
        raw = item
    else:
        typed = schemas.typed_item(item, where)
        if typed is None:
            raise EventValidationError(
                f"{where}: expected an event object, got {type(item).__name__}"
            )
        raw = {"name": typed[0], "data": typed[1]}
    name = _text(raw, "name", where, required=True)
    if name.startswith(RESERVED_PREFIX) and not system:
        raise EventValidationError(f"{where}: names beginning {RESERVED_PREFIX!r} are reserved")
    data = raw.get("data")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise EventValidationError(
            f"{where}: 'data' must be a JSON object, not {type(data).__name__}"
        )
    event_id = _text(raw, "id", where, required=False)
    ts = _timestamp(raw.get("ts"), where)
    try:
        data, size = as_stored(data, root="data")
    except ValueError as exc:
        raise EventValidationError(f"{where} {name!r}: 'data' {exc}") from None
    schemas.check(name, data, where)
    size += len(name.encode()) + len((event_id or "").encode())
    if size > flow_settings.MAX_EVENT_BYTES:
        raise EventTooLargeError(
            f"{where} is {size} bytes, over MAX_EVENT_BYTES ({flow_settings.MAX_EVENT_BYTES})"
        )
    return {"id": event_id, "name": name, "data": data, "ts": ts}


def _text(raw: Mapping[str, Any], key: str, where: str, *, required: bool) -> Any:
    """``raw[key]``: a non-empty string of at most 255 characters that databases can store
    (None when absent and not required). The error names the field and what is wrong."""
    value = raw.get(key)
    if value is None:
        if required:
            raise EventValidationError(f"{where}: {key!r} is missing (a non-empty string)")
        return None
    if not isinstance(value, str):
        raise EventValidationError(
            f"{where}: {key!r} must be a non-empty string, not {type(value).__name__}"
        )
    if not value.strip():
        raise EventValidationError(f"{where}: {key!r} must be a non-empty string, got {value!r}")
    if len(value) > 255:
        raise EventValidationError(f"{where}: {key!r} is longer than 255 characters")
    if "\x00" in value:
        raise EventValidationError(f"{where}: {key!r} must not contain NUL characters")
    try:
        value.encode()
    except UnicodeEncodeError as exc:
        raise EventValidationError(
            f"{where}: {key!r} contains an unpaired surrogate ({value[exc.start]!r} at position "
            f"{exc.start}), which is not valid Unicode"
        ) from None
    return value


def _timestamp(ts: Any, where: str) -> int:
    """``ts`` as int milliseconds: given as such or as an aware datetime, from the epoch
    to ``MAX_DURATION`` after now (so that a delayed run's time can never overflow)."""
    now = clock.now()
    if ts is None:
        return ms(now)
    if isinstance(ts, datetime):
        if timezone.is_naive(ts):
            raise EventValidationError(f"{where}: 'ts' must be timezone-aware, got {ts!r}")
        value = ms(ts)
    elif isinstance(ts, int) and not isinstance(ts, bool):
        value = ts
    else:
        raise EventValidationError(
            f"{where}: 'ts' must be an integer of milliseconds since the epoch or an aware "
            f"datetime, not {type(ts).__name__} {ts!r}"[:300]
        )
    if value < 0:
        raise EventValidationError(f"{where}: 'ts' {value} is before the epoch (1970-01-01)")
    if value > ms(now + MAX_DURATION):
        raise EventValidationError(
            f"{where}: 'ts' {value} is too far in the future: at most 36500 days "
            "(about 100 years) from now"
        )
    return value
