"""``send()``: validate, deduplicate by id, fan out to matching functions, in one transaction."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction

from . import clock, models, notify, waits
from .conf import db_alias, flow_settings
from .definitions.functions import registry
from .definitions.payloads import (
    RESERVED_PREFIX,
    Event,
    from_ms,
    # TEMPORARY re-exports for the engine during the redesign; removed when it lands.
    json_bytes,  # noqa: F401
    ms,
    normalise,
)
from .engine import flow_control


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
    normalised = [normalise(item, i, system=system) for i, item in enumerate(items)]
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
