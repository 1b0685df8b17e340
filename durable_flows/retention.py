"""Deleting old history in small batches, so that pruning never holds long locks."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from django.db import transaction
from django.db.models import Exists, OuterRef

from .conf import db_alias
from .models import FINISHED, Event, Run, Step


def prune(before: datetime, *, batch_size: int = 1000) -> Iterator[tuple[str, int]]:
    """Delete finished runs that ended before ``before`` (with their steps), then events
    received before it that no run references. Yields ``(table, rows deleted)`` per batch.
    """
    using = db_alias()
    old_runs = Run.objects.using(using).filter(status__in=FINISHED, ended_at__lt=before)
    while True:
        with transaction.atomic(using=using):
            ids = list(old_runs.order_by().values_list("pk", flat=True)[:batch_size])
            if not ids:
                break
            Step.objects.using(using).filter(run_id__in=ids).delete()
            Run.objects.using(using).filter(pk__in=ids).delete()
        yield "runs", len(ids)
    referenced = Run.objects.using(using).filter(event_id=OuterRef("pk"))
    old_events = (
        Event.objects.using(using).filter(received_at__lt=before).exclude(Exists(referenced))
    )
    while True:
        with transaction.atomic(using=using):
            ids = list(old_events.order_by().values_list("pk", flat=True)[:batch_size])
            if not ids:
                break
            Event.objects.using(using).filter(pk__in=ids).exclude(Exists(referenced)).delete()
        yield "events", len(ids)
