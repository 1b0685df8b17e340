"""One search box: an exact run id opens the run, an event id (or a sender's id) the
event, or the runs it started for those who may not read events."""

from __future__ import annotations

from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse

from .. import permissions
from ..models import Event, Run
from .common import param, render_page, requires

MAX_TERM = 255  # longer than any id: nothing to look up


@requires("view_runs")
def search(request: HttpRequest) -> HttpResponse:
    term = param(request, "q")
    if term and len(term) <= MAX_TERM:
        if Run.objects.filter(pk=term).exists():
            return redirect("durable_flows:run", run_id=term)
        event_ids = list(Event.objects.filter(pk=term).values_list("id", flat=True)[:1])
        event_ids = event_ids or list(
            Event.objects.filter(sender_id=term)
            .order_by("-received_at")
            .values_list("id", flat=True)[:2]
        )
        if len(event_ids) == 1:
            if permissions.can_view_events(request.user):
                return redirect("durable_flows:event", event_id=event_ids[0])
            return redirect(
                reverse("durable_flows:dashboard") + "?" + urlencode({"event": event_ids[0]})
            )
        if event_ids:  # a sender's id reused after the deduplication window
            query = urlencode({"sender_id": term})
            if permissions.can_view_events(request.user):
                return redirect(reverse("durable_flows:events") + "?" + query)
    context = {"term": term, "too_long": len(term) > MAX_TERM, "nav": "search"}
    return render_page(request, "search.html", context, status=200)
