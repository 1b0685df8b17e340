"""``@function`` and the registry of durable functions.

``function()`` checks its arguments and registers a ``Function``; with
``on_failure=`` it also registers the companion ``<id>-failure`` function,
triggered by the failed run's ``function.failed`` event.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Generic, Protocol, TypeVar, overload

from ..exceptions import ConfigurationError, StepUsageError
from .failure import failure_handler
from .options import (
    Batch,
    Cancel,
    Concurrency,
    Debounce,
    Priority,
    RateLimit,
    Singleton,
    Throttle,
    Timeouts,
    TriggerCron,
    TriggerEvent,
    flow_control,
)
from .payloads import FAILED_EVENT
from .schemas import typed_function

R = TypeVar("R")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,254}$")


@dataclass
class Function(Generic[R]):
    """A registered durable function, made by ``@df.function``; ``R`` is its result's type.

    Pass it to ``ctx.step.invoke(function=...)``. Call ``.fn`` directly to
    bypass the engine. Its fields hold the options given to ``@df.function``.
    """

    id: str
    fn: Callable[..., Any]
    triggers: tuple[TriggerEvent | TriggerCron, ...]
    retries: int = 4
    queue: str = "default"
    name: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    concurrency: tuple[Concurrency, ...] = ()
    throttle: Throttle | None = None
    rate_limit: RateLimit | None = None
    debounce: Debounce | None = None
    batch_events: Batch | None = None
    priority: Priority | None = None
    idempotency: str | None = None
    singleton: Singleton | None = None

    @property
    def is_async(self) -> bool:
        """Is it an ``async def`` function (its steps awaited)?"""
        return inspect.iscoroutinefunction(self.fn)

    @property
    def admission_controlled(self) -> bool:
        """Does starting a run need more than inserting a row (see ``engine.flow_control``)?"""
        return bool(
            self.concurrency
            or self.throttle
            or self.rate_limit
            or self.debounce
            or self.batch_events
            or (self.priority and self.priority.run)
            or self.idempotency
            or self.singleton
        )

    def __call__(self, ctx: Any) -> Any:
        return self.fn(ctx)

    def matches(self, event: dict[str, Any]) -> bool:
        return any(isinstance(t, TriggerEvent) and t.matches(event) for t in self.triggers)

    @property
    def cancel(self) -> tuple[Cancel, ...]:
        return tuple(self.options.get("cancel") or ())

    @property
    def timeouts(self) -> Timeouts | None:
        return self.options.get("timeouts")

    @property
    def crons(self) -> tuple[TriggerCron, ...]:
        return tuple(t for t in self.triggers if isinstance(t, TriggerCron))

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
            "cancel": [
                {
                    "event": c.event,
                    "match": c.match,
                    "if_exp": c.if_exp,
                    "timeout": _plain(c.timeout),
                }
                for c in self.cancel
            ],
            "timeouts": (
                {"start": _plain(self.timeouts.start), "finish": _plain(self.timeouts.finish)}
                if self.timeouts
                else None
            ),
            "on_failure": self.options.get("on_failure_id"),
            "concurrency": [
                {"limit": c.limit, "key": c.key, "scope": c.scope} for c in self.concurrency
            ],
            **{
                name: _describe_option(getattr(self, name))
                for name in (
                    "throttle",
                    "rate_limit",
                    "debounce",
                    "batch_events",
                    "priority",
                    "idempotency",
                    "singleton",
                )
            },
        }


def _plain(value: Any) -> Any:
    """A duration as seconds; anything else as it is."""
    return value.total_seconds() if isinstance(value, timedelta) else value


def _describe_option(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    return {name: _plain(v) for name, v in vars(value).items()}


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

    def resolve(self, function: Any, what: str) -> Function:
        """The registered function that ``function`` (a durable function or its id)
        names; ``what`` (say ``"invoke(function=...)"``) starts the error otherwise."""
        key = function.id if isinstance(function, Function) else function
        found = self._functions.get(key) if isinstance(key, str) else None
        if found is None:
            raise StepUsageError(f"{what} must be a durable function or its id, got {function!r}")
        return found

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
    """None: a function that is only started, invoked or enqueued."""
    if trigger is None:
        return ()
    items = list(trigger) if isinstance(trigger, list | tuple) else [trigger]
    if not items:
        raise ConfigurationError(
            "a function needs at least one trigger in `trigger=` (leave `trigger` out "
            "for a function that is only started, invoked or enqueued)"
        )
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
    trigger: TriggerEvent | TriggerCron | Iterable[TriggerEvent | TriggerCron] | None = None,
    retries: int = 4,
    queue: str = "default",
    name: str | None = None,
    concurrency: Concurrency | list[Concurrency] | None = None,
    throttle: Throttle | None = None,
    rate_limit: RateLimit | None = None,
    debounce: Debounce | None = None,
    batch_events: Batch | None = None,
    priority: Priority | None = None,
    idempotency: str | None = None,
    singleton: Singleton | None = None,
    cancel: Cancel | list[Cancel] | None = None,
    timeouts: Timeouts | None = None,
    on_failure: Callable[..., Any] | None = None,
    **options: Any,
) -> Decorator:
    """Register ``fn(ctx)`` as a durable function (a decorator). Bad options fail here, at import.

    ```python
    @df.function(id="fulfil-order", trigger=df.TriggerEvent(event="shop/order.placed"))
    def fulfil_order(ctx: df.Context) -> dict: ...
    ```

    The decorated name is bound to a [`Function`][durable_flows.definitions.functions.Function];
    every option is checked when the module is imported and raises
    ``ConfigurationError`` there, never later in the worker. The function may be
    ``async def``: its steps are then awaited (see the async functions guide).

    Args:
        id: The function's stable id (1-255 letters, digits and ``._:/-``). Runs
            are stored under it: keep it when you rename the Python function.
        trigger: What starts a run: a ``TriggerEvent``, a ``TriggerCron``, or a
            list of up to 10 of them.
        retries: Retries of a failing step (or function body) after its first
            attempt, 0-20; 4 means 5 attempts. A worker crash counts as an attempt.
        queue: The queue its runs go to; ``runflows --queue NAME`` takes only
            the queues it is given.
        name: A human-readable name for the admin and the dashboard (default:
            the Python function's name).
        concurrency: One or two ``Concurrency`` limits on runs executing at once.
        throttle: A ``Throttle``: spread run starts out over time; none dropped.
        rate_limit: A ``RateLimit``: runs beyond the limit are skipped.
        debounce: A ``Debounce``: one run with the last of a burst of events.
        batch_events: A ``Batch``: one run for many events (``ctx.events``).
        priority: A ``Priority``: runs with a higher value start first.
        idempotency: A CEL expression: at most one run per value per 24 h.
        singleton: A ``Singleton``: at most one active run per key.
        cancel: One or a list of up to 5 ``Cancel`` rules: events that cancel a run.
        timeouts: ``Timeouts``: cancel a run not started, or not finished, in time.
        on_failure: ``handler(ctx, error)``, called (as a companion durable
            function ``<id>-failure``) when a run of this function fails for good.
        **options: Refused: an unknown option is a ``ConfigurationError``.

    Returns:
        The decorator, which returns the registered ``Function``.
    """
    if not isinstance(id, str) or not _ID_RE.match(id):
        raise ConfigurationError(
            f"function id must be 1-255 characters of letters, digits and ._:/- , got {id!r}"
        )
    triggers = _triggers(trigger)
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 20:
        raise ConfigurationError(f"retries must be an integer from 0 to 20, got {retries!r}")
    if not isinstance(queue, str) or not queue:
        raise ConfigurationError(f"queue must be a non-empty string, got {queue!r}")
    if options:
        raise ConfigurationError(f"unknown option(s) {sorted(options)} for function {id!r}")
    extra = _time_options(id, cancel, timeouts, on_failure)
    flow = flow_control(
        id,
        concurrency=concurrency,
        throttle=throttle,
        rate_limit=rate_limit,
        debounce=debounce,
        batch_events=batch_events,
        priority=priority,
        idempotency=idempotency,
        singleton=singleton,
    )

    def decorator(fn: Callable[..., Any]) -> Function[Any]:
        if not callable(fn):
            raise ConfigurationError(f"@df.function must decorate a callable, got {fn!r}")
        if inspect.isasyncgenfunction(fn):
            raise ConfigurationError(
                f"durable function {id!r} is an async generator: define it with "
                "`async def` and `return` its result"
            )
        typed = {t.event: t.schema for t in triggers if isinstance(t, TriggerEvent) and t.schema}
        func: Function[Any] = Function(
            id=id,
            fn=typed_function(fn, typed) if typed else fn,
            triggers=triggers,
            retries=retries,
            queue=queue,
            name=name or str(getattr(fn, "__name__", "") or id),
            options=extra,
            **flow,
        )
        registry.add(func)
        if on_failure is not None:
            registry.add(_failure_function(func, on_failure))
        return func

    return decorator


class Decorator(Protocol):
    """What ``@df.function(...)`` returns: ``Function[R]``, ``R`` the result of ``fn``
    (awaited, for an ``async def`` function)."""

    @overload
    def __call__(self, fn: Callable[..., Coroutine[Any, Any, R]]) -> Function[R]: ...

    @overload
    def __call__(self, fn: Callable[..., R]) -> Function[R]: ...


def _time_options(function_id: str, cancel: Any, timeouts: Any, on_failure: Any) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if cancel is not None:
        rules = list(cancel) if isinstance(cancel, list | tuple) else [cancel]
        if not all(isinstance(rule, Cancel) for rule in rules):
            raise ConfigurationError(
                f"function {function_id!r}: cancel= must be a list of df.Cancel, got {cancel!r}"
            )
        if len(rules) > 5:
            raise ConfigurationError(f"function {function_id!r}: at most 5 cancel rules")
        extra["cancel"] = tuple(rules)
    if timeouts is not None:
        if not isinstance(timeouts, Timeouts):
            raise ConfigurationError(
                f"function {function_id!r}: timeouts= must be df.Timeouts, got {timeouts!r}"
            )
        extra["timeouts"] = timeouts
    if on_failure is not None:
        if not callable(on_failure) or inspect.iscoroutinefunction(on_failure):
            raise ConfigurationError(
                f"function {function_id!r}: on_failure= must be a callable (ctx, error) "
                "defined with `def`, not `async def`"
            )
        extra["on_failure_id"] = failure_function_id(function_id)
    return extra


def failure_function_id(function_id: str) -> str:
    return f"{function_id}-failure"


def _failure_function(func: Function, handler: Callable[..., Any]) -> Function:
    """As Inngest: a companion function triggered by the failed run's ``function.failed``."""
    return Function(
        id=failure_function_id(func.id),
        fn=failure_handler(handler),
        triggers=(
            TriggerEvent(event=FAILED_EVENT, expression=f"event.data.function_id == {func.id!r}"),
        ),
        retries=func.retries,
        queue=func.queue,
        name=f"{func.name} (on_failure)",
    )
