"""The REST API's endpoints (docs/http.md).

Staff (or ``API_PERMISSION_CLASSES``) everywhere; event keys may send.
"""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import Prefetch, QuerySet
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.renderers import OpenApiJsonRenderer, OpenApiYamlRenderer
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularAPIView
from rest_framework import exceptions, generics, mixins, parsers, status, viewsets
from rest_framework.decorators import action
from rest_framework.pagination import PageNumberPagination
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import exception_handler

from .. import __version__, control, ingest, permissions
from ..definitions.functions import registry
from ..exceptions import EventValidationError, RunNotFound, StepUsageError
from ..middleware import url_problem
from ..models import Event, Run, RunStatus, Step
from . import serializers as s
from .auth import AUTHENTICATION_CLASSES, EventKeyOrUser, user_permissions


class EventKeyScheme(OpenApiAuthenticationExtension):
    target_class = "durable_flows.api.auth.EventKeyAuthentication"
    name = "eventKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "description": "An event key"}


class StrictJSONParser(parsers.BaseParser):
    """JSON without NaN or Infinity, and with a bounded body (413 past it)."""

    media_type = "application/json"

    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        return ingest.parse(ingest.read_body(stream))


class Pagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


def handle_exception(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus our own errors as 4xx, with an ``error`` message in every body
    (and ``fields``, each field's messages, when event data does not fit its schema)."""
    fields = None
    if isinstance(exc, EventValidationError):
        fields = exc.fields
        api_exc = exceptions.APIException(str(exc))
        api_exc.status_code = exc.status_code
        exc = api_exc
    elif isinstance(exc, RunNotFound):
        exc = exceptions.NotFound(str(exc))
    response = exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict):
        detail = response.data.get("detail")
        response.data["error"] = str(detail) if detail is not None else _one_line(response.data)
        if fields:
            response.data["fields"] = fields
    return response


def _one_line(errors: Any) -> str:
    """DRF's field errors (``{"status": ["Select a valid choice..."]}``) as one message."""
    if isinstance(errors, dict):
        return "; ".join(f"{field}: {_one_line(value)}" for field, value in errors.items())
    if isinstance(errors, list):
        return " ".join(_one_line(value) for value in errors)
    return str(errors)


class APIMixin:
    authentication_classes = AUTHENTICATION_CLASSES
    renderer_classes = [JSONRenderer]
    parser_classes = [StrictJSONParser]
    pagination_class = Pagination
    schema = AutoSchema()
    # action -> a rule of durable_flows.permissions (None: the view's only rule)
    permission_rules: dict[str | None, str] = {}

    def get_permissions(self) -> list[Any]:
        return user_permissions()

    def get_exception_handler(self) -> Any:
        return handle_exception

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        reject_malformed_url(request)
        super().initial(request, *args, **kwargs)  # type: ignore[misc]


def reject_malformed_url(request: Request) -> None:
    """NUL or invalid UTF-8 in the URL: a 400, before authentication or any query."""
    problem = url_problem(request._request)
    if problem:
        raise exceptions.ParseError(f"Bad request: {problem}.")


class RunFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=RunStatus.choices)
    function_id = django_filters.CharFilter()
    event_name = django_filters.CharFilter(field_name="event__name")
    event = django_filters.CharFilter(field_name="event_id", label="Event id")

    class Meta:
        model = Run
        fields = ["status", "function_id", "event_name", "event"]


class EventFilter(django_filters.FilterSet):
    name = django_filters.CharFilter()
    sender_id = django_filters.CharFilter()

    class Meta:
        model = Event
        fields = ["name", "sender_id"]


class RunSchema(AutoSchema):
    """cancel, rerun and retry take no body and answer with the run (the new one for
    rerun); signal takes a name and data and answers 202."""

    def get_request_serializer(self) -> Any:
        if getattr(self.view, "action", None) in ("cancel", "rerun", "retry"):
            return None
        if getattr(self.view, "action", None) == "signal":
            return s.SignalInSerializer
        return super().get_request_serializer()

    def get_response_serializers(self) -> Any:
        action_name = getattr(self.view, "action", None)
        if action_name == "cancel":
            return {200: s.RunDetailSerializer, 404: s.ErrorSerializer}
        if action_name == "rerun":
            return {201: s.RunDetailSerializer, 404: s.ErrorSerializer}
        if action_name == "retry":
            return {200: s.RunDetailSerializer, 404: s.ErrorSerializer, 409: s.ErrorSerializer}
        if action_name == "signal":
            return {202: s.SignalSentSerializer, 400: s.ErrorSerializer, 404: s.ErrorSerializer}
        return super().get_response_serializers()


class EventSchema(AutoSchema):
    """POST takes one event or a list and answers with their ids."""

    def get_request_serializer(self) -> Any:
        if self.method == "POST":
            return {
                "application/json": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/EventIn"},
                        {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/EventIn"},
                            "minItems": 1,
                            "maxItems": ingest.MAX_EVENTS_PER_REQUEST,
                        },
                    ]
                }
            }
        return super().get_request_serializer()

    def get_response_serializers(self) -> Any:
        if self.method == "POST":
            errors = dict.fromkeys((400, 401, 403, 413, 415), s.ErrorSerializer)
            return {201: s.SentSerializer, **errors}
        return super().get_response_serializers()


class RunViewSet(APIMixin, viewsets.ReadOnlyModelViewSet):
    """Runs, newest first; a run's detail has its ``steps`` in order."""

    schema = RunSchema()
    permission_rules = {
        None: "view_runs",
        "cancel": "control_runs",
        "rerun": "control_runs",
        "retry": "control_runs",
        "signal": "control_runs",
    }

    filter_backends = [DjangoFilterBackend]
    filterset_class = RunFilter

    def get_queryset(self) -> QuerySet[Run]:
        runs = Run.objects.select_related("event").order_by("-created_at", "-id")
        if self.action != "list":
            runs = runs.prefetch_related(Prefetch("steps", Step.objects.order_by("position", "id")))
        return runs

    def get_serializer_class(self) -> type:
        return s.RunSerializer if self.action == "list" else s.RunDetailSerializer

    def _answer(self, run_id: str, code: int) -> Response:
        run = self.get_queryset().get(pk=run_id)
        return Response(s.RunDetailSerializer(run).data, status=code)

    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        """Cancel the run (a running one stops between steps); a finished run is unchanged."""
        run = control.cancel(pk)
        return self._answer(run.pk, status.HTTP_200_OK)

    @action(detail=True, methods=["post"])
    def rerun(self, request: Request, pk: str) -> Response:
        """Start a new run of the same function from the same event."""
        new_id = control.rerun(pk)
        return self._answer(new_id, status.HTTP_201_CREATED)

    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str) -> Response:
        """Resume a failed run from the step that failed it (409 if it had not failed)."""
        try:
            run = control.retry(pk)
        except control.NotRetriable as exc:
            return Response(
                {"error": str(exc), "detail": str(exc)}, status=status.HTTP_409_CONFLICT
            )
        return self._answer(run.pk, status.HTTP_200_OK)

    @action(detail=True, methods=["post"])
    def signal(self, request: Request, pk: str) -> Response:
        """Send a signal to the run: its next ``wait_for_signal`` of that name takes it
        (404 if the run is unknown or finished)."""
        body = s.SignalInSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            signal_id = control.signal(pk, body.validated_data["name"], body.validated_data["data"])
        except StepUsageError as exc:
            raise exceptions.ValidationError({"data": [str(exc)]}) from None
        return Response({"id": signal_id, "run_id": pk}, status=status.HTTP_202_ACCEPTED)


# The request body of POST api/events/: one of these, or a list of them.
EVENT_IN_SCHEMA = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 255},
        "data": {"type": "object", "additionalProperties": True},
        "id": {"type": "string", "minLength": 1, "maxLength": 255, "description": "Dedup key"},
        "ts": {"type": "integer", "minimum": 0, "description": "Milliseconds since the epoch"},
    },
}


class EventViewSet(
    APIMixin, mixins.CreateModelMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):  # fmt: skip
    """Events, newest first; POST sends one event or a list (event key or staff)."""

    filter_backends = [DjangoFilterBackend]
    filterset_class = EventFilter
    schema = EventSchema()
    lookup_value_regex = ".+"
    permission_rules = {None: "view_events", "create": "send_events"}

    def get_queryset(self) -> QuerySet[Event]:
        events = Event.objects.order_by("-received_at", "-id")
        if self.action == "retrieve":
            runs = Run.objects.select_related("event").order_by("created_at", "id")
            events = events.prefetch_related(Prefetch("runs", runs))
        return events

    def get_serializer_class(self) -> type:
        if self.action == "retrieve" and permissions.can_view_runs(self.request.user):
            return s.EventDetailSerializer  # with the runs it started: they need view_run
        return s.EventSerializer

    def get_permissions(self) -> list[Any]:
        if self.action == "create":
            return [EventKeyOrUser()]
        return super().get_permissions()

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        if request.stream is None:  # DRF hands an empty body over as {} without parsing it
            ingest.parse(b"")  # raises: the body is empty
        ingest.check_content_type(request.content_type)
        ids = ingest.send_payload(request.data)
        return Response({"ids": ids}, status=status.HTTP_201_CREATED)


@extend_schema(responses=s.FunctionSerializer(many=True))
class FunctionListView(APIMixin, generics.ListAPIView):
    """Registered functions with their triggers and options."""

    serializer_class = s.FunctionSerializer
    permission_rules = {None: "view_runs"}

    def get_queryset(self) -> list[dict[str, Any]]:
        return [f.describe() for f in sorted(registry.all(), key=lambda f: f.id)]

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(page)


def only_durable_flows(endpoints: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Preprocessing hook: the schema documents this API only, not the whole project."""
    return [
        endpoint
        for endpoint in endpoints
        if getattr(getattr(endpoint[3], "cls", None), "__module__", "") == __name__
        and getattr(endpoint[3], "cls", None) is not SchemaView
    ]


class SchemaView(SpectacularAPIView):
    """The OpenAPI 3 document of this API (JSON; ``?format=yaml`` for YAML)."""

    authentication_classes = AUTHENTICATION_CLASSES
    renderer_classes = [OpenApiJsonRenderer, OpenApiYamlRenderer]
    custom_settings = {
        "TITLE": "durable_flows API",
        "DESCRIPTION": "Events, runs and steps of durable_flows; send events, cancel and rerun.",
        "VERSION": __version__,
        "PREPROCESSING_HOOKS": [f"{__name__}.only_durable_flows"],
        "COMPONENT_SPLIT_REQUEST": True,
        "ENUM_NAME_OVERRIDES": {"RunStatusEnum": RunStatus.choices},
        "APPEND_COMPONENTS": {"schemas": {"EventIn": EVENT_IN_SCHEMA}},
    }

    permission_rules = {None: "read"}

    def get_permissions(self) -> list[Any]:
        return user_permissions()

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        reject_malformed_url(request)
        super().initial(request, *args, **kwargs)

    def get_exception_handler(self) -> Any:
        return handle_exception
