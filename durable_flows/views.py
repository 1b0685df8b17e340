"""Inngest's Event API (``POST /e/<key>``), for Inngest SDK clients.

The dashboard lives in ``durable_flows.dashboard`` and the REST API in
``durable_flows.api``; both are routed by ``durable_flows.urls``.
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from . import ingest
from .exceptions import EventValidationError
from .keys import authenticate
from .middleware import url_problem

SEED_HEADER = "x-inngest-event-id-seed"


def _reply(
    status: int,
    ids: list[str] | None = None,
    error: str | None = None,
    fields: dict[str, list[str]] | None = None,
) -> JsonResponse:
    body: dict[str, object] = {"ids": ids or [], "status": status}
    if error is not None:
        body["error"] = error
    if fields:
        body["fields"] = fields
    return JsonResponse(body, status=status)


@csrf_exempt
def inngest_event_api(request: HttpRequest, key: str) -> JsonResponse:
    """One event or a list: ``200 {"ids", "status"}``; a client's mistake is a 4xx JSON error.

    Errors are never HTML and never 5xx, because Inngest's client retries 5xx
    answers for seconds and cannot parse anything but JSON.
    """
    problem = url_problem(request)
    if problem:
        return _reply(400, error=f"Bad request: {problem}.")
    if request.method != "POST":
        response = _reply(405, error="send events with POST")
        response["Allow"] = "POST"
        return response
    if authenticate(key) is None:
        return _reply(401, error="Event key not found (wrong or revoked)")
    try:
        ids = ingest.send_request(request, id_seed=request.headers.get(SEED_HEADER))
    except EventValidationError as exc:
        return _reply(exc.status_code, error=str(exc), fields=exc.fields)
    return _reply(200, ids=ids)
