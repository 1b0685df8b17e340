"""pruneflows: old finished history goes, everything live or recent stays."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.utils import timezone

import durable_flows as df
from durable_flows.models import Event, Run, Step
from durable_flows.testing import run_until_idle

pytestmark = pytest.mark.django_db(transaction=True)


def age(run_id: str, days: int) -> None:
    then = timezone.now() - timedelta(days=days)
    run = Run.objects.get(pk=run_id)
    Run.objects.filter(pk=run_id).update(created_at=then, ended_at=then)
    Event.objects.filter(pk=run.event_id).update(received_at=then)


def test_pruneflows_deletes_old_finished_runs_their_steps_and_orphan_events():
    ids = df.send([df.Event(name="test/three") for _ in range(5)])
    run_until_idle()
    runs = list(Run.objects.filter(event_id__in=ids).order_by("id"))
    for run in runs[:3]:
        age(run.pk, 40)
    # An old run that is still queued is never deleted, nor its event.
    (queued_event,) = df.send(df.Event(name="test/one", ts=timezone.now() + timedelta(days=1)))
    queued = Run.objects.get(event_id=queued_event)
    Event.objects.filter(pk=queued_event).update(received_at=timezone.now() - timedelta(days=40))
    out = StringIO()
    call_command("pruneflows", "--older-than", "30d", "--batch-size", "2", stdout=out)
    assert out.getvalue() == "pruned 3 run(s) and 3 event(s) older than 30 days\n"
    remaining = set(Run.objects.values_list("pk", flat=True))
    assert {r.pk for r in runs[3:]} | {queued.pk} <= remaining
    assert not remaining & {r.pk for r in runs[:3]}
    assert not Step.objects.filter(run_id__in=[r.pk for r in runs[:3]]).exists()
    assert Step.objects.filter(run_id__in=[r.pk for r in runs[3:]]).count() == 6
    assert Event.objects.filter(pk=queued_event).exists()
    assert not Event.objects.filter(pk__in=[r.event_id for r in runs[:3]]).exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--older-than", "soon"], "--older-than 'soon' is not a duration"),
        (
            ["--older-than", "1h"],
            "--older-than (1 hour) must be at least the event deduplication window (1 day): "
            "younger events still deduplicate resent ids",
        ),
    ],
)
def test_pruneflows_refuses_bad_arguments(args, message):
    with pytest.raises(CommandError) as refused:
        call_command("pruneflows", *args)
    assert str(refused.value).startswith(message)
    assert "0:00" not in str(refused.value)


@override_settings(DURABLE_FLOWS={"EVENT_DEDUP_SECONDS": 3600})
@pytest.mark.parametrize(
    ("older_than", "said"),
    [
        ("12h", "12 hours"),
        ("1d6h", "1 day 6 hours"),
        ("90m", "1 hour 30 minutes"),
        ("2w", "14 days"),
    ],
)
def test_pruneflows_says_its_age_in_words(older_than, said):
    out = StringIO()
    call_command("pruneflows", "--older-than", older_than, stdout=out)
    assert out.getvalue() == f"pruned 0 run(s) and 0 event(s) older than {said}\n"
