"""Events arriving over HTTP: JSON only, body size limit, shape checks, and Inngest's id seed.

Shared by ``POST api/events/`` (DRF) and ``POST /e/<key>`` (Inngest's Event API),
so both refuse the same bad input with the same messages. Both take JSON only,
as Inngest's Event API does: a body of any other ``Content-Type`` is a 415.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from ulid import ULID

from .conf import flow_settings
from .definitions.values import parse_json_body
from .events import send
from .exceptions import EventTooLargeError, EventValidationError

MAX_EVENTS_PER_REQUEST = 5000
JSON_MEDIA_TYPE = "application/json"


class MalformedBody(EventValidationError):
    """The body is not JSON (NaN and Infinity are not JSON either)."""


class UnsupportedContentType(EventValidationError):
    """The request says its body is not JSON (form-encoded, text...)."""

    status_code = 415


def check_content_type(content_type: str | None) -> None:
    """Refuse a body whose ``Content-Type`` (parameters such as ``charset`` aside) is not
    ``application/json``."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type != JSON_MEDIA_TYPE:
        given = repr(media_type) if media_type else "none"
        raise UnsupportedContentType(
            f"events are sent as JSON: the Content-Type must be {JSON_MEDIA_TYPE}, not {given}"
        )


def body_limit() -> int:
    """Bytes a request body may have: Django's upload limit, or room for a few maximal events."""
    django_limit = getattr(settings, "DATA_UPLOAD_MAX_MEMORY_SIZE", None) or 0
    return max(django_limit, 4 * int(flow_settings.MAX_EVENT_BYTES))


def read_body(stream: Any) -> bytes:
    """Read at most ``body_limit()`` bytes; a longer body is refused without reading it all."""
    limit = body_limit()
    raw = stream.read(limit + 1) if stream is not None else b""
    if len(raw) > limit:
        raise EventTooLargeError(f"the request body is over {limit} bytes")
    return raw


def parse(raw: bytes) -> Any:
    if not raw.strip():
        raise MalformedBody("the request body is empty; send an event object or a list of them")
    try:
        return parse_json_body(raw)
    except RecursionError:
        raise MalformedBody("malformed JSON: nested too deeply") from None
    except ValueError as exc:
        raise MalformedBody(f"malformed JSON: {exc}") from None


def event_items(payload: Any) -> list[Any]:
    """The events in a body that is one event object or a list of them."""
    if isinstance(payload, dict):
        return [payload]
    if not isinstance(payload, list):
        raise EventValidationError(
            "the body must be an event object or a list of event objects, "
            f"not a JSON {type(payload).__name__}"
        )
    if not payload:
        raise EventValidationError("the list of events is empty")
    if len(payload) > MAX_EVENTS_PER_REQUEST:
        raise EventValidationError(
            f"{len(payload)} events in one request; at most {MAX_EVENTS_PER_REQUEST} are accepted"
        )
    return payload


def _check_text(items: list[Any]) -> None:
    # PostgreSQL cannot store NUL in text columns; refuse it here as bad input
    # rather than let the database fail with a server error.
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        for field in ("name", "id"):
            value = item.get(field)
            if isinstance(value, str) and "\x00" in value:
                where = f"event {index}" if index else "event"
                raise EventValidationError(f"{where}: {field!r} must not contain NUL characters")


def seeded_ids(seed: str | None, count: int) -> list[str] | None:
    """Inngest's ``x-inngest-event-id-seed`` ("<millis>,<base64 of 10 bytes>") as ULIDs.

    The i-th id adds i to the seed's last four bytes, as Inngest's server does,
    so a client that retries a request gets the same ids and, with them, the
    deduplication that makes its retry harmless. A malformed seed is ignored.
    """
    if not seed or "," not in seed:
        return None
    millis_text, _, entropy_text = seed.partition(",")
    try:
        millis = int(millis_text)
        entropy = base64.b64decode(entropy_text, validate=True)
    except (ValueError, binascii.Error):
        return None
    if len(entropy) != 10 or not 0 <= millis < 2**48:
        return None
    head, tail = entropy[:6], int.from_bytes(entropy[6:], "big")
    ids = []
    for index in range(count):
        last = ((tail + index) % 2**32).to_bytes(4, "big")
        ids.append(str(ULID.from_bytes(millis.to_bytes(6, "big") + head + last)))
    return ids


def send_payload(payload: Any, *, id_seed: str | None = None) -> list[str]:
    """Validate and send the events in a parsed body; returns their ids in order."""
    items = event_items(payload)
    _check_text(items)
    ids = seeded_ids(id_seed, len(items))
    if ids is not None:
        items = [
            {**item, "id": ids[i]}
            if isinstance(item, dict) and item.get("id") in (None, "")
            else item
            for i, item in enumerate(items)
        ]
    return send(items)


def send_request(request: HttpRequest, *, id_seed: str | None = None) -> list[str]:
    raw = read_body(request)
    if raw:  # an empty body is refused as such by parse(), whatever it claims to be
        check_content_type(request.content_type)
    return send_payload(parse(raw), id_seed=id_seed)
