"""URLs that cannot name anything: NUL or invalid UTF-8 in the path or the query string.

No stored id or name contains them, and PostgreSQL refuses NUL in any query
(``psycopg.DataError``), which Django's admin turns into a server error. They
are answered ``400`` before any view runs:

- ``RejectMalformedURLs``, a middleware for the whole project (put it first
  in ``MIDDLEWARE``): it also covers Django's own admin views for these models
  (``admin/r/<content type>/<id>/``, the login page's ``?next=``);
- without it, the app's own views still refuse such URLs themselves: the
  dashboard, the API, ``POST /e/<key>`` and the admin pages of its models.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import unquote_to_bytes

from django.http import HttpRequest, HttpResponse, JsonResponse


def url_problem(request: HttpRequest) -> str | None:
    """What makes the request's URL unservable (NUL, invalid UTF-8), or None."""
    for part, raw in (("path", _raw_path(request)), ("query string", _raw_query(request))):
        if b"\x00" in raw:
            return f"the URL's {part} contains a NUL character"
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return f"the URL's {part} is not valid UTF-8"
    return None


def _raw_path(request: HttpRequest) -> bytes:
    """The path's bytes as the client sent them, percent-decoded."""
    scope = getattr(request, "scope", None)
    target = request.META.get("RAW_URI") or request.META.get("REQUEST_URI")
    if scope is not None and scope.get("raw_path"):  # ASGI
        raw = bytes(scope["raw_path"])
    elif isinstance(target, str) and target:  # gunicorn; uWSGI, mod_wsgi
        raw = target.partition("?")[0].encode("iso-8859-1", "replace")
    else:
        # Django has re-percent-encoded the invalid UTF-8 of the path it was given,
        # so decoding again finds it (and takes a literal "%FF" in a path, sent as
        # "%25FF", for invalid UTF-8 too: no id needs one).
        raw = request.path_info.encode("utf-8", "surrogatepass")
    return unquote_to_bytes(raw)


def _raw_query(request: HttpRequest) -> bytes:
    query = request.META.get("QUERY_STRING", "")
    raw = query.encode("iso-8859-1", "replace") if isinstance(query, str) else bytes(query)
    return unquote_to_bytes(raw.replace(b"+", b" "))


def bad_url_response(request: HttpRequest, problem: str) -> HttpResponse:
    """``400``: JSON for the app's JSON endpoints (the API, Inngest's Event API), else text."""
    message = f"Bad request: {problem}."
    if _wants_json(request):
        return JsonResponse(
            {"error": message, "detail": message, "ids": [], "status": 400}, status=400
        )
    return HttpResponse(message, status=400, content_type="text/plain; charset=utf-8")


def _wants_json(request: HttpRequest) -> bool:
    """A URL of the API (even one that names no endpoint) or of Inngest's Event API."""
    from django.urls import NoReverseMatch, Resolver404, resolve, reverse

    try:
        api_root = reverse("durable_flows:api-functions").removesuffix("functions/")
    except NoReverseMatch:
        api_root = None
    if api_root and request.path.startswith(api_root):
        return True
    try:
        view = resolve(request.path_info).func
    except Resolver404:
        return False
    return getattr(view, "__name__", "") == "inngest_event_api"


def reject_malformed_urls(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """The same check on one view, for projects without the middleware."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        problem = url_problem(request)
        if problem:
            return bad_url_response(request, problem)
        return view(request, *args, **kwargs)

    return wrapper


class RejectMalformedURLs:
    """``400`` for any URL with NUL or invalid UTF-8 in its path or query string."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        problem = url_problem(request)
        if problem:
            return bad_url_response(request, problem)
        return self.get_response(request)
