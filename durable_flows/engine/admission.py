"""Admission: what happens when a run is created (``admit``, called for each function
an event triggers, inside the sender's transaction).

It applies the per-event rules: idempotency, rate limit, debounce, batching,
singleton, throttle, and stamps the run with its priority and concurrency keys.
Rules with state keep it in a ``FlowKey`` row, locked for the rest of the
sender's transaction so that senders of one key queue behind each other (a new
key never blocks anyone). Which admitted runs may be claimed is ``slots``'.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Exists, OuterRef, Q

from .. import clock, notify
from ..definitions.functions import Function
from ..definitions.options import PRIORITY_RANGE
from ..expressions import ExpressionError, evaluate
from ..models import Event, FlowKey, Run, RunEvent, RunStatus

IDEMPOTENCY_PERIOD = timedelta(hours=24)
ACTIVE = (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.WAITING)
# How many runnable rows one claim looks at when some of them may be over a limit.
CANDIDATES = 8
ROUNDS = 4


# --- keys -----------------------------------------------------------------------


def key_value(expression: str | None, payload: dict[str, Any]) -> str:
    """The value of a CEL key for an event, as text; a missing field gives ``""``."""
    value = _evaluate_key(expression, payload)
    return "" if value is None else value


def _evaluate_key(expression: str | None, payload: dict[str, Any]) -> str | None:
    if expression is None:
        return ""
    try:
        value = evaluate(expression, {"event": payload})
    except ExpressionError:
        return None
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def flow_key(rule: str, function_id: str, value: str) -> str:
    """A ``FlowKey``/concurrency key: readable when short, hashed past 255 characters."""
    key = f"{rule}:{function_id}:{value}"
    if len(key) > 255:
        key = key[:200] + "#" + hashlib.sha256(key.encode()).hexdigest()[:54]
    return key


def _lock(using: str, key: str) -> FlowKey:
    # Insert first: on SQLite that takes the write lock before reading; on
    # PostgreSQL the row then exists to be locked until the sender commits.
    rows = FlowKey.objects.using(using)
    while True:
        rows.bulk_create([FlowKey(key=key)], ignore_conflicts=True)
        row = rows.select_for_update().filter(key=key).first()
        if row is not None:
            return row
        # ``prune`` deleted it between the two statements: insert it again.


def prune(using: str) -> int:
    """Delete ``FlowKey`` rows that no longer hold anything a fresh row would not."""
    now = clock.now()
    finished = ~Exists(Run.objects.using(using).filter(pk=OuterRef("run_id"), status__in=ACTIVE))
    stale: Any = Q(key__startswith="idempotency:", expires_at__lt=now)
    for rule in ("rate_limit:", "throttle:", "throttle-start:"):
        stale |= Q(key__startswith=rule, tat__lt=now)
    for rule in ("debounce:", "batch:", "singleton:"):
        stale |= Q(key__startswith=rule) & (Q(run_id__isnull=True) | finished)
    return FlowKey.objects.using(using).filter(stale).delete()[0]


def _rule_keys(function: Function, payload: dict[str, Any]) -> list[str]:
    """The ``FlowKey`` rows that admitting this event to ``function`` may lock."""
    keys = []
    if function.idempotency:
        value = _evaluate_key(function.idempotency, payload)
        if value:
            keys.append(flow_key("idempotency", function.id, value))
    rules = (
        ("rate_limit", function.rate_limit),
        ("batch", function.batch_events),
        ("debounce", function.debounce),
        ("singleton", function.singleton),
        ("throttle", function.throttle),
    )
    for name, rule in rules:
        if rule is not None:
            keys.append(flow_key(name, function.id, key_value(rule.key, payload)))
    return keys


def lock_in_order(pairs: list[tuple[Event, Function]], using: str) -> None:
    """Lock, in key order, every ``FlowKey`` a send of several events will touch.

    Two senders locking the same keys in different orders would deadlock;
    sorted, the second one simply waits.
    """
    keys = sorted(
        {key for event, function in pairs for key in _rule_keys(function, event.as_dict())}
    )
    if len(keys) < 2:
        return
    rows = FlowKey.objects.using(using)
    rows.bulk_create([FlowKey(key=key) for key in keys], ignore_conflicts=True)
    list(rows.filter(key__in=keys).order_by("key").select_for_update().values_list("key"))


# --- admission ----------------------------------------------------------------


def admit(
    function: Function,
    event: Event,
    now: datetime,
    available_at: datetime,
    using: str,
    cancel: Callable[[str], Any],
) -> tuple[Run | None, bool]:
    """Apply ``function``'s rules to a new event: returns (run, already_saved).

    ``run`` is None when the event starts no run of its own (a duplicate
    idempotency key, or an event added to a pending debounced run or batch).
    ``cancel(run_id)`` cancels the run a singleton in "cancel" mode replaces.
    """
    payload = event.as_dict()
    run = Run.start(function, event, now, available_at)
    stamp(function, run, payload)
    # An idempotency key that does not evaluate (a missing field) deduplicates nothing.
    value = _evaluate_key(function.idempotency, payload) if function.idempotency else None
    if value:
        row = _lock(using, flow_key("idempotency", function.id, value))
        if row.expires_at is not None and row.expires_at > now:
            return None, False
        row.expires_at, row.run_id = now + IDEMPOTENCY_PERIOD, run.pk
        row.save(using=using)
    if function.rate_limit and not _rate_allows(function, payload, now, using):
        return _skipped(run, now), False
    if function.batch_events:
        return _batch(function, run, event, payload, now, using)
    if function.debounce:
        debounced = _debounce(function, run, event, payload, now, using)
        if debounced is None:
            return None, False
        run = debounced
    if function.singleton and not _singleton_admits(function, run, payload, using, cancel):
        return _skipped(run, now), False
    if function.throttle:
        run.available_at = _throttle(function, run, payload, run.available_at or now, using)
    return run, False


def stamp(function: Function, run: Run, payload: dict[str, Any]) -> None:
    """Set the run's concurrency keys and priority from its event."""
    for index, limit in enumerate(function.concurrency):
        key = flow_key(f"concurrency.{index}", function.id, key_value(limit.key, payload))
        if index == 0:
            run.concurrency_key, run.concurrency_limit = key, limit.limit
        else:
            run.concurrency_key_2, run.concurrency_limit_2 = key, limit.limit
    rule = function.singleton
    if rule is not None and rule.mode == "cancel" and len(function.concurrency) < 2:
        # A slot of one: the new run starts once the cancelled one has stopped
        # (it finishes the step in hand first), never beside it.
        key = flow_key("singleton-slot", function.id, key_value(rule.key, payload))
        if run.concurrency_key is None:
            run.concurrency_key, run.concurrency_limit = key, 1
        else:
            run.concurrency_key_2, run.concurrency_limit_2 = key, 1
    if function.priority and function.priority.run:
        run.priority = _priority(function.priority.run, payload)


def _priority(expression: str, payload: dict[str, Any]) -> int:
    # As Inngest: an expression that fails or is not a number gives 0.
    try:
        value = evaluate(expression, {"event": payload})
    except ExpressionError:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return max(-PRIORITY_RANGE, min(PRIORITY_RANGE, int(value)))


def _skipped(run: Run, now: datetime) -> Run:
    run.status = RunStatus.SKIPPED
    run.available_at = None
    run.ended_at = now
    return run


def _rate_allows(function: Function, payload: dict[str, Any], now: datetime, using: str) -> bool:
    """GCRA: ``limit`` runs per ``period``, in a burst or spread out."""
    rule = function.rate_limit
    assert rule is not None
    period: timedelta = rule.period  # type: ignore[assignment]  # normalised by __post_init__
    row = _lock(using, flow_key("rate_limit", function.id, key_value(rule.key, payload)))
    interval = period / rule.limit
    tat = max(row.tat or now, now)
    if tat - now > period - interval:
        return False
    row.tat = tat + interval
    row.save(using=using)
    return True


def _throttle(
    function: Function, run: Run, payload: dict[str, Any], due: datetime, using: str
) -> datetime:
    """GCRA again, but late arrivals are delayed rather than dropped: returns the start time.

    This plans the starts when the runs are created; ``_throttle_start`` checks
    them again when they are claimed, so a backlog (workers were down) does not
    start all at once.
    """
    rule = function.throttle
    assert rule is not None
    value = key_value(rule.key, payload)
    run.throttle_key = flow_key("throttle-start", function.id, value)
    row = _lock(using, flow_key("throttle", function.id, value))
    start, row.tat = gcra_schedule(rule, row.tat, due)
    row.save(using=using)
    return start


def gcra_schedule(rule: Any, tat: datetime | None, now: datetime) -> tuple[datetime, datetime]:
    """(earliest conforming start, the new theoretical arrival time) for one more start."""
    # As Inngest: after a quiet spell, ``burst`` more than the one may start at once.
    interval = rule.period / rule.limit
    tat = max(tat or now, now)
    return max(now, tat - interval * rule.burst), tat + interval


def _debounce(
    function: Function, run: Run, event: Event, payload: dict[str, Any], now: datetime, using: str
) -> Run | None:
    rule = function.debounce
    assert rule is not None
    period: timedelta = rule.period  # type: ignore[assignment]
    timeout: timedelta | None = rule.timeout  # type: ignore[assignment]
    row = _lock(using, flow_key("debounce", function.id, key_value(rule.key, payload)))
    if row.run_id and row.opened_at:
        due = now + period
        if timeout is not None:
            due = min(due, row.opened_at + timeout)
        # Only a run no worker has started yet takes the newer event (the
        # update also locks it against a claim until the sender commits).
        moved = (
            Run.objects.using(using)
            .filter(pk=row.run_id, status=RunStatus.QUEUED, started_at__isnull=True)
            .update(event=event, available_at=due, updated_at=now)
        )
        if moved:
            return None
    run.available_at = max(run.available_at or now, now + period)
    row.run_id, row.opened_at = run.pk, now
    row.save(using=using)
    return run


def _batch(
    function: Function, run: Run, event: Event, payload: dict[str, Any], now: datetime, using: str
) -> tuple[Run | None, bool]:
    rule = function.batch_events
    assert rule is not None
    timeout: timedelta = rule.timeout  # type: ignore[assignment]
    row = _lock(using, flow_key("batch", function.id, key_value(rule.key, payload)))
    runs = Run.objects.using(using)
    if row.run_id and (
        runs.filter(pk=row.run_id, status=RunStatus.QUEUED, started_at__isnull=True).update(
            updated_at=now
        )
    ):
        RunEvent.objects.using(using).create(run_id=row.run_id, event=event, position=row.size)
        row.size += 1
        if row.size >= rule.max_size:
            runs.filter(pk=row.run_id).update(available_at=now)
            row.run_id, row.size = None, 0
            notify.work_available(using)
        row.save(using=using)
        return None, False
    full = rule.max_size == 1
    run.available_at = now if full else now + timeout
    if function.throttle:
        run.available_at = _throttle(function, run, payload, run.available_at, using)
    run.save(using=using, force_insert=True)
    RunEvent.objects.using(using).create(run=run, event=event, position=0)
    row.run_id, row.size = (None, 0) if full else (run.pk, 1)
    row.save(using=using)
    return run, True


def _singleton_admits(
    function: Function,
    run: Run,
    payload: dict[str, Any],
    using: str,
    cancel: Callable[[str], Any],
) -> bool:
    rule = function.singleton
    assert rule is not None
    row = _lock(using, flow_key("singleton", function.id, key_value(rule.key, payload)))
    if row.run_id and Run.objects.using(using).filter(pk=row.run_id, status__in=ACTIVE).exists():
        if rule.mode == "skip":
            return False
        cancel(row.run_id)
    row.run_id = run.pk
    row.save(using=using)
    return True


def batch_events(run: Run, using: str) -> list[Event]:
    """The events of a batched run, first to last."""
    rows = RunEvent.objects.using(using).filter(run_id=run.pk).select_related("event")
    return [row.event for row in rows]
