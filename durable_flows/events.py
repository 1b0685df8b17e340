"""``send()``: validate events, then store them and start the runs they trigger, in one
transaction (the engine's ``outcomes.receive``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .definitions.payloads import Event
from .engine import outcomes


def send(events: Event | Mapping[str, Any] | Iterable[Event | Mapping[str, Any]]) -> list[str]:
    """Store events and start the runs they trigger; returns the event ids in order.

    Each id is the primary key of the stored event that stands for the item: a
    sender's ``id`` is used as the primary key of the first event stored with it;
    a duplicate within ``EVENT_DEDUP_SECONDS`` (24 h) returns the id of the event
    already stored and starts nothing; after the window the same sender ``id``
    stores a new event under a new id (a ULID), and the earlier one is left as
    it was. Inside ``transaction.atomic()`` the events and their runs commit or
    roll back with the caller.

    Args:
        events: A ``df.Event``, a dict with the same keys, or a list of them.

    Returns:
        The stored events' ids, one for each item, in order.

    Raises:
        EventValidationError: An item is not a valid event (nothing was stored).
        EventTooLargeError: An item is larger than ``MAX_EVENT_BYTES``.
    """
    return outcomes.send(events)
