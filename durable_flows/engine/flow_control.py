"""Flow control: what happens when a run is created, and which runs may be claimed.

Admission (``admit``, called by ``send()`` for each matching function, inside
the sender's transaction) applies the per-event rules: idempotency, rate
limit, debounce, batching, singleton, throttle, and stamps the run with its
priority and concurrency keys. Rules with state keep it in a ``FlowKey`` row,
locked for the rest of the sender's transaction so that senders of one key
queue behind each other (a new key never blocks anyone).

Concurrency (``pick``, called by ``state.claim`` when a claimable function has
a limit): a run (or a parallel step task) holds a slot of each of its keys
while it is ``running``; sleeping and waiting runs hold none. The slots in use
are counted from those rows, so nothing has to be given back when a worker
dies: its runs stop counting as soon as they are requeued. Claiming skips keys
that are full; on PostgreSQL a candidate's keys are then locked with
``pg_try_advisory_xact_lock`` (a key being claimed by another worker is
skipped, not waited for) and re-counted before the lease is written, so two
workers can never both take the last slot. SQLite has a single writer, so the
count inside the claim transaction is already exact.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from django.db import connections
from django.db.models import Exists, F, OuterRef, Q, QuerySet

from .. import clock
from ..expressions import ExpressionError, evaluate
from ..models import Event, FlowKey, Run, RunEvent, RunStatus, StepTask
from ..registry import PRIORITY_RANGE, Function, registry

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
    function: Function, event: Event, now: datetime, available_at: datetime, using: str
) -> tuple[Run | None, bool]:
    """Apply ``function``'s rules to a new event: returns (run, already_saved).

    ``run`` is None when the event starts no run of its own (a duplicate
    idempotency key, or an event added to a pending debounced run or batch).
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
    if function.singleton and not _singleton_admits(function, run, payload, using):
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
    start, row.tat = _gcra_schedule(rule, row.tat, due)
    row.save(using=using)
    return start


def _gcra_schedule(rule: Any, tat: datetime | None, now: datetime) -> tuple[datetime, datetime]:
    """(earliest conforming start, the new theoretical arrival time) for one more start."""
    # As Inngest: after a quiet spell, ``burst`` more than the one may start at once.
    interval = rule.period / rule.limit
    tat = max(tat or now, now)
    return max(now, tat - interval * rule.burst), tat + interval


def _throttle_start(using: str, row_id: str, function_id: str, key: str, now: datetime) -> bool:
    """At claim: may this run start now? If not, it is put back until it may."""
    function = registry.get(function_id)
    if function is None or function.throttle is None:
        return True
    FlowKey.objects.using(using).bulk_create([FlowKey(key=key)], ignore_conflicts=True)
    rows = FlowKey.objects.using(using).filter(key=key)
    if connections[using].vendor == "postgresql":
        rows = rows.select_for_update(skip_locked=True)
    row = rows.first()
    if row is None:
        return False  # another worker is starting a run of this key
    start, tat = _gcra_schedule(function.throttle, row.tat, now)
    if start > now:
        Run.objects.using(using).filter(pk=row_id).update(available_at=start)
        return False
    row.tat = tat
    row.save(using=using)
    return True


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
    from .. import notify

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


def _singleton_admits(function: Function, run: Run, payload: dict[str, Any], using: str) -> bool:
    rule = function.singleton
    assert rule is not None
    row = _lock(using, flow_key("singleton", function.id, key_value(rule.key, payload)))
    if row.run_id and Run.objects.using(using).filter(pk=row.run_id, status__in=ACTIVE).exists():
        if rule.mode == "skip":
            return False
        from ..control import cancel

        cancel(row.run_id)
    row.run_id = run.pk
    row.save(using=using)
    return True


def batch_events(run: Run, using: str) -> list[Event]:
    """The events of a batched run, first to last."""
    rows = RunEvent.objects.using(using).filter(run_id=run.pk).select_related("event")
    return [row.event for row in rows]


# --- concurrency slots --------------------------------------------------------


def limits_claims(function_ids: list[str]) -> bool:
    """Must claiming look at concurrency slots or throttles (else it is a plain SKIP LOCKED)?"""
    for function_id in function_ids:
        function = registry.get(function_id)
        if function is not None and (
            function.concurrency
            or function.throttle
            or (function.singleton and function.singleton.mode == "cancel")
        ):
            return True
    return False


def _slot_sql(using: str, keys: list[str] | None) -> tuple[str, list[Any]]:
    connection = connections[using]
    quote = connection.ops.quote_name
    parts, params = [], []
    for model in (Run, StepTask):
        table = quote(model._meta.db_table)
        for column, limit in (
            ("concurrency_key", "concurrency_limit"),
            ("concurrency_key_2", "concurrency_limit_2"),
        ):
            where = f"status = %s AND {column} IS NOT NULL"
            params.append(RunStatus.RUNNING.value)
            if keys is not None:
                where += f" AND {column} IN ({', '.join(['%s'] * len(keys))})"
                params.extend(keys)
            parts.append(f"SELECT {column} AS k, {limit} AS l FROM {table} WHERE {where}")  # noqa: S608
    sql = f"SELECT k, MAX(l), COUNT(*) FROM ({' UNION ALL '.join(parts)}) slots GROUP BY k"  # noqa: S608
    return sql, params


def slots_in_use(using: str, keys: list[str] | None = None) -> dict[str, tuple[int, int]]:
    """``{key: (limit, running)}`` over running runs and step tasks (of ``keys``, or all)."""
    sql, params = _slot_sql(using, keys)
    with connections[using].cursor() as cursor:
        cursor.execute(sql, params)
        return {key: (limit, count) for key, limit, count in cursor.fetchall()}


def pick(using: str, runnable: QuerySet, limit: int) -> list[str]:
    """Inside the claim transaction: ids of up to ``limit`` runnable rows with a free slot.

    Keys found full (or being claimed by another worker) are excluded and the
    search goes on, a few rounds at most, so that a long FIFO backlog of one key
    does not hide the runnable work of the others behind it.
    """
    postgres = connections[using].vendor == "postgresql"
    if connections[using].vendor == "sqlite":
        # Write first, as ``state.claim`` does, so that the transaction holds
        # the write lock before it reads (even without transaction_mode IMMEDIATE).
        Run.objects.using(using).filter(pk="").update(updated_at=F("updated_at"))
    full = {key for key, (cap, count) in slots_in_use(using).items() if count >= cap}
    throttled = runnable.model is Run
    fields = ["id", "concurrency_key", "concurrency_limit", "concurrency_key_2"]
    fields += ["concurrency_limit_2", "function_id"]
    fields += ["throttle_key", "started_at"] if throttled else []
    chosen: list[str] = []
    passed: list[str] = []
    taken: Counter[str] = Counter()
    now = clock.now()
    for _ in range(ROUNDS):
        query = runnable
        if full:
            query = query.exclude(concurrency_key__in=full).exclude(concurrency_key_2__in=full)
        if passed or chosen:
            query = query.exclude(id__in=passed + chosen)
        if postgres:
            query = query.select_for_update(skip_locked=True)
        candidates = list(query.values_list(*fields)[: max(limit, CANDIDATES)])
        for row_id, key1, cap1, key2, cap2, function_id, *start in candidates:
            keys = [(k, c) for k, c in ((key1, cap1), (key2, cap2)) if k]
            if keys and not _slots_free(using, keys, taken, full, postgres):
                continue
            if start and start[0] and start[1] is None:  # a throttled run's first start
                if not _throttle_start(using, row_id, function_id, start[0], now):
                    passed.append(row_id)
                    continue
            taken.update(k for k, _ in keys)
            chosen.append(row_id)
            if len(chosen) >= limit:
                return chosen
        if chosen or len(candidates) < max(limit, CANDIDATES):
            break
    return chosen


def _slots_free(
    using: str, keys: list[tuple[str, int]], taken: Counter[str], full: set[str], postgres: bool
) -> bool:
    if any(k in full for k, _ in keys):
        return False
    if postgres:
        for k, _ in keys:
            if not _try_lock(using, k):
                full.add(k)  # another worker is claiming this key right now
                return False
    used = slots_in_use(using, [k for k, _ in keys])
    for k, cap in keys:
        if used.get(k, (cap, 0))[1] + taken[k] >= cap:
            full.add(k)
            return False
    return True


def _try_lock(using: str, key: str) -> bool:
    with connections[using].cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(hashtextextended(%s, 0))", [key])
        return bool(cursor.fetchone()[0])
