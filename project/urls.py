from django.contrib import admin
from django.urls import include, path
from django.views.generic import TemplateView

import durable_flows.views

urlpatterns = [
    path("", TemplateView.as_view(template_name="home.html"), name="home"),
    path("admin/", admin.site.urls),
    path("flows/", include("durable_flows.urls")),
    path("e/<str:key>", durable_flows.views.inngest_event_api, name="inngest-event-api"),
]
