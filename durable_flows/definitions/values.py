"""Values as JSON: what event data, step results, function outputs and invoke data may hold,
and the one encoding every database stores.

Plain JSON types are encoded as they are (the fast path). Dates, times, ``Decimal``,
``UUID`` (and ``timedelta`` and lazy translation strings) are encoded as Django's
``DjangoJSONEncoder`` encodes them: ISO 8601 strings, a ``Decimal`` and a ``UUID`` as
strings. A value is then read back as that JSON, on its first use as on every replay.
Anything else (a set, an arbitrary object) is refused, saying what it is and where.
"""

from __future__ import annotations

import json
import math
import re
from datetime import date, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.core.serializers.json import DjangoJSONEncoder
from django.utils.functional import Promise

# What DjangoJSONEncoder encodes (a datetime is a date); a time with a UTC offset excepted.
ENCODED_TYPES = (date, time, timedelta, Decimal, UUID, Promise)

_ESCAPED_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")  # \u0000 not preceded by an odd \


def _dumps(value: Any) -> tuple[str, bool]:
    """``value`` as compact JSON text, and whether DjangoJSONEncoder had to convert
    something in it (plain JSON never pays for the encoder)."""
    try:
        return json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":")), False
    except TypeError:
        text = json.dumps(
            value,
            cls=DjangoJSONEncoder,
            allow_nan=False,
            ensure_ascii=False,
            separators=(",", ":"),
        )
        return text, True


def encode(value: Any, root: str = "value") -> tuple[bytes, bool]:
    """``value`` as compact UTF-8 JSON that every database can store, and whether it was
    converted (it reads back as something else than ``value``); or ``ValueError`` saying
    what is wrong and where, from ``root``: ``is not JSON: set at data['tags']``."""
    try:
        text, converted = _dumps(value)
        encoded = text.encode()
    except RecursionError:
        raise ValueError("is nested too deeply") from None
    except UnicodeEncodeError:
        raise ValueError("contains an unpaired surrogate, which is not valid Unicode") from None
    except (TypeError, ValueError) as exc:
        raise ValueError(f"is not JSON: {_not_json(value, root, set()) or exc}") from None
    if "\\u0000" in text and _ESCAPED_NUL.search(text):
        raise ValueError("contains a NUL character, which databases cannot store")
    return encoded, converted


def json_bytes(value: Any, root: str = "value") -> bytes:
    """``value`` encoded by ``encode``."""
    return encode(value, root)[0]


def as_stored(value: Any, root: str = "value") -> tuple[Any, int]:
    """``value`` as it reads back once stored, and its size in bytes: plain JSON is
    returned as it is, a value with dates, decimals... as its JSON decoded."""
    encoded, converted = encode(value, root)
    return (json.loads(encoded) if converted else value), len(encoded)


def _not_json(value: Any, path: str, open_containers: set[int]) -> str | None:
    """The first thing in ``value`` that the encoding refuses, and where; None if none."""
    if value is None or isinstance(value, str | int):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"float {value!r} at {path}"
    if isinstance(value, time) and value.utcoffset() is not None:
        return f"time with a UTC offset at {path} (a time of day is encoded without one)"
    if isinstance(value, ENCODED_TYPES):
        return None
    if not isinstance(value, dict | list | tuple):
        return f"{type(value).__name__} at {path}"
    if id(value) in open_containers:
        return f"a reference to a containing {type(value).__name__} at {path}"
    open_containers.add(id(value))
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        if isinstance(value, dict) and not (key is None or isinstance(key, str | int | float)):
            return f"a {type(key).__name__} key at {path} (keys must be strings)"
        found = _not_json(item, f"{path}[{_shown(key)}]", open_containers)
        if found is not None:
            return found
    open_containers.discard(id(value))
    return None


def _shown(key: Any) -> str:
    text = repr(key)
    return text if len(text) <= 40 else text[:37] + "..."


def _reject_constant(value: str) -> None:
    raise ValueError(f"{value} is not valid JSON")


def parse_json_body(body: bytes | str) -> Any:
    """Strict JSON for HTTP bodies: NaN and Infinity are refused."""
    return json.loads(body, parse_constant=_reject_constant)
