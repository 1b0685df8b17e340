"""Triggers and flow-control options of ``@function``: frozen dataclasses checked when built.

A bad option raises ``ConfigurationError`` at import time, where the function is
declared, never later in the worker.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from .. import cron as cron_lib
from ..durations import parse_duration
from ..exceptions import ConfigurationError
from ..expressions import compile_expression, is_true

_EVENT_RE = re.compile(r"^[^\s]{1,255}$")


def _duration(value: Any, what: str) -> timedelta:
    try:
        return parse_duration(value, what=what)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None


def _positive_int(value: Any, what: str, *, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{what} must be a positive integer, got {value!r}")
    if maximum is not None and value > maximum:
        raise ConfigurationError(f"{what} must be at most {maximum}, got {value!r}")
    return value


def optional_expression(value: str | None, what: str) -> str | None:
    """``value``: None or a CEL expression that compiles (``what`` names it in the error)."""
    if value is not None:
        if not isinstance(value, str):
            raise ConfigurationError(f"{what} must be a CEL expression string, got {value!r}")
        compile_expression(value)
    return value


# --- triggers ---------------------------------------------------------------


@dataclass(frozen=True)
class TriggerEvent:
    """Start a run for every event named ``event`` (``"user/*"`` matches a family)."""

    event: str
    expression: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.event, str) or not _EVENT_RE.match(self.event):
            raise ConfigurationError(
                f"TriggerEvent(event=...) must be a non-empty event name, got {self.event!r}"
            )
        if "*" in self.event and not (
            self.event.endswith(("/*", ".*")) and self.event.count("*") == 1
        ):
            raise ConfigurationError(
                f"TriggerEvent event {self.event!r}: a wildcard is only allowed at the end, "
                "after '/' or '.' (e.g. 'user/*')"
            )
        optional_expression(self.expression, "TriggerEvent(expression=...)")

    def matches_name(self, name: str) -> bool:
        if self.event.endswith("*"):
            return name.startswith(self.event[:-1])
        return name == self.event

    def matches(self, event: dict[str, Any]) -> bool:
        if not self.matches_name(event["name"]):
            return False
        return self.expression is None or is_true(self.expression, {"event": event})


@dataclass(frozen=True)
class TriggerCron:
    """A schedule: 5-field cron, optionally prefixed ``TZ=Area/City``."""

    cron: str

    def __post_init__(self) -> None:
        try:
            cron_lib.parse(self.cron)
        except ValueError as exc:
            raise ConfigurationError(f"TriggerCron: {exc}") from None

    @property
    def schedule(self) -> cron_lib.Schedule:
        return cron_lib.parse(self.cron)


# --- options (names as in Inngest's Python SDK) -----------------------------


def _optional_key(value: str | None, what: str) -> str | None:
    return optional_expression(value, f"{what}(key=...)")


def _period(value: Any, what: str, *, low: timedelta, high: timedelta) -> timedelta:
    period = _duration(value, what)
    if not low <= period <= high:
        raise ConfigurationError(f"{what} must be between {low} and {high}, got {period}")
    return period


@dataclass(frozen=True)
class Concurrency:
    """At most ``limit`` steps of the function executing at once, per value of ``key``."""

    limit: int
    key: str | None = None
    scope: str = "fn"

    def __post_init__(self) -> None:
        _positive_int(self.limit, "Concurrency(limit=...)", maximum=100_000)
        _optional_key(self.key, "Concurrency")
        if self.scope != "fn":
            raise ConfigurationError(
                f"Concurrency(scope={self.scope!r}): only scope='fn' is supported"
            )


@dataclass(frozen=True)
class Throttle:
    """At most ``limit`` run starts per ``period`` per key, ``burst`` more at once; none dropped."""

    limit: int
    period: timedelta | str
    key: str | None = None
    burst: int = 1

    def __post_init__(self) -> None:
        _positive_int(self.limit, "Throttle(limit=...)")
        if isinstance(self.burst, bool) or not isinstance(self.burst, int) or self.burst < 0:
            raise ConfigurationError(
                f"Throttle(burst=...) must be an integer >= 0, got {self.burst!r}"
            )
        period = _period(
            self.period, "Throttle(period=...)", low=timedelta(seconds=1), high=timedelta(days=7)
        )
        object.__setattr__(self, "period", period)
        _optional_key(self.key, "Throttle")


@dataclass(frozen=True)
class RateLimit:
    """At most ``limit`` runs per ``period`` per key; each extra event's run is skipped."""

    limit: int
    period: timedelta | str
    key: str | None = None

    def __post_init__(self) -> None:
        _positive_int(self.limit, "RateLimit(limit=...)")
        period = _period(
            self.period, "RateLimit(period=...)", low=timedelta(seconds=1), high=timedelta(days=1)
        )
        object.__setattr__(self, "period", period)
        _optional_key(self.key, "RateLimit")


@dataclass(frozen=True)
class Debounce:
    """One run with the last event of a key, ``period`` after it (at most ``timeout`` later)."""

    period: timedelta | str
    key: str | None = None
    timeout: timedelta | str | None = None

    def __post_init__(self) -> None:
        period = _period(
            self.period, "Debounce(period=...)", low=timedelta(seconds=1), high=timedelta(days=7)
        )
        object.__setattr__(self, "period", period)
        _optional_key(self.key, "Debounce")
        if self.timeout is not None:
            timeout = _period(
                self.timeout, "Debounce(timeout=...)", low=period, high=timedelta(days=7)
            )
            object.__setattr__(self, "timeout", timeout)


@dataclass(frozen=True)
class Batch:
    """One run receives up to ``max_size`` events; a partial batch starts ``timeout`` after
    its first event."""

    max_size: int
    timeout: timedelta | str
    key: str | None = None

    def __post_init__(self) -> None:
        _positive_int(self.max_size, "Batch(max_size=...)", maximum=1000)
        timeout = _period(
            self.timeout, "Batch(timeout=...)", low=timedelta(seconds=1), high=timedelta(days=1)
        )
        object.__setattr__(self, "timeout", timeout)
        _optional_key(self.key, "Batch")


PRIORITY_RANGE = 600


@dataclass(frozen=True)
class Priority:
    """``run``: a CEL expression giving seconds from -600 to 600; higher runs go first."""

    run: str | None = None

    def __post_init__(self) -> None:
        optional_expression(self.run, "Priority(run=...)")


@dataclass(frozen=True)
class Singleton:
    """At most one active run per key; ``skip`` the new one or ``cancel`` the active one."""

    key: str | None = None
    mode: str = "skip"

    def __post_init__(self) -> None:
        _optional_key(self.key, "Singleton")
        if self.mode not in ("skip", "cancel"):
            raise ConfigurationError(
                f"Singleton(mode=...) must be 'skip' or 'cancel', got {self.mode!r}"
            )


_MATCH_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")


def check_match(value: Any, what: str) -> None:
    """``match`` is a dotted path into the event, e.g. ``"data.user_id"``."""
    if value is not None and (
        not isinstance(value, str) or len(value) > 255 or not _MATCH_RE.match(value)
    ):
        raise ConfigurationError(
            f"{what} must be a dotted path into the event such as 'data.user_id', got {value!r}"
        )


@dataclass(frozen=True)
class Cancel:
    """Cancel a run when an event named ``event`` matches it (``match`` and/or ``if_exp``).

    ``timeout``: the rule is armed only this long after the run was created.
    """

    event: str
    match: str | None = None
    if_exp: str | None = None
    timeout: timedelta | str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.event, str) or not _EVENT_RE.match(self.event) or "*" in self.event:
            raise ConfigurationError(
                f"Cancel(event=...) must be an event name (no wildcard), got {self.event!r}"
            )
        check_match(self.match, "Cancel(match=...)")
        optional_expression(self.if_exp, "Cancel(if_exp=...)")
        if self.timeout is not None:
            _duration(self.timeout, "Cancel(timeout=...)")

    @property
    def timeout_delta(self) -> timedelta | None:
        return None if self.timeout is None else parse_duration(self.timeout)


@dataclass(frozen=True)
class Timeouts:
    """``start``: cancel a run not started this long after it was created;
    ``finish``: cancel a run not finished this long after it started."""

    start: timedelta | str | None = None
    finish: timedelta | str | None = None

    def __post_init__(self) -> None:
        if self.start is None and self.finish is None:
            raise ConfigurationError("Timeouts needs start=, finish= or both")
        for what in ("start", "finish"):
            value = getattr(self, what)
            if value is not None and _duration(value, f"Timeouts({what}=...)") <= timedelta(0):
                raise ConfigurationError(f"Timeouts({what}=...) must be positive, got {value!r}")

    @property
    def start_delta(self) -> timedelta | None:
        return None if self.start is None else parse_duration(self.start)

    @property
    def finish_delta(self) -> timedelta | None:
        return None if self.finish is None else parse_duration(self.finish)


_OPTION_TYPES: dict[str, type] = {
    "throttle": Throttle,
    "rate_limit": RateLimit,
    "debounce": Debounce,
    "batch_events": Batch,
    "priority": Priority,
    "singleton": Singleton,
}

# As Inngest: a batch is one run for many events, so per-event admission rules
# cannot apply to it.
_NOT_WITH_BATCHING = ("debounce", "idempotency", "rate_limit", "priority", "singleton")


def flow_control(function_id: str, **given: Any) -> dict[str, Any]:
    """Check the flow-control options of ``@function``; returns them as Function fields."""
    where = f"function {function_id!r}"
    concurrency = given.pop("concurrency")
    if concurrency is None:
        limits: tuple[Concurrency, ...] = ()
    else:
        limits = tuple(concurrency) if isinstance(concurrency, list | tuple) else (concurrency,)
    for item in limits:
        if not isinstance(item, Concurrency):
            raise ConfigurationError(
                f"{where}: concurrency must be a list of df.Concurrency, got {item!r}"
            )
    if len(limits) > 2:
        raise ConfigurationError(f"{where}: at most 2 concurrency constraints, got {len(limits)}")
    if len(limits) == 2 and limits[0].key == limits[1].key:
        raise ConfigurationError(f"{where}: the two concurrency constraints have the same key")
    for option, expected in _OPTION_TYPES.items():
        value = given[option]
        if value is not None and not isinstance(value, expected):
            raise ConfigurationError(
                f"{where}: {option} must be df.{expected.__name__}, got {value!r}"
            )
    idempotency = given["idempotency"]
    if idempotency is not None:
        optional_expression(idempotency, f"{where}: idempotency")
    if given["batch_events"] is not None:
        clashes = [option for option in _NOT_WITH_BATCHING if given[option] is not None]
        if clashes:
            raise ConfigurationError(
                f"{where}: batch_events cannot be combined with {', '.join(clashes)} "
                "(as in Inngest: these rules apply per event, a batch is one run for many)"
            )
    return {"concurrency": limits, **given}
