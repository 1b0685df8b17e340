"""``@function``, triggers and option dataclasses, and the registry of functions."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from .durations import parse_duration
from .exceptions import ConfigurationError
from .expressions import compile_expression, is_true

RESERVED_PREFIX = "durable_flows/"
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,254}$")
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


def _optional_expression(value: str | None, what: str) -> str | None:
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
        _optional_expression(self.expression, "TriggerEvent(expression=...)")

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
        raise ConfigurationError("TriggerCron is not supported yet (planned: time and events).")


# --- options (names as in Inngest's Python SDK) -----------------------------


@dataclass(frozen=True)
class Concurrency:
    limit: int
    key: str | None = None
    scope: str = "fn"


@dataclass(frozen=True)
class Throttle:
    limit: int
    period: timedelta | str
    key: str | None = None
    burst: int = 1


@dataclass(frozen=True)
class RateLimit:
    limit: int
    period: timedelta | str
    key: str | None = None


@dataclass(frozen=True)
class Debounce:
    period: timedelta | str
    key: str | None = None
    timeout: timedelta | str | None = None


@dataclass(frozen=True)
class Batch:
    max_size: int
    timeout: timedelta | str
    key: str | None = None


@dataclass(frozen=True)
class Priority:
    run: str | None = None


@dataclass(frozen=True)
class Singleton:
    key: str | None = None
    mode: str = "skip"


@dataclass(frozen=True)
class Cancel:
    event: str
    match: str | None = None
    if_exp: str | None = None
    timeout: timedelta | str | None = None


@dataclass(frozen=True)
class Timeouts:
    start: timedelta | str | None = None
    finish: timedelta | str | None = None


# Options accepted by the contract whose engine support has not landed yet:
# refusing them loudly beats accepting them and silently ignoring them.
_NOT_YET = (
    "concurrency",
    "throttle",
    "rate_limit",
    "debounce",
    "batch_events",
    "priority",
    "idempotency",
    "singleton",
    "cancel",
    "timeouts",
    "on_failure",
)


@dataclass
class Function:
    """A registered durable function. Call ``.fn`` directly to bypass the engine."""

    id: str
    fn: Callable[..., Any]
    triggers: tuple[TriggerEvent | TriggerCron, ...]
    retries: int = 4
    queue: str = "default"
    name: str = ""
    options: dict[str, Any] = field(default_factory=dict)

    def __call__(self, ctx: Any) -> Any:
        return self.fn(ctx)

    def matches(self, event: dict[str, Any]) -> bool:
        return any(isinstance(t, TriggerEvent) and t.matches(event) for t in self.triggers)

    def describe(self) -> dict[str, Any]:
        """A JSON-friendly description (for the API, the admin and the dashboard)."""
        triggers = [
            {"event": t.event, "expression": t.expression}
            if isinstance(t, TriggerEvent)
            else {"cron": t.cron}
            for t in self.triggers
        ]
        return {
            "id": self.id,
            "name": self.name,
            "triggers": triggers,
            "retries": self.retries,
            "queue": self.queue,
        }


class Registry:
    def __init__(self) -> None:
        self._functions: dict[str, Function] = {}

    def add(self, function: Function) -> None:
        existing = self._functions.get(function.id)
        if existing is not None and _origin(existing.fn) != _origin(function.fn):
            raise ConfigurationError(
                f"two durable functions have the id {function.id!r}: "
                f"{_origin(existing.fn)} and {_origin(function.fn)}"
            )
        self._functions[function.id] = function

    def get(self, function_id: str) -> Function | None:
        return self._functions.get(function_id)

    def remove(self, function_id: str) -> None:
        self._functions.pop(function_id, None)

    def all(self) -> list[Function]:
        return list(self._functions.values())

    def ids(self) -> list[str]:
        return list(self._functions)

    def matching(self, event: dict[str, Any]) -> list[Function]:
        return [f for f in self._functions.values() if f.matches(event)]


def _origin(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


registry = Registry()


def _triggers(trigger: Any) -> tuple[TriggerEvent | TriggerCron, ...]:
    items = list(trigger) if isinstance(trigger, list | tuple) else [trigger]
    if not items:
        raise ConfigurationError("a function needs at least one trigger")
    if len(items) > 10:
        raise ConfigurationError("a function may have at most 10 triggers")
    for item in items:
        if not isinstance(item, TriggerEvent | TriggerCron):
            raise ConfigurationError(
                f"trigger must be df.TriggerEvent or df.TriggerCron, got {item!r}"
            )
    return tuple(items)


def function(
    *,
    id: str,  # noqa: A002 - the SDK's name
    trigger: TriggerEvent | TriggerCron | Iterable[TriggerEvent | TriggerCron],
    retries: int = 4,
    queue: str = "default",
    name: str | None = None,
    **options: Any,
) -> Callable[[Callable[..., Any]], Function]:
    """Register ``fn(ctx)`` as a durable function. Bad options fail here, at import."""
    if not isinstance(id, str) or not _ID_RE.match(id):
        raise ConfigurationError(
            f"function id must be 1-255 characters of letters, digits and ._:/- , got {id!r}"
        )
    triggers = _triggers(trigger)
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 20:
        raise ConfigurationError(f"retries must be an integer from 0 to 20, got {retries!r}")
    if not isinstance(queue, str) or not queue:
        raise ConfigurationError(f"queue must be a non-empty string, got {queue!r}")
    for key, value in options.items():
        if key not in _NOT_YET:
            raise ConfigurationError(f"unknown option {key!r} for function {id!r}")
        if value is not None:
            raise ConfigurationError(
                f"function {id!r}: option {key!r} is not supported by this version yet"
            )

    def decorator(fn: Callable[..., Any]) -> Function:
        if not callable(fn):
            raise ConfigurationError(f"@df.function must decorate a callable, got {fn!r}")
        func = Function(
            id=id,
            fn=fn,
            triggers=triggers,
            retries=retries,
            queue=queue,
            name=name or str(getattr(fn, "__name__", "") or id),
        )
        registry.add(func)
        return func

    return decorator
