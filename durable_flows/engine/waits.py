"""Runs waiting for events: ``wait_for_event`` steps and ``cancel=`` rules.

Every armed wait is a ``Wait`` row. ``send()`` calls ``deliver()`` in its
transaction: it computes, for the few match paths in use for an event's name
(``WaitPath``), the keys the event would match, and finds candidate waits with
one index probe on (event_name, match_key) over pending rows only. So its cost
does not grow with the number of runs waiting on other keys; ``if_exp`` is
evaluated only for the candidates found on that event name.

Races: a wait is resolved by a conditional update (pending -> resolved) and
timed out by one (pending -> timed_out); whoever loses reads the winner's
outcome. Locks are taken run first, then wait, as the worker does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from .. import notify, storage
from ..definitions.functions import registry
from ..expressions import is_true
from ..models import Event, Run, RunStatus, Wait, WaitKind, WaitPath, WaitStatus

_MISSING = object()


def value_at(payload: dict[str, Any], path: str) -> Any:
    """``payload`` at a dotted path, or ``_MISSING``."""
    value: Any = payload
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def match_key(path: str, value: Any) -> str:
    """A fixed-length key for "the event has ``value`` at ``path``"."""
    text = path + "\x00" + json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=20).hexdigest()


def key_for(trigger: dict[str, Any] | None, match: str | None) -> str | None:
    """The key a wait with ``match`` is stored under; None when the trigger lacks the field."""
    if not match:
        return ""
    value = value_at(trigger or {}, match)
    if value is _MISSING or value is None:
        return None
    return match_key(match, value)


def arm(
    run: Run,
    using: str,
    *,
    kind: str,
    event_name: str,
    key: str,
    match: str | None,
    if_exp: str | None,
    now: datetime,
    expires_at: datetime | None,
    step_name: str = "",
) -> Wait:
    """Create a pending wait (inside the caller's transaction)."""
    if match and not WaitPath.objects.using(using).filter(event_name=event_name, path=match):
        WaitPath.objects.using(using).bulk_create(
            [WaitPath(event_name=event_name, path=match)], ignore_conflicts=True
        )
    wait = Wait(
        run=run,
        kind=kind,
        step_name=step_name,
        event_name=event_name,
        match=match or "",
        match_key=key,
        if_exp=if_exp or "",
        created_at=now,
        expires_at=expires_at,
    )
    wait.save(using=using, force_insert=True)
    return wait


def arm_cancel_rules(runs: Iterable[Run], using: str) -> None:
    """Arm the ``cancel=`` rules of newly created runs (call where runs are created)."""
    rows: list[Wait] = []
    paths: set[tuple[str, str]] = set()
    for run in runs:
        function = registry.get(run.function_id)
        if function is None or not function.cancel:
            continue
        trigger = run.event.as_dict() if run.event_id and run.event else None
        for rule in function.cancel:
            key = key_for(trigger, rule.match)
            if key is None:
                continue  # the run's event lacks the matched field: no event can match it
            timeout = rule.timeout_delta
            rows.append(
                Wait(
                    run=run,
                    kind=WaitKind.CANCEL,
                    event_name=rule.event,
                    match=rule.match or "",
                    match_key=key,
                    if_exp=rule.if_exp or "",
                    created_at=run.created_at,
                    expires_at=run.created_at + timeout if timeout is not None else None,
                )
            )
            if rule.match:
                paths.add((rule.event, rule.match))
    if paths:
        WaitPath.objects.using(using).bulk_create(
            [WaitPath(event_name=e, path=p) for e, p in sorted(paths)], ignore_conflicts=True
        )
    if rows:
        Wait.objects.using(using).bulk_create(rows)


def _keys(payload: dict[str, Any], paths: list[str]) -> set[str]:
    keys = {""}
    for path in paths:
        value = value_at(payload, path)
        if value is not _MISSING and value is not None:
            keys.add(match_key(path, value))
    return keys


def deliver(
    events: list[Event], using: str, now: datetime, cancel: Callable[[str, Event, str], bool]
) -> None:
    """Resolve the waits these newly stored events match, in order (inside ``send()``);
    a matched ``cancel=`` rule calls ``cancel(run_id, event, using)``."""
    if not events:
        return
    names = {event.name for event in events}
    found = storage.of(using).wait_paths(names)
    if not found:
        return  # no wait can match: the common case, one query
    paths: dict[str, list[str]] = {}
    for name, path in found:
        if path is not None:
            paths.setdefault(name, []).append(path)
    keyed = [(event, event.as_dict()) for event in events]
    per_event = [_keys(payload, paths.get(event.name, [])) for event, payload in keyed]
    all_keys = set().union(*per_event)
    # A plain single-table query (cheap to plan): most events match no wait at all.
    candidates = list(
        Wait.objects.using(using)
        .filter(status=WaitStatus.PENDING, event_name__in=names, match_key__in=all_keys)
        .order_by("run_id", "id")
    )
    if not candidates:
        return
    # ``if_exp`` sees the waiting run's own event: load those for the waits that need it.
    with_exp = {wait.run_id for wait in candidates if wait.if_exp}
    triggers = {
        run.pk: (run.event.as_dict() if run.event else {})
        for run in Run.objects.using(using).filter(pk__in=with_exp).select_related("event")
    }
    woke = False
    for (event, payload), keys in zip(keyed, per_event, strict=True):
        for wait in candidates:
            if wait.status != WaitStatus.PENDING or wait.event_name != event.name:
                continue
            if wait.match_key not in keys or (wait.expires_at and wait.expires_at <= now):
                continue
            if wait.if_exp:
                trigger = triggers.get(wait.run_id, {})
                if not is_true(wait.if_exp, {"event": trigger, "async": payload}):
                    continue
            if wait.kind == WaitKind.EVENT:
                woke |= _resolve(wait, event, using, now)
            else:
                _cancel(wait, event, using, now, cancel)
    if woke:
        notify.work_available(using)


def _resolve(wait: Wait, event: Event, using: str, now: datetime) -> bool:
    # Run first (the lock order of the worker), then the conditional resolution.
    woken = (
        Run.objects.using(using)
        .filter(pk=wait.run_id, status=RunStatus.WAITING)
        .update(available_at=now, updated_at=now)
    )
    won = (
        Wait.objects.using(using)
        .filter(pk=wait.pk, status=WaitStatus.PENDING)
        .update(status=WaitStatus.RESOLVED, event=event, resolved_at=now)
    )
    wait.status = WaitStatus.RESOLVED if won else WaitStatus.CLOSED
    return bool(woken and won)


def _cancel(
    wait: Wait, event: Event, using: str, now: datetime, cancel: Callable[..., bool]
) -> None:
    # The run first (``cancel`` locks it, then closes its waits), then record which
    # event did it on the rule's row.
    if not cancel(wait.run_id, event, using):
        return
    Wait.objects.using(using).filter(
        pk=wait.pk, status__in=[WaitStatus.PENDING, WaitStatus.CLOSED]
    ).update(status=WaitStatus.RESOLVED, event=event, resolved_at=now)
    wait.status = WaitStatus.RESOLVED


def close(run: Run, using: str, now: datetime) -> None:
    """The run finished: disarm its waits, and wake a parent waiting on it (an invoke)."""
    Wait.objects.using(using).filter(run_id=run.pk, status=WaitStatus.PENDING).update(
        status=WaitStatus.CLOSED, resolved_at=now
    )
    if run.parent_run_id:
        woken = (
            Run.objects.using(using)
            .filter(pk=run.parent_run_id, status=RunStatus.WAITING)
            .update(available_at=now, updated_at=now)
        )
        if woken:
            notify.work_available(using)
