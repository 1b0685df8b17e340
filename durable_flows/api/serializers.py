"""Field names are the models' (docs/reference/models.md)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from .. import clock
from ..conf import db_alias
from ..engine import workers
from ..models import Event, Run, RunStatus, Step


class StepSerializer(serializers.ModelSerializer):
    class Meta:
        model = Step
        fields = [
            "run",
            "name",
            "kind",
            "status",
            "position",
            "output",
            "error",
            "attempts",
            "failed_attempts",
            "started_at",
            "ended_at",
        ]


class RunSerializer(serializers.ModelSerializer):
    event_name = serializers.CharField(source="event.name", read_only=True, allow_null=True)
    unserved = serializers.SerializerMethodField(
        help_text="True when the run is queued and no live worker executes its function: "
        "it stays queued until a worker that defines the function starts."
    )

    def get_unserved(self, run: Run) -> bool:
        if run.status != RunStatus.QUEUED:
            return False
        if "served_functions" not in self.context:  # one query per response
            self.context["served_functions"] = workers.served(db_alias(), clock.now())
        served: Any = self.context["served_functions"]
        return run.function_id not in served

    class Meta:
        model = Run
        fields = [
            "id",
            "function_id",
            "status",
            "event",
            "event_name",
            "output",
            "error",
            "created_at",
            "started_at",
            "ended_at",
            "queue",
            "attempt",
            "cancel_requested",
            "rerun_of",
            "unserved",
        ]


class RunDetailSerializer(RunSerializer):
    steps = StepSerializer(many=True, read_only=True)

    class Meta(RunSerializer.Meta):
        fields = [*RunSerializer.Meta.fields, "steps"]


class EventSerializer(serializers.ModelSerializer):
    class Meta:
        model = Event
        fields = ["id", "sender_id", "name", "data", "ts", "received_at"]


class EventDetailSerializer(EventSerializer):
    runs = RunSerializer(many=True, read_only=True)

    class Meta(EventSerializer.Meta):
        fields = [*EventSerializer.Meta.fields, "runs"]


class SentSerializer(serializers.Serializer):
    ids = serializers.ListField(child=serializers.CharField())


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField()
    detail = serializers.CharField()
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Event data that does not fit its event schema: each field's messages.",
    )


class TriggerSerializer(serializers.Serializer):
    event = serializers.CharField(required=False)
    expression = serializers.CharField(required=False, allow_null=True)
    cron = serializers.CharField(required=False)


class FunctionSerializer(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    triggers = TriggerSerializer(many=True)
    retries = serializers.IntegerField()
    queue = serializers.CharField()


class SignalInSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=255)
    data = serializers.DictField(required=False, default=dict)


class SignalSentSerializer(serializers.Serializer):
    id = serializers.CharField()
    run_id = serializers.CharField()
