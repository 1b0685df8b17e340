"""Stored JSON on staff pages, bounded: a hostile payload cannot make a huge page.

Pretty-printing multiplies a deep value (each level indents every line below it:
a 64 KB event of arrays nested 800 deep made a 51.5 MB page). Here a value is
printed to at most ``VALUE_BYTES``, levels deeper than ``MAX_DEPTH`` are folded
(``[… 3 items]``), long strings are cut, and one page prints at most
``PAGE_BYTES`` of JSON in all (``page_budget()``); whatever is cut links to the
raw value, served as ``application/json`` by a view that checks the same
permission as the page. The printer stops as soon as the limit is reached, and
pages read a stored value as its first ``VALUE_BYTES`` characters of text and
its length (``stored()``), parsing it only when it is that small and the page's
budget allows, so the time a page takes is bounded too, however large and
deep the stored values and however many of them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from django.db.models import TextField
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, Length, Substr
from django.http import JsonResponse
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

VALUE_BYTES = 64 * 1024
PAGE_BYTES = 256 * 1024
MAX_DEPTH = 20
MAX_STRING = 4096  # characters of one string shown
TEXT_BYTES = 16 * 1024  # an error's message or traceback


@dataclass(frozen=True)
class Stored:
    """A JSON column as a page reads it: the start of its text, and the text's length."""

    head: str | None
    size: int | None

    def __bool__(self) -> bool:
        return self.head is not None

    @classmethod
    def of(cls, obj: Any, field: str) -> Any:
        """``obj``'s ``field`` as annotated by ``stored()``; the value itself if it was not."""
        key = field.replace("__", "_")
        if not hasattr(obj, f"{key}_size"):
            for part in field.split("__"):
                obj = getattr(obj, part, None)
            return obj
        return cls(getattr(obj, f"{key}_head"), getattr(obj, f"{key}_size"))


def stored(*fields: str, head: int = VALUE_BYTES) -> dict[str, Any]:
    """Annotations reading each JSON column (``output``, ``event__data``...) as the first
    ``head`` characters of its text and the text's length, for ``Stored.of()``: defer
    the column itself, and a page never loads a value whole."""
    annotations: dict[str, Any] = {}
    for field in fields:
        text = Cast(field, output_field=TextField())
        key = field.replace("__", "_")
        annotations[f"{key}_head"] = Substr(text, 1, head + 1)
        annotations[f"{key}_size"] = Length(text)
    return annotations


_budget: ContextVar[list[int] | None] = ContextVar("durable_flows_json_budget", default=None)


@contextmanager
def page_budget(total: int = PAGE_BYTES) -> Iterator[None]:
    """Within the block (one page's rendering), all JSON shown shares ``total`` bytes."""
    token = _budget.set([total])
    try:
        yield
    finally:
        _budget.reset(token)


def _allowance(limit: int) -> int:
    budget = _budget.get()
    return limit if budget is None else max(0, min(limit, budget[0]))


def _spend(used: int) -> None:
    budget = _budget.get()
    if budget is not None:
        budget[0] -= used


def _scalar(value: Any) -> str:
    if isinstance(value, str) and len(value) > MAX_STRING:
        cut = json.dumps(value[:MAX_STRING], ensure_ascii=False)
        return f'{cut[:-1]}…" (+{len(value) - MAX_STRING} characters)'
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)[:MAX_STRING]


class _Text(str):
    """Stored JSON text shown as it is (not parsed)."""


def _chunks(value: Any, depth: int, folded: list[bool]) -> Iterator[str]:
    """``json.dumps(value, indent=2)`` piece by piece, deep levels folded (and then
    ``folded[0]`` set: what is not shown is in the raw JSON)."""
    if isinstance(value, _Text):
        yield from (value[i : i + 4096] for i in range(0, len(value), 4096))
        return
    pad = "  " * depth
    if isinstance(value, dict | list) and value and depth >= MAX_DEPTH:
        folded[0] = True
        yield f"{{… {len(value)} keys}}" if isinstance(value, dict) else f"[… {len(value)} items]"
        return
    if isinstance(value, dict) and value:
        yield "{"
        for index, (key, item) in enumerate(value.items()):
            yield f"{',' if index else ''}\n{pad}  {_scalar(str(key))}: "
            yield from _chunks(item, depth + 1, folded)
        yield f"\n{pad}}}"
    elif isinstance(value, list) and value:
        yield "["
        for index, item in enumerate(value):
            yield f"{',' if index else ''}\n{pad}  "
            yield from _chunks(item, depth + 1, folded)
        yield f"\n{pad}]"
    else:
        if isinstance(value, str) and len(value) > MAX_STRING:
            folded[0] = True
        yield _scalar(value)


def _bounded(pieces: Iterator[str], limit: int) -> tuple[str, bool]:
    """HTML-escaped text of ``pieces`` up to ``limit`` bytes; and whether all of it fit."""
    out: list[str] = []
    size = 0
    for piece in pieces:
        text = escape(piece)
        length = len(text.encode())
        if size + length > limit:
            room = text.encode()[: max(0, limit - size)].decode(errors="ignore")
            if "&" in room[-6:]:  # never cut an entity in two
                room = room[: room.rindex("&")]
            out.append(room)
            return "".join(out), False
        out.append(text)
        size += length
    return "".join(out), True


def json_block(value: Any, raw_url: str | None, *, limit: int = VALUE_BYTES) -> SafeString:
    """A ``<pre>`` of ``value`` pretty-printed to at most ``limit`` bytes (less when the
    page's budget is low); when cut, a note and a link to the raw JSON."""
    if value is None or (isinstance(value, Stored) and not value):
        return format_html('<span class="muted">{}</span>', "—")
    allowance = _allowance(limit)
    parsed = 0  # what parsing cost, in characters: it counts against the page too
    if isinstance(value, Stored):
        if value.size is not None and value.size <= allowance:
            value, parsed = json.loads(value.head or "null"), value.size
        else:  # too large to parse here: the start of its text, as stored
            value = _Text(value.head or "")
    folded = [False]
    text, whole = _bounded(_chunks(value, 0, folded), allowance) if allowance else ("", False)
    _spend(max(len(text), parsed))
    if whole and not folded[0]:
        return format_html('<pre class="json">{}</pre>', mark_safe(text))  # noqa: S308 - escaped
    return format_html(
        '<pre class="json">{}</pre><p class="json-cut">{} {}</p>',
        mark_safe(text + ("" if whole else "\n…" if text else "…")),  # noqa: S308 - escaped
        "Cut short here: this value is larger or deeper than a page shows.",
        format_html('<a href="{}">Raw JSON</a>', raw_url) if raw_url else "",
    )


def text_block(value: Any, *, limit: int = TEXT_BYTES) -> tuple[str, bool]:
    """A string (an error's message or traceback) cut to ``limit`` bytes, escaped."""
    text, whole = _bounded(iter([str(value)]), _allowance(limit))
    _spend(len(text))
    return text, whole


def error_block(error: Any, raw_url: str | None) -> SafeString:
    """An error dict: its type, message and traceback, each cut short when long."""
    if isinstance(error, Stored):
        if error and error.size is not None and error.size <= _allowance(VALUE_BYTES):
            _spend(error.size)
            error = json.loads(error.head or "null")
        else:
            return json_block(error, raw_url)
    if not error:
        return format_html('<span class="muted">{}</span>', "—")
    if not isinstance(error, dict):
        return json_block(error, raw_url)
    kind, _ = text_block(error.get("type") or "Error", limit=200)
    message, whole_message = text_block(error.get("message", ""))
    traceback = error.get("traceback")
    trace, whole_trace = text_block(traceback) if traceback else ("", True)
    cut = not (whole_message and whole_trace)
    return format_html(
        '<div class="error-box"><div class="error-title"><b>{}</b>: {}</div>{}{}</div>',
        mark_safe(kind),  # noqa: S308 - escaped by text_block
        mark_safe(message),  # noqa: S308 - escaped by text_block
        format_html(
            '<details open><summary>Traceback</summary><pre class="traceback">{}</pre></details>',
            mark_safe(trace),  # noqa: S308 - escaped by text_block
        )
        if traceback
        else "",
        format_html('<p class="json-cut">Cut short. <a href="{}">Raw JSON</a></p>', raw_url)
        if cut and raw_url
        else "",
    )


def one_line(value: Any, limit: int = 80) -> str:
    """The start of ``value`` as compact JSON, for a table cell (not escaped)."""
    if isinstance(value, Stored):
        value = _Text(value.head or "")
    text = "".join(_first(_chunks(value, MAX_DEPTH - 2, [False]), limit * 2))
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _first(pieces: Iterator[str], limit: int) -> Iterator[str]:
    size = 0
    for piece in pieces:
        yield piece
        size += len(piece)
        if size >= limit:
            return


def raw_response(value: Any) -> JsonResponse:
    """The stored value whole, compact, as ``application/json`` (never rendered as HTML)."""
    response = JsonResponse(value, safe=False, json_dumps_params={"ensure_ascii": False})
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Disposition"] = "inline"
    return response


def error_line(error: Any) -> str:
    """``Type: first line of the message``, or "" when there is no error."""
    if not isinstance(error, dict):
        return ""
    message = str(error.get("message") or "").strip().splitlines()
    first = message[0] if message else ""
    first = first if len(first) <= 160 else first[:159] + "…"
    kind = str(error.get("type") or "Error")[:100]
    return f"{kind}: {first}" if first else kind


def error_heads() -> dict[str, Any]:
    """Annotations reading a stored error's type and the start of its message (never
    the whole value: a page stays bounded), for ``error_head``."""
    return {
        "error_type": Substr(KeyTextTransform("type", "error"), 1, 100),
        "error_message": Substr(KeyTextTransform("message", "error"), 1, 300),
    }


def error_head(record: Any) -> dict[str, Any] | None:
    """The error of a run or step annotated by ``error_heads``, or None."""
    kind = getattr(record, "error_type", None)
    message = getattr(record, "error_message", None)
    if kind is None and message is None:
        return None
    return {"type": kind or "Error", "message": message or ""}
