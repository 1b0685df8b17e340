"""Events, runs, steps and workers. Statuses are written-down state machines."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import Q
from django.utils import timezone
from ulid import ULID

from .conf import db_alias


def new_id() -> str:
    """A 26-character ULID: unique, and sorts by creation time."""
    return str(ULID())


class FlowManager(models.Manager):
    """Reads and writes go to the alias named by ``DURABLE_FLOWS["DATABASE"]``."""

    def get_queryset(self) -> models.QuerySet:
        return super().get_queryset().using(self._db or db_alias())


class Event(models.Model):
    """A stored event. Never changed once stored: runs keep the event they started with.

    ``id`` is the sender's id when one was given and is still free, else a ULID;
    ``sender_id`` is the id the sender gave, which deduplicates within
    ``EVENT_DEDUP_SECONDS`` (after that window the same sender id makes a new event).
    """

    id = models.CharField(primary_key=True, max_length=255, default=new_id, editable=False)
    sender_id = models.CharField(  # noqa: DJ001 - NULL: the sender gave no id
        max_length=255,
        null=True,
        blank=True,
        editable=False,
        help_text="The id the sender gave; deduplicates within the window",
    )
    name = models.CharField(max_length=255)
    data = models.JSONField(default=dict)
    ts = models.BigIntegerField(help_text="Milliseconds since the epoch")
    received_at = models.DateTimeField(default=timezone.now)

    objects = FlowManager()

    class Meta:
        indexes = [
            models.Index(fields=["name", "-received_at"], name="df_event_name_recv"),
            models.Index(fields=["-received_at"], name="df_event_recv"),
            # Partial: most events have no sender id.
            models.Index(
                fields=["sender_id", "-received_at"],
                name="df_event_sender",
                condition=Q(sender_id__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Insert only: a stored event is history, and history is not rewritten."""
        if not self._state.adding or kwargs.get("force_update") or kwargs.get("update_fields"):
            raise TypeError(f"event {self.pk} is stored already; stored events never change")
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def as_dict(self) -> dict[str, Any]:
        """The event as CEL expressions and ``ctx.event`` see it."""
        return {"id": self.id, "name": self.name, "data": self.data, "ts": self.ts}


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    """Waiting for a worker (now, or at ``available_at``)."""
    RUNNING = "running", "Running"
    """Leased by a worker that is executing it."""
    WAITING = "waiting", "Waiting"
    """Sleeping, or waiting for an event or a child run; holds no worker."""
    COMPLETED = "completed", "Completed"
    """The function returned; ``output`` holds its value."""
    FAILED = "failed", "Failed"
    """Gave up; ``error`` says why."""
    CANCELLED = "cancelled", "Cancelled"
    """Stopped by ``cancel()`` or a cancel rule."""
    SKIPPED = "skipped", "Skipped"
    """Made by rate limiting or a singleton; never executed."""


FINISHED = (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.SKIPPED)
CLAIMABLE = (RunStatus.QUEUED, RunStatus.WAITING)


class RunQuerySet(models.QuerySet):
    def claimable(self, now: Any, queues: list[str] | None, function_ids: list[str]):
        """Runs a worker may take now: queued or waking up, due, of a function it knows."""
        qs = self.filter(status__in=CLAIMABLE, available_at__lte=now, function_id__in=function_ids)
        if queues:
            qs = qs.filter(queue__in=queues)
        return qs

    def finished(self):
        return self.filter(status__in=FINISHED)

    def orphaned(self, live_worker_ids: Any):
        """Running runs whose lease holder is no longer alive."""
        return self.filter(status=RunStatus.RUNNING).exclude(lease_owner__in=live_worker_ids)


class Run(models.Model):
    id = models.CharField(primary_key=True, max_length=26, default=new_id, editable=False)
    function_id = models.CharField(max_length=255)
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED)
    # Foreign keys without Django's default index (plus a varchar_pattern_ops twin on
    # PostgreSQL): the indexes in Meta serve them, smaller, and every update of a
    # run's status writes to each index of the table.
    event = models.ForeignKey(
        Event,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="runs",
        db_index=False,
    )
    output = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    queue = models.CharField(max_length=100, default="default")
    priority = models.IntegerField(default=0)
    available_at = models.DateTimeField(
        null=True, blank=True, help_text="When a queued or waiting run may next be claimed"
    )
    attempt = models.PositiveIntegerField(
        default=0, help_text="Failed attempts of code outside steps"
    )
    lease_owner = models.CharField(max_length=26, null=True, blank=True)  # noqa: DJ001 - NULL: unleased
    lease_token = models.CharField(max_length=26, null=True, blank=True)  # noqa: DJ001
    cancel_requested = models.BooleanField(default=False)
    rerun_of = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="reruns",
        db_index=False,
    )
    parent_run = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="children",
        help_text="The run whose ctx.step.invoke started this one",
        db_index=False,
    )
    parent_step = models.CharField(
        max_length=300, blank=True, default="", help_text="The parent's invoke step"
    )
    # Concurrency slots (engine/flow_control.py): up to two (key, limit) pairs;
    # the key names the function, the constraint and the CEL key's value.
    concurrency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    concurrency_limit = models.PositiveIntegerField(null=True, blank=True)
    concurrency_key_2 = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    concurrency_limit_2 = models.PositiveIntegerField(null=True, blank=True)
    throttle_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001

    objects = FlowManager.from_queryset(RunQuerySet)()

    # Not a column: set by claim() on a run that had never started, which
    # therefore has no checkpoints to load.
    fresh = False

    class Meta:
        indexes = [
            # The hot path: a partial index over runnable rows only, so it stays
            # small however many finished runs the table holds. In the claim's
            # order, so that a claim reads the first rows and stops, however many
            # are queued (a worker's queue filter is checked on the way).
            models.Index(
                fields=["-priority", "available_at", "id"],
                name="df_run_claimable",
                condition=Q(status__in=["queued", "waiting"]),
            ),
            models.Index(
                fields=["lease_owner"], name="df_run_leased", condition=Q(status="running")
            ),
            models.Index(
                fields=["concurrency_key"],
                name="df_run_slot",
                condition=Q(status="running", concurrency_key__isnull=False),
            ),
            models.Index(
                fields=["concurrency_key_2"],
                name="df_run_slot_2",
                condition=Q(status="running", concurrency_key_2__isnull=False),
            ),
            models.Index(fields=["-created_at"], name="df_run_created"),
            models.Index(fields=["status", "-created_at"], name="df_run_status"),
            models.Index(fields=["function_id", "-created_at"], name="df_run_function"),
            models.Index(fields=["event"], name="df_run_event"),
            # Partial: most runs are neither reruns nor invoked.
            models.Index(
                fields=["rerun_of"], name="df_run_rerun_of", condition=Q(rerun_of__isnull=False)
            ),
            models.Index(
                fields=["parent_run"], name="df_run_parent", condition=Q(parent_run__isnull=False)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.function_id} {self.id} ({self.status})"

    @classmethod
    def start(
        cls, function: Any, event: Event | None, now: Any, available_at: Any = None, **fields: Any
    ) -> Run:
        """A new, unsaved run of ``function`` for ``event``, due at ``available_at`` (now)."""
        return cls(
            function_id=function.id,
            event=event,
            queue=function.queue,
            created_at=now,
            updated_at=now,
            available_at=available_at or now,
            **fields,
        )

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED


class StepKind(models.TextChoices):
    RUN = "run", "Run"
    SLEEP = "sleep", "Sleep"
    WAIT_FOR_EVENT = "wait_for_event", "Wait for event"
    SEND_EVENT = "send_event", "Send event"
    INVOKE = "invoke", "Invoke"


class StepStatus(models.TextChoices):
    RUNNING = "running", "Running"
    """Attempted and failed at least once; a retry is scheduled."""
    WAITING = "waiting", "Waiting"
    """Sleeping or waiting; resolved later."""
    COMPLETED = "completed", "Completed"
    """Done; ``output`` is memoized and never recomputed."""
    FAILED = "failed", "Failed"
    """Retries exhausted or not retriable; replays raise ``StepError``."""


class Step(models.Model):
    # Looked up by run through the (run, name) unique index: no index of its own.
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="steps", db_index=False)
    name = models.CharField(max_length=300)
    kind = models.CharField(max_length=20, choices=StepKind.choices, default=StepKind.RUN)
    status = models.CharField(max_length=16, choices=StepStatus.choices)
    position = models.PositiveIntegerField(help_text="Order in which the function reached it")
    output = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    wake_at = models.DateTimeField(
        null=True, blank=True, help_text="A waiting step: when it wakes up or times out"
    )

    objects = FlowManager()

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            # A checkpoint is written once: a second writer gets an IntegrityError
            # ("someone else already recorded this"), never a second effect.
            models.UniqueConstraint(fields=["run", "name"], name="df_step_unique_name"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind}, {self.status})"


class Worker(models.Model):
    """A live ``runflows`` process; its heartbeat is the lease of every run it holds."""

    id = models.CharField(primary_key=True, max_length=26, default=new_id, editable=False)
    name = models.CharField(max_length=255)
    hostname = models.CharField(max_length=255, blank=True)
    pid = models.IntegerField(null=True)
    queues = models.JSONField(default=list, blank=True)
    concurrency = models.PositiveIntegerField(default=1)
    started_at = models.DateTimeField(default=timezone.now)
    heartbeat_at = models.DateTimeField(default=timezone.now)

    objects = FlowManager()

    def __str__(self) -> str:
        return f"{self.name} (pid {self.pid})"


class WaitKind(models.TextChoices):
    EVENT = "event", "wait_for_event"
    """A ``ctx.step.wait_for_event`` step waiting for its event."""
    CANCEL = "cancel", "cancel rule"
    """A function's ``cancel=[df.Cancel(...)]`` rule, armed for one run."""


class WaitStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    """Armed: a matching event resolves it."""
    RESOLVED = "resolved", "Resolved"
    """An event matched; ``event`` is the one (the first after the wait began)."""
    TIMED_OUT = "timed_out", "Timed out"
    """Its timeout passed before any matching event."""
    CLOSED = "closed", "Closed"
    """The run finished first; no longer armed."""


class Wait(models.Model):
    """A run waiting for an event (a wait step, or a cancel rule), found by indexed lookup.

    ``match_key`` is a hash of (match path, value of the run's event at that path),
    or "" when the wait has no ``match``: an incoming event computes the keys of the
    few match paths in use for its name, so finding candidates is one index probe
    on (event_name, match_key) whatever the number of waiting runs.
    """

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="waits")
    kind = models.CharField(max_length=10, choices=WaitKind.choices)
    step_name = models.CharField(max_length=300, blank=True, default="")
    event_name = models.CharField(max_length=255)
    match = models.CharField(max_length=255, blank=True, default="", help_text="e.g. data.user_id")
    match_key = models.CharField(max_length=40, blank=True, default="")
    if_exp = models.TextField(blank=True, default="")
    status = models.CharField(max_length=10, choices=WaitStatus.choices, default=WaitStatus.PENDING)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    event = models.ForeignKey(
        Event,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The event that resolved it",
    )

    objects = FlowManager()

    class Meta:
        indexes = [
            models.Index(
                fields=["event_name", "match_key"],
                name="df_wait_pending",
                condition=Q(status="pending"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.event_name} ({self.status})"


class WaitPath(models.Model):
    """The match paths in use per event name (a handful): what ``send()`` computes keys for."""

    event_name = models.CharField(max_length=255)
    path = models.CharField(max_length=255)

    objects = FlowManager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["event_name", "path"], name="df_waitpath_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.event_name}: {self.path}"


class CronTick(models.Model):
    """One scheduled tick of a cron-triggered function; the unique pair makes it start once."""

    function_id = models.CharField(max_length=255)
    tick = models.DateTimeField()
    run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    objects = FlowManager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["function_id", "tick"], name="df_crontick_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.function_id} @ {self.tick.isoformat()}"


class EventKeyQuerySet(models.QuerySet):
    def active(self):
        return self.filter(revoked_at__isnull=True)


class EventKey(models.Model):
    """A credential for sending events over HTTP. Only a hash of the key is stored.

    Keys are 256-bit random tokens, so a plain SHA-256 is enough: there is
    nothing for a slow password hash to protect against.
    """

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, help_text="The key's first characters, for display")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    objects = FlowManager.from_queryset(EventKeyQuerySet)()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


from .flow_models import FlowKey, RunEvent, StepTask  # noqa: E402, F401
