"""Typed events: ``@event_schema(name)`` registers a Pydantic model or a dataclass as the
schema of an event name.

Every event sent under that name is checked against it (``check``: the data as it
will be stored, a refusal names the fields); ``send()`` takes an instance of it
(``typed_item``); a function triggered by ``TriggerEvent(event=TheClass)`` gets
``ctx.event.data`` as an instance, made from the stored data each time it runs
(``typed_function``). Pydantic is optional: it is imported only for its models.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from ..exceptions import ConfigurationError, EventValidationError, NonRetriableError
from .dataclass_schemas import NON_FIELD, FieldErrors, construct, fields_of

T = TypeVar("T", bound=type)

_schemas: dict[str, type] = {}  # event name -> schema class
_names: dict[type, str] = {}  # schema class -> event name
_dataclass_fields: dict[type, Any] = {}  # dataclass schema -> its fields, read once


def _is_pydantic(cls: Any) -> bool:
    pydantic = sys.modules.get("pydantic")  # a model's class means pydantic is imported
    return pydantic is not None and isinstance(cls, type) and issubclass(cls, pydantic.BaseModel)


def _is_schema_kind(cls: Any) -> bool:
    return _is_pydantic(cls) or (isinstance(cls, type) and dataclasses.is_dataclass(cls))


def _origin(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def event_schema(name: str) -> Callable[[T], T]:
    """Register a Pydantic model or a dataclass as the schema of events named ``name``
    (a class decorator).

    ```python
    @df.event_schema("shop/order.placed")
    @dataclass
    class OrderPlaced:
        order_id: int
    ```

    Every event sent with that name, by any path (``df.send()``, the REST API,
    ``POST /e/<key>``, ``ctx.step.send_event``, the dashboard), must fit it, or it
    is refused with ``EventValidationError`` naming the fields, and nothing is
    stored. ``df.send(OrderPlaced(order_id=7))`` sends an instance, and
    ``df.TriggerEvent(event=OrderPlaced)`` gives a function ``ctx.event.data`` as one.

    Args:
        name: The event's name (no wildcard; names beginning ``durable_flows/`` are
            the app's own).

    Returns:
        The decorator, which returns the class unchanged.

    Raises:
        ConfigurationError: At import: a bad name, a class that is neither a Pydantic
            model nor a dataclass, or a second schema for the same name.
    """
    if (
        not isinstance(name, str)
        or not name.strip()
        or len(name) > 255
        or any(c.isspace() or c == "*" for c in name)
        or name.startswith("durable_flows/")
    ):
        raise ConfigurationError(
            "event_schema(name) must be an event name (1-255 characters, no spaces or "
            f"wildcard, not beginning 'durable_flows/'), got {name!r}"
        )

    def decorator(cls: T) -> T:
        if not _is_schema_kind(cls):
            raise ConfigurationError(
                f"@df.event_schema({name!r}) must decorate a Pydantic model or a dataclass "
                f"(put it above @dataclass), got {cls!r}"
            )
        existing = _schemas.get(name)
        if existing is not None and _origin(existing) != _origin(cls):
            raise ConfigurationError(
                f"two event schemas for {name!r}: {_origin(existing)} and {_origin(cls)}"
            )
        if _names.get(cls, name) != name:
            raise ConfigurationError(
                f"{cls.__qualname__} is already the schema of {_names[cls]!r}; "
                f"a class is the schema of one event name, not also of {name!r}"
            )
        if not _is_pydantic(cls):
            _dataclass_fields[cls] = fields_of(cls)
        _schemas[name] = cls
        _names[cls] = name
        return cls

    return decorator


def name_of(cls: type, what: str) -> str:
    """The event name ``cls`` is the schema of; ``what`` begins the error otherwise."""
    name = _names.get(cls)
    if name is None:
        raise ConfigurationError(
            f"{what}: {cls.__qualname__} is not an event schema; decorate it with "
            "@df.event_schema('<event name>')"
        )
    return name


def is_schema_like(item: Any) -> bool:
    """Is ``item`` a Pydantic model or a dataclass, or an instance of one? (One item to
    send, though a model is iterable.)"""
    return _is_schema_kind(item) or _is_schema_kind(type(item))


def typed_item(item: Any, where: str) -> tuple[str, Any] | None:
    """An instance of a schema as the (name, data) to send; None for anything that is
    not a Pydantic model or a dataclass; ``EventValidationError`` for an unregistered
    one, or a schema class given instead of an instance."""
    cls = type(item)
    if _is_schema_kind(item):
        raise EventValidationError(
            f"{where}: got the class {item.__qualname__}; send an instance of it"
        )
    if not _is_schema_kind(cls):
        return None
    name = _names.get(cls)
    if name is None:
        raise EventValidationError(
            f"{where}: {cls.__qualname__} is not an event schema; decorate it with "
            "@df.event_schema('<event name>') to send it"
        )
    if _is_pydantic(cls):
        return name, item.model_dump(mode="json")
    return name, dataclasses.asdict(item)


def load(cls: type, data: Any) -> Any:
    """An instance of the schema ``cls`` made from JSON ``data``, or ``FieldErrors``."""
    if not _is_pydantic(cls):
        return construct(cls, _dataclass_fields[cls], data)
    import pydantic

    try:
        return cls.model_validate(data)  # type: ignore[attr-defined]
    except pydantic.ValidationError as exc:
        fields: dict[str, list[str]] = {}
        for error in exc.errors():
            key = ".".join(str(part) for part in error["loc"]) or NON_FIELD
            fields.setdefault(key, []).append(error["msg"])
        raise FieldErrors(fields) from None


def check(name: str, data: dict[str, Any], where: str) -> None:
    """Refuse data that does not fit the schema registered for ``name`` (if any)."""
    cls = _schemas.get(name)
    if cls is None:
        return
    try:
        load(cls, data)
    except FieldErrors as exc:
        raise EventValidationError(
            f"{where} {name!r}: 'data' does not fit {cls.__qualname__}: {exc}", fields=exc.fields
        ) from None


def typed_function(fn: Callable[..., Any], typed: dict[str, type]) -> Callable[..., Any]:
    """``fn`` seeing the events named in ``typed`` with their data as instances of their
    schema, made from the stored data each time it runs. Data stored before the schema
    changed and that no longer fits fails the run at once (``NonRetriableError``)."""

    def as_instance(event: Any) -> Any:
        cls = typed.get(event.name) if event is not None else None
        if cls is None or isinstance(event.data, cls):
            return event
        try:
            data = load(cls, event.data)
        except FieldErrors as exc:
            raise NonRetriableError(
                f"event {event.id} {event.name!r}: its data does not fit {cls.__qualname__}: {exc}"
            ) from None
        return dataclasses.replace(event, data=data)

    @functools.wraps(fn)
    def with_typed_events(ctx: Any) -> Any:
        ctx.event = as_instance(ctx.event)
        ctx.events = [as_instance(event) for event in ctx.events]
        return fn(ctx)

    return with_typed_events
