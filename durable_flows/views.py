"""HTTP entry points. The REST API and dashboard live in ``durable_flows.api`` (planned)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .events import parse_json_body, send
from .exceptions import EventValidationError


def _error(status: int, message: str, **extra: Any) -> JsonResponse:
    return JsonResponse({"error": message, **extra}, status=status)


@require_POST
def events_api(request: HttpRequest) -> JsonResponse:
    """POST api/events/ for staff sessions: one event object or a list."""
    if not (request.user.is_authenticated and request.user.is_staff):
        return _error(401 if not request.user.is_authenticated else 403, "staff only")
    try:
        body = parse_json_body(request.body)
        ids = send(body if isinstance(body, list) else [body])
    except ValueError as exc:
        status = getattr(exc, "status_code", 400)
        return _error(status, str(exc))
    return JsonResponse({"ids": ids}, status=201)


@csrf_exempt
@require_POST
def inngest_event_api(request: HttpRequest, key: str) -> JsonResponse:
    """Inngest's Event API (``POST /e/<key>``). Event keys are not implemented yet: 401."""
    del key
    return JsonResponse(
        {"ids": [], "status": 401, "error": "event keys are not configured"}, status=401
    )


__all__ = ["EventValidationError", "events_api", "inngest_event_api"]
