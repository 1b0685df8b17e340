"""``send()``: validate, deduplicate by id, fan out to matching functions, in one transaction."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from . import clock, models, notify, waits
from .conf import db_alias, flow_settings
from .durations import MAX_DURATION
from .exceptions import EventTooLargeError, EventValidationError
from .registry import RESERVED_PREFIX, registry


@dataclass
class Event:
    """An event to send, or the event a run received (``ctx.event``)."""

    name: str
    data: dict[str, Any] = field(default_factory=dict)
    id: str | None = None
    ts: int | datetime | None = None

    @classmethod
    def from_model(cls, event: models.Event) -> Event:
        return cls(name=event.name, data=event.data, id=event.id, ts=event.ts)


def ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def from_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=UTC)


_ESCAPED_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")  # \u0000 not preceded by an odd \


def json_bytes(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON that every database can store, or ``ValueError``."""
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
        encoded = text.encode()
    except RecursionError:
        raise ValueError("is nested too deeply") from None
    except UnicodeEncodeError:
        raise ValueError("contains an unpaired surrogate, which is not valid Unicode") from None
    except (TypeError, ValueError) as exc:
        raise ValueError(f"is not JSON-serialisable: {exc}") from None
    if "\\u0000" in text and _ESCAPED_NUL.search(text):
        raise ValueError("contains a NUL character, which databases cannot store")
    return encoded


def _reject_constant(value: str) -> None:
    raise ValueError(f"{value} is not valid JSON")


def parse_json_body(body: bytes | str) -> Any:
    """Strict JSON for HTTP bodies: NaN and Infinity are refused."""
    return json.loads(body, parse_constant=_reject_constant)


def _normalise(item: Any, index: int, *, system: bool) -> dict[str, Any]:
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
        raise EventValidationError(f"{where}: expected an event object, got {type(item).__name__}")
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
        size = len(json_bytes(data))
    except ValueError as exc:
        raise EventValidationError(f"{where}: 'data' {exc}") from None
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


def send(events: Event | Mapping[str, Any] | Iterable[Event | Mapping[str, Any]]) -> list[str]:
    """Store events and start the runs they trigger; returns the event ids in order.

    Each id is the primary key of the stored event that stands for the item: a
    sender's ``id`` is used as the primary key of the first event stored with it;
    a duplicate within ``EVENT_DEDUP_SECONDS`` (24 h) returns the id of the event
    already stored and starts nothing; after the window the same sender ``id``
    stores a new event under a new id (a ULID), and the earlier one is left as
    it was. Inside ``transaction.atomic()`` the events and their runs commit or
    roll back with the caller.
    """
    return _send(events, system=False)


def _send(events: Any, *, system: bool) -> list[str]:
    if isinstance(events, Event | Mapping):
        items = [events]
    else:
        items = list(events)
    normalised = [_normalise(item, i, system=system) for i, item in enumerate(items)]
    if not normalised:
        return []
    using = db_alias()
    # A system event is sent inside the engine's own transaction: no savepoint.
    with transaction.atomic(using=using, savepoint=not system):
        return _store(normalised, using, system=system)


def _store(items: list[dict[str, Any]], using: str, *, system: bool) -> list[str]:
    """Insert the events that are new; never update a stored one (history is immutable)."""
    now = clock.now()
    given = sorted({item["id"] for item in items if item["id"]})
    taken, recent = _dedup_state(given, using, now) if given else (set(), {})
    fresh: list[models.Event] = []
    ids: list[str] = []
    for item in items:
        sender_id = item["id"]
        if sender_id in recent:  # within the window, or earlier in this batch
            ids.append(recent[sender_id])
            continue
        pk = models.new_id() if sender_id is None or sender_id in taken else sender_id
        row = models.Event(
            id=pk,
            sender_id=sender_id,
            name=item["name"],
            data=item["data"],
            ts=item["ts"],
            received_at=now,
        )
        fresh.append(row)
        ids.append(pk)
        if sender_id is not None:
            recent[sender_id] = pk
    # A row that lost a race for its primary key (a concurrent first sender of the
    # same id) is not stored: the winner's event has that id, so ``ids`` stands.
    events_stored(_insert(fresh, using, given), using, now)
    return ids


def _dedup_state(given: list[str], using: str, now: datetime) -> tuple[set[str], dict[str, str]]:
    """Which sender ids are taken as primary keys, and the events stored with each
    sender id within the window (sender id -> that event's id).

    The rows whose primary key is a sender id are locked first (in a fixed order):
    two senders reusing an id after its window are serialised on that row, so the
    second sees the first's new event and becomes its duplicate. (A sender id never
    seen has no row to lock; the primary key's uniqueness settles that race.)
    """
    events = models.Event.objects.using(using)
    taken = set(
        events.select_for_update().filter(pk__in=given).order_by("pk").values_list("pk", flat=True)
    )
    window_start = now - timedelta(seconds=flow_settings.EVENT_DEDUP_SECONDS)
    recent: dict[str, str] = {}
    rows = (
        events.filter(sender_id__in=given, received_at__gte=window_start)
        .order_by("sender_id", "-received_at", "-id")
        .values_list("sender_id", "id")
    )
    for sender_id, pk in rows:
        recent.setdefault(str(sender_id), pk)  # the latest stored with that sender id
    return taken, recent


def events_stored(stored: list[models.Event], using: str, now: datetime) -> None:
    """What follows storing events, in the same transaction: resolve the waits they
    match, then start the runs they trigger. (Waits first: an event resolves waits and
    cancel rules armed before it, never those of the runs it starts itself.)"""
    waits.deliver(stored, using, now)
    waits.arm_cancel_rules(_start_runs(stored, using, now), using)


def _insert(rows: list[models.Event], using: str, given: list[str]) -> list[models.Event]:
    """Insert new events; a concurrent sender of the same id wins, and ours becomes a duplicate."""
    if not rows:
        return []
    if not any(row.pk in given for row in rows):
        models.Event.objects.using(using).bulk_create(rows)  # fresh ULIDs cannot collide
        return rows
    try:
        with transaction.atomic(using=using):
            models.Event.objects.using(using).bulk_create(rows)
        return rows
    except IntegrityError:
        inserted = []
        for row in rows:
            try:
                with transaction.atomic(using=using):
                    row.save(using=using)
                inserted.append(row)
            except IntegrityError:
                continue
        return inserted


def _start_runs(events: list[models.Event], using: str, now: datetime) -> list[models.Run]:
    from .engine import flow_control

    pairs = []
    for event in events:
        for function in registry.matching(event.as_dict()):
            if event.name.startswith(RESERVED_PREFIX) and event.data.get("function_id") == (
                function.id
            ):
                continue  # a function is never triggered by its own lifecycle events
            pairs.append((event, function))
    controlled = [(e, f) for e, f in pairs if f.admission_controlled]
    if len(controlled) > 1:
        flow_control.lock_in_order(controlled, using)
    runs: list[models.Run] = []
    started: list[models.Run] = []  # saved already by flow control (a new batch)
    for event, function in pairs:
        available_at = max(now, from_ms(event.ts)) if event.ts > ms(now) else now
        if function.admission_controlled:
            run, saved = flow_control.admit(function, event, now, available_at, using)
            if run is None:
                continue
            if saved:
                started.append(run)
                continue
        else:
            run = models.Run.start(function, event, now, available_at)
        runs.append(run)
    if runs:
        models.Run.objects.using(using).bulk_create(runs)
    if runs or started:
        notify.work_available(using)
    return started + runs


def send_system(events: list[dict[str, Any]]) -> list[str]:
    """Send app lifecycle events (``{"name": "durable_flows/...", "data": ...}``); they
    join the caller's transaction."""
    return _send(events, system=True)
