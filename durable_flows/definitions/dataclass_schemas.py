"""Dataclasses as event schemas: an event's JSON data checked and made an instance.

The class is constructed from the data: a key that is not one of its fields, and a
required field that is missing, are errors. Fields annotated with a basic type are
checked (and converted where JSON has no such type):

| annotation | accepted JSON |
|---|---|
| ``int`` | an integer (not a boolean) |
| ``float`` | a number (made a ``float``) |
| ``str``, ``bool`` | a string, a boolean |
| ``list[...]``, ``dict[...]`` | an array, an object (their items unchecked) |
| ``datetime``, ``date``, ``time`` | an ISO 8601 string (made a ``datetime``, ``date``, ``time``) |
| ``Decimal`` | a string or a number (made a ``Decimal``) |
| ``UUID`` | a string (made a ``UUID``) |
| ``X | None`` | ``null``, or what ``X`` accepts |

Any other annotation (a nested dataclass, ``Literal``, ``Any``...) is passed as its
JSON value, unchecked: use a Pydantic model for deeper validation.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any
from uuid import UUID

from ..exceptions import ConfigurationError

NON_FIELD = "__all__"  # the key of errors about the data as a whole, as in Django's forms


class FieldErrors(ValueError):
    """Data that does not fit a schema: the messages for each field."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in fields.items()))
        self.fields = fields


@dataclasses.dataclass(frozen=True)
class _Field:
    name: str
    annotation: Any
    required: bool


def fields_of(cls: type) -> tuple[_Field, ...]:
    """The fields a dataclass is constructed with; ``ConfigurationError`` when its
    annotations cannot be resolved (a name not defined in its module)."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception as exc:  # NameError, TypeError...: unresolvable annotations
        raise ConfigurationError(
            f"event schema {cls.__qualname__}: its annotations cannot be resolved ({exc})"
        ) from None
    return tuple(
        _Field(
            name=f.name,
            annotation=hints.get(f.name, Any),
            required=f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
        )
        for f in dataclasses.fields(cls)
        if f.init
    )


def construct(cls: type, fields: tuple[_Field, ...], data: dict[str, Any]) -> Any:
    """An instance of ``cls`` from JSON ``data``, or ``FieldErrors``."""
    errors: dict[str, list[str]] = {}
    known = {f.name for f in fields}
    for key in data:
        if key not in known:
            errors[str(key)] = ["unknown field"]
    values: dict[str, Any] = {}
    for f in fields:
        if f.name not in data:
            if f.required:
                errors[f.name] = ["this field is required"]
            continue
        try:
            values[f.name] = _convert(f.annotation, data[f.name])
        except ValueError as exc:
            errors[f.name] = [str(exc)]
    if errors:
        raise FieldErrors(errors)
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:  # the class's own checks (__post_init__)
        raise FieldErrors({NON_FIELD: [str(exc) or type(exc).__name__]}) from None


def _plain(kind: type, label: str) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
            raise ValueError(f"expected {label}, got {_json_type(value)}")
        return value

    return check


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number, got {_json_type(value)}")
    return float(value)


def _iso(kind: type[date] | type[time], label: str) -> Callable[[Any], Any]:
    def parse(value: Any) -> Any:
        if isinstance(value, str):
            try:
                return kind.fromisoformat(value)
            except ValueError:
                pass
        raise ValueError(f"expected {label} as an ISO 8601 string, got {_shown(value)}")

    return parse


def _decimal(value: Any) -> Decimal:
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        try:
            return Decimal(str(value))
        except InvalidOperation:
            pass
    raise ValueError(f"expected a decimal number (a string or a number), got {_shown(value)}")


def _uuid(value: Any) -> UUID:
    if isinstance(value, str):
        try:
            return UUID(value)
        except ValueError:
            pass
    raise ValueError(f"expected a UUID string, got {_shown(value)}")


_CONVERTERS: dict[Any, Callable[[Any], Any]] = {
    int: _plain(int, "an integer"),
    float: _number,
    str: _plain(str, "a string"),
    bool: _plain(bool, "a boolean"),
    list: _plain(list, "a list"),
    dict: _plain(dict, "an object"),
    datetime: _iso(datetime, "a datetime"),
    date: _iso(date, "a date"),
    time: _iso(time, "a time"),
    Decimal: _decimal,
    UUID: _uuid,
}


def _convert(annotation: Any, value: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None and len(options) < len(typing.get_args(annotation)):
            return None
        problems = []
        for option in options:
            try:
                return _convert(option, value)
            except ValueError as exc:
                problems.append(str(exc))
        raise ValueError(" or ".join(problems))
    converter = _CONVERTERS.get(origin or annotation)
    return value if converter is None else converter(value)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    names.update({list: "a list", dict: "an object"})
    return names.get(type(value), type(value).__name__)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
