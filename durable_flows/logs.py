"""Event keys never reach the logs in the clear.

``POST /e/<key>`` carries its credential in the path, and every access log and
Django's 4xx warnings (``Method Not Allowed: /e/dfk_…``) print the path.
``MaskEventKeys`` rewrites a log record's message so that the path segment
after the Event API's route and anything shaped like an event key
(``dfk_`` and its random part) keep only the key's public prefix, the one the
admin lists (``dfk_Xc2a9Qe…``); another segment there (a wrong key) is
replaced whole (``/e/…``).

``install()`` (called by the app's ``ready()``) adds the filter to the loggers
that print request paths: Django's (``django.request``, ``django.server``)
and those of gunicorn and uvicorn. Records of other loggers can be masked by
adding the filter to a handler in ``LOGGING``. uWSGI writes its request log
itself, outside Python: ``UWSGIMaskedURI`` sets a ``%(masked_uri)`` log
variable to use in its ``logformat`` instead of ``%(uri)``.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse

from .keys import KEY_PREFIX, PREFIX_LENGTH

LOGGERS = (
    "django.request",
    "django.server",
    "gunicorn.access",
    "gunicorn.error",
    "uvicorn.access",
    "uvicorn.error",
)
# A key's random part is 43 characters; its shown prefix has 8 of them, so a prefix
# (already masked) does not match again.
_KEY = re.compile(re.escape(KEY_PREFIX) + r"[A-Za-z0-9_-]{9,}")
_SEGMENT = r"([^/\s?#\"'<>]+)"


def _shown(key: str) -> str:
    """What may be logged of a key: the prefix the admin lists, or nothing."""
    return key[:PREFIX_LENGTH] + "…" if key.startswith(KEY_PREFIX) else "…"


def _event_api_routes() -> re.Pattern[str]:
    """The paths of Inngest's Event API as mounted (``/e/`` when the URLconf cannot tell
    yet), as a regex: a path that starts there, alone or after a scheme and host."""
    prefixes = _route_prefixes()
    return _routes_regex(prefixes or ("/e/",))


@functools.cache
def _routes_regex(prefixes: tuple[str, ...]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(p) for p in sorted(prefixes, key=len, reverse=True))
    return re.compile(rf"(?<![\w./-])((?:https?://[^/\s\"'<>]+)?(?:{alternatives})){_SEGMENT}")


_found_prefixes: tuple[str, ...] = ()


def _route_prefixes() -> tuple[str, ...]:
    """Where ``inngest_event_api`` is routed, found once the URLconf can be read."""
    global _found_prefixes
    if not _found_prefixes:
        _found_prefixes = tuple(sorted(set(_walk_urlconf())))
    return _found_prefixes


def _walk_urlconf() -> list[str]:
    from django.apps import apps
    from django.urls import URLPattern, URLResolver, get_resolver

    if not apps.ready:  # never import the URLconf from a log call during start-up
        return []
    found: list[str] = []

    def walk(patterns: list[Any], prefix: str) -> None:
        for pattern in patterns:
            route = str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, prefix + route)
            elif isinstance(pattern, URLPattern) and (
                getattr(pattern.callback, "__name__", "") == "inngest_event_api"
            ):
                found.append("/" + (prefix + route).split("<", 1)[0].lstrip("^"))

    try:
        walk(get_resolver().url_patterns, "")
    except Exception:  # an URLconf that cannot be read yet: the default route
        return []
    return found


def mask(text: str) -> str:
    """``text`` with every event key, and the Event API's path segment, masked."""
    if "/" not in text and KEY_PREFIX not in text:
        return text
    text = _event_api_routes().sub(lambda m: m.group(1) + _shown(m.group(2)), text)
    return _KEY.sub(lambda m: _shown(m.group(0)), text)


class MaskEventKeys(logging.Filter):
    """Masks event keys in a record's message (its arguments are formatted into it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the handler's to report
            return True
        masked = mask(message)
        if masked != message:
            record.msg, record.args = masked, ()
        return True


def install() -> None:
    """Add the filter to the loggers that print request paths (once per logger)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, MaskEventKeys) for f in logger.filters):
            logger.addFilter(MaskEventKeys())


class UWSGIMaskedURI:
    """Middleware for uWSGI: ``%(masked_uri)`` in its ``logformat`` is the request URI
    with event keys masked (uWSGI's own ``%(uri)`` is not)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        try:  # an optional dependency: present only under uWSGI
            import uwsgi
        except ImportError:
            uwsgi = None
        self.uwsgi = uwsgi

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if self.uwsgi is not None:
            self.uwsgi.set_logvar("masked_uri", mask(request.get_full_path()))
        return self.get_response(request)
