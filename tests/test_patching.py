"""``ctx.patched``: a run started under the old code keeps its path when a worker with
the new code resumes it; a run that reaches the change for the first time takes the new
path; the answer is recorded once and the same on every replay. Real ``runflows``
workers on both databases, the "deploy" being a worker started with the new code."""

from __future__ import annotations

import signal

import pytest

import durable_flows as df
from durable_flows.models import Run, Step
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def test_old_runs_keep_their_path_and_new_runs_take_the_patch(start_worker):
    (old_event,) = df.send(df.Event(name="test/patch", data={"nap": "3s"}))
    old_code = start_worker()  # version 1: no patched() call
    old = wait_until(lambda: Run.objects.filter(event_id=old_event, status="waiting").first(), 60)
    old_code.signal(signal.SIGTERM)
    assert old_code.wait(30) == 0

    new_code = start_worker(PATCH_VERSION="2")  # the deploy
    (new_event,) = df.send(df.Event(name="test/patch", data={"nap": "1s"}))
    new = wait_until(lambda: Run.objects.filter(event_id=new_event).first(), 30)
    assert df.handle(old.pk).result(timeout=60) == {"patched": False}
    assert df.handle(new.pk).result(timeout=60) == {"patched": True}
    assert not Step.objects.filter(run_id=old.pk, name="extra").exists()
    assert Step.objects.get(run_id=new.pk, name="extra").status == "completed"
    # Recorded once per run, as a step: replays read it back.
    for run, answer in ((old, False), (new, True)):
        marker = Step.objects.get(run_id=run.pk, name="patch:extra-step")
        assert (marker.kind, marker.output) == ("patch", answer)
    new_code.stop()


def test_a_bad_change_id_fails_the_run_clearly():
    from durable_flows.engine import patching

    with pytest.raises(ValueError, match="patched\\(change_id\\)"):
        patching.patched(None, "has spaces")  # type: ignore[arg-type]
