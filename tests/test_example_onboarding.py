"""The example project's onboarding flow (project/shop/flows.py), as `make demo` runs it."""

from __future__ import annotations

import pytest

import durable_flows as df
from durable_flows.models import Run
from durable_flows.testing import advance, run_until_idle

pytestmark = pytest.mark.django_db(transaction=True)


def signup(user_id: int, **data) -> Run:
    (event_id,) = df.send(df.Event(name="shop/user.signup", data={"user_id": user_id, **data}))
    return Run.objects.get(event_id=event_id, function_id="onboarding")


def test_onboarding_with_and_without_a_login_and_a_deleted_user():
    logs_in, silent, deleted = signup(1), signup(2), signup(3)
    run_until_idle()
    assert {r.status for r in Run.objects.filter(function_id="onboarding")} == {"waiting"}
    advance("1d")
    run_until_idle()  # tips sent; now waiting for a login
    df.send(df.Event(name="shop/user.login", data={"user_id": 1}))
    df.send(df.Event(name="shop/user.deleted", data={"user_id": 3}))
    run_until_idle()
    advance("3d")
    run_until_idle()
    for run in (logs_in, silent, deleted):
        run.refresh_from_db()
    assert (logs_in.status, logs_in.output) == ("completed", {"user_id": 1, "logged_in": True})
    assert (silent.status, silent.output) == ("completed", {"user_id": 2, "logged_in": False})
    assert [s.name for s in silent.steps.all()][-1] == "send-nudge"
    assert deleted.status == "cancelled"


def test_short_durations_from_the_event_for_the_demo():
    run = signup(4, tips_after="1s", login_within="2s")
    run_until_idle()
    advance("1s")
    run_until_idle()
    advance("2s")
    run_until_idle()
    run.refresh_from_db()
    assert run.output == {"user_id": 4, "logged_in": False}
