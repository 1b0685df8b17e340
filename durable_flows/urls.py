from django.urls import path

from . import views

app_name = "durable_flows"

urlpatterns = [
    path("api/events/", views.events_api, name="api-events"),
]
