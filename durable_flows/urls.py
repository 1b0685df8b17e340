"""Mount with ``path("flows/", include("durable_flows.urls"))``: the dashboard and the REST API."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from . import dashboard
from .api import views as api

app_name = "durable_flows"

router = SimpleRouter()
router.register("api/runs", api.RunViewSet, basename="api-run")
router.register("api/events", api.EventViewSet, basename="api-event")

urlpatterns = [
    path("", dashboard.runs, name="dashboard"),
    path("runs/<str:run_id>/", dashboard.run_detail, name="run"),
    path("runs/<str:run_id>/cancel/", dashboard.run_cancel, name="run-cancel"),
    path("runs/<str:run_id>/rerun/", dashboard.run_rerun, name="run-rerun"),
    path("runs/<str:run_id>/retry/", dashboard.run_retry, name="run-retry"),
    path("events/", dashboard.events, name="events"),
    path("events/send/", dashboard.send_event, name="send-event"),
    path("events/<path:event_id>/", dashboard.event_detail, name="event"),
    path("functions/", dashboard.functions, name="functions"),
    path("workers/", dashboard.workers_page, name="workers"),
    path("search/", dashboard.search, name="search"),
    path("api/functions/", api.FunctionListView.as_view(), name="api-functions"),
    path("api/schema/", api.SchemaView.as_view(), name="api-schema"),
    *router.urls,
]
