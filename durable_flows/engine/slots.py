"""Slots: which runs may be claimed when a function has a concurrency limit or a
throttle (``pick``, called by ``leases.claim``).

A run (or a parallel step task) holds a slot of each of its keys while it is
``running``; sleeping and waiting runs hold none. The slots in use are counted
from those rows, so nothing has to be given back when a worker dies: its runs
stop counting as soon as they are requeued. Claiming skips keys that are full;
where the storage has row locks, a candidate's keys are then locked
(``Storage.try_lock``: a key being claimed by another worker is skipped, not
waited for) and re-counted before the lease is written, so two workers can never
both take the last slot. SQLite has a single writer, so the count inside the
claim transaction is already exact.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from django.db.models import QuerySet

from .. import clock, storage
from ..definitions.functions import registry
from ..models import FlowKey, Run
from .admission import gcra_schedule

# How many runnable rows one claim looks at when some of them may be over a limit.
CANDIDATES = 8
ROUNDS = 4


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


def slots_in_use(using: str, keys: list[str] | None = None) -> dict[str, tuple[int, int]]:
    """``{key: (limit, running)}`` over running runs and step tasks (of ``keys``, or all)."""
    return storage.of(using).slots_in_use(keys)


def pick(using: str, runnable: QuerySet, limit: int) -> list[str]:
    """Inside the claim transaction: ids of up to ``limit`` runnable rows with a free slot.

    Keys found full (or being claimed by another worker) are excluded and the
    search goes on, a few rounds at most, so that a long FIFO backlog of one key
    does not hide the runnable work of the others behind it.
    """
    store = storage.of(using)
    store.lock_for_write()  # it reads, then writes the leases
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
        query = store.skip_locked(query)
        candidates = list(query.values_list(*fields)[: max(limit, CANDIDATES)])
        for row_id, key1, cap1, key2, cap2, function_id, *start in candidates:
            keys = [(k, c) for k, c in ((key1, cap1), (key2, cap2)) if k]
            if keys and not _slots_free(using, keys, taken, full):
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
    using: str, keys: list[tuple[str, int]], taken: Counter[str], full: set[str]
) -> bool:
    if any(k in full for k, _ in keys):
        return False
    for k, _ in keys:
        if not storage.of(using).try_lock(k):
            full.add(k)  # another worker is claiming this key right now
            return False
    used = slots_in_use(using, [k for k, _ in keys])
    for k, cap in keys:
        if used.get(k, (cap, 0))[1] + taken[k] >= cap:
            full.add(k)
            return False
    return True


def _throttle_start(using: str, row_id: str, function_id: str, key: str, now: datetime) -> bool:
    """At claim: may this run start now? If not, it is put back until it may."""
    function = registry.get(function_id)
    if function is None or function.throttle is None:
        return True
    FlowKey.objects.using(using).bulk_create([FlowKey(key=key)], ignore_conflicts=True)
    row = storage.of(using).skip_locked(FlowKey.objects.using(using).filter(key=key)).first()
    if row is None:
        return False  # another worker is starting a run of this key
    start, tat = gcra_schedule(function.throttle, row.tat, now)
    if start > now:
        Run.objects.using(using).filter(pk=row_id).update(available_at=start)
        return False
    row.tat = tat
    row.save(using=using)
    return True
