"""The inbox: storing sent events, each once. A sender's id deduplicates within
``EVENT_DEDUP_SECONDS``; a stored event never changes. (What storing an event
sets off, waits resolved and runs started, is ``outcomes.receive``'s.)"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction

from .. import clock
from ..conf import flow_settings
from ..models import Event, new_id


def store(items: list[dict[str, Any]], using: str) -> tuple[list[str], list[Event]]:
    """Insert the events that are new; never update a stored one (history is immutable)."""
    now = clock.now()
    given = sorted({item["id"] for item in items if item["id"]})
    taken, recent = _dedup_state(given, using, now) if given else (set(), {})
    fresh: list[Event] = []
    ids: list[str] = []
    for item in items:
        sender_id = item["id"]
        if sender_id in recent:  # within the window, or earlier in this batch
            ids.append(recent[sender_id])
            continue
        pk = new_id() if sender_id is None or sender_id in taken else sender_id
        row = Event(
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
    return ids, _insert(fresh, using, given)


def _dedup_state(given: list[str], using: str, now: datetime) -> tuple[set[str], dict[str, str]]:
    """Which sender ids are taken as primary keys, and the events stored with each
    sender id within the window (sender id -> that event's id).

    The rows whose primary key is a sender id are locked first (in a fixed order):
    two senders reusing an id after its window are serialised on that row, so the
    second sees the first's new event and becomes its duplicate. (A sender id never
    seen has no row to lock; the primary key's uniqueness settles that race.)
    """
    events = Event.objects.using(using)
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


def _insert(rows: list[Event], using: str, given: list[str]) -> list[Event]:
    """Insert new events; a concurrent sender of the same id wins, and ours becomes a duplicate."""
    if not rows:
        return []
    if not any(row.pk in given for row in rows):
        Event.objects.using(using).bulk_create(rows)  # fresh ULIDs cannot collide
        return rows
    try:
        with transaction.atomic(using=using):
            Event.objects.using(using).bulk_create(rows)
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
