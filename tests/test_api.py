"""The REST API (docs/http.md): every endpoint, who may call it, and bad input."""

from __future__ import annotations

import json

import pytest
from django.conf import settings
from django.test import Client, override_settings

import durable_flows as df
from durable_flows.models import Event, Run
from durable_flows.testing import run_until_idle
from tests.http_fixtures import PASSWORD, basic, bearer, event_key, member, revoked_key, staff

__all__ = ["event_key", "member", "revoked_key", "staff"]  # fixtures

pytestmark = pytest.mark.django_db

API = "/flows/api"


def post(client: Client, path: str, body, **extra):
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post(API + path, data, content_type="application/json", **extra)


def start(name: str = "test/three", **data) -> Run:
    (event_id,) = df.send(df.Event(name=name, data=data))
    return Run.objects.get(event_id=event_id)


# --- who may call what -----------------------------------------------------------

READS = ["/runs/", "/events/", "/functions/", "/schema/"]


@pytest.mark.parametrize("path", READS)
def test_anonymous_is_401_and_non_staff_403_on_every_read(client, member, path):
    assert client.get(API + path).status_code == 401
    client.force_login(member)
    response = client.get(API + path)
    assert response.status_code == 403
    assert "error" in response.json()
    assert client.get(API + path, **basic(member)).status_code == 403


@pytest.mark.parametrize("path", READS)
def test_staff_reads_by_session_or_basic_auth(client, staff, path):
    assert client.get(API + path, **basic(staff)).status_code == 200
    client.force_login(staff)
    assert client.get(API + path).status_code == 200


def test_wrong_basic_password_is_401(client, staff):
    response = client.get(API + "/runs/", HTTP_AUTHORIZATION="Basic c3RhZmY6bm9wZQ==")
    assert response.status_code == 401


@pytest.mark.parametrize("path", READS)
def test_an_event_key_may_send_but_not_read(client, event_key, revoked_key, path):
    assert client.get(API + path, **bearer(event_key)).status_code == 403
    assert client.get(API + path, **bearer(revoked_key)).status_code == 401


def test_an_event_key_sends_events_and_they_start_runs(client, event_key):
    response = post(client, "/events/", {"name": "test/one", "data": {"x": 1}}, **bearer(event_key))
    assert response.status_code == 201
    (event_id,) = response.json()["ids"]
    assert Event.objects.get(pk=event_id).data == {"x": 1}
    run = Run.objects.get(event_id=event_id)
    run_until_idle()
    run.refresh_from_db()
    assert (run.function_id, run.status) == ("one-step", "completed")


def test_a_list_of_events_returns_ids_in_order(client, event_key):
    body = [{"name": "test/one"}, {"name": "test/three", "id": "mine-1"}, {"name": "nobody"}]
    response = post(client, "/events/", body, **bearer(event_key))
    assert response.status_code == 201
    ids = response.json()["ids"]
    assert len(ids) == 3 and ids[1] == "mine-1"
    assert [Event.objects.get(pk=i).name for i in ids] == ["test/one", "test/three", "nobody"]


@pytest.mark.parametrize(
    "auth", [{}, {"HTTP_AUTHORIZATION": "Bearer not-a-key"}, "revoked", "member"]
)
def test_sending_without_a_valid_key_or_staff_is_refused_and_stores_nothing(
    client, auth, revoked_key, member
):
    if auth == "revoked":
        auth = bearer(revoked_key)
    elif auth == "member":
        auth = basic(member)
    response = post(client, "/events/", {"name": "test/one"}, **auth)
    assert response.status_code == (
        403 if auth.get("HTTP_AUTHORIZATION", "").startswith("Basic") else 401
    )
    assert response.json()["error"]
    assert not Event.objects.exists()


def test_staff_send_by_basic_auth_and_by_session_with_csrf(staff):
    client = Client(enforce_csrf_checks=True)
    assert post(client, "/events/", {"name": "test/one"}, **basic(staff)).status_code == 201
    client.login(username="staff", password=PASSWORD)
    # A session is a browser's credential: without the CSRF token it is refused.
    assert post(client, "/events/", {"name": "test/one"}).status_code == 403
    client.get("/flows/events/send/")  # a page with a form sets the CSRF cookie
    token = client.cookies["csrftoken"].value
    response = post(client, "/events/", {"name": "test/one"}, HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 201
    assert Event.objects.count() == 2


def test_the_permission_classes_come_from_the_setting_and_the_model_permission_still_applies(
    client, member
):
    from django.contrib.auth.models import Permission

    flows = {**settings.DURABLE_FLOWS}
    flows["API_PERMISSION_CLASSES"] = ["rest_framework.permissions.IsAuthenticated"]
    with override_settings(DURABLE_FLOWS=flows):
        # Who may use the API comes from the setting; what they may read, from view_run.
        assert client.get(API + "/runs/", **basic(member)).status_code == 403
        member.user_permissions.add(Permission.objects.get(codename="view_run"))
        assert client.get(API + "/runs/", **basic(member)).status_code == 200
        assert client.get(API + "/runs/").status_code == 401
    assert client.get(API + "/runs/", **basic(member)).status_code == 403  # not staff


# --- bad input: a clear 4xx JSON error, nothing stored ----------------------------

BAD = [
    ("{not json", 400, "malformed JSON"),
    ('{"name": "test/one", "data": {"x": NaN}}', 400, "NaN"),
    ('{"name": "test/one", "data": {"x": Infinity}}', 400, "Infinity"),
    ('[{"name": "test/one", "data": {"x": -Infinity}}]', 400, "Infinity"),
    ("", 400, "the request body is empty"),
    ("42", 400, "event object"),
    ('"test/one"', 400, "event object"),
    ("[]", 400, "empty"),
    ("[1]", 400, "event object"),
    ('{"data": {}}', 400, "event: 'name' is missing"),
    ('{"name": ""}', 400, "event: 'name' must be a non-empty string, got ''"),
    ('{"name": "   "}', 400, "'name' must be a non-empty string, got '   '"),
    ('{"name": 7}', 400, "'name' must be a non-empty string, not int"),
    ('{"name": "durable_flows/function.finished"}', 400, "reserved"),
    ('{"name": "test/one", "data": [1, 2]}', 400, "data"),
    ('{"name": "test/one", "data": "text"}', 400, "data"),
    ('[{"name": "test/one"}, {"name": "test/one", "data": 3}]', 400, "event 1"),
    ('{"name": "test/one", "ts": "yesterday"}', 400, "ts"),
    ('{"name": "test/one", "id": ""}', 400, "id"),
    ('{"name": "a\\u0000b"}', 400, "NUL"),
    # A lone surrogate is named where it is, not blamed on 'data'.
    (
        '{"name": "a\\ud800b"}',
        400,
        "'name' contains an unpaired surrogate ('\\ud800' at position 1)",
    ),
    ('{"name": "a", "id": "\\udc00"}', 400, "'id' contains an unpaired surrogate"),
    ('{"name": "a", "data": {"k": "\\ud800"}}', 400, "'data' contains an unpaired surrogate"),
]


@pytest.mark.parametrize(("body", "status", "says"), BAD)
def test_bad_input_is_a_clear_4xx_and_stores_nothing(client, event_key, body, status, says):
    response = post(client, "/events/", body, **bearer(event_key))
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    assert says in response.json()["error"]
    assert not Event.objects.exists() and not Run.objects.exists()


@pytest.mark.parametrize(("body", "status", "says"), BAD)
def test_inngests_event_api_says_the_same(client, event_key, body, status, says):
    response = client.post(f"/e/{event_key}", body, content_type="application/json")
    assert response.status_code == status, response.content
    assert says in response.json()["error"]


def test_an_event_over_max_event_bytes_is_413(client, event_key):
    big = {"name": "test/one", "data": {"blob": "x" * (512 * 1024)}}
    response = post(client, "/events/", [{"name": "test/one"}, big], **bearer(event_key))
    assert response.status_code == 413
    assert "MAX_EVENT_BYTES" in response.json()["error"]
    assert not Event.objects.exists()


def test_a_body_over_the_request_limit_is_413(client, event_key):
    huge = json.dumps([{"name": "test/one", "data": {"b": "x" * 400_000}}] * 8)
    response = post(client, "/events/", huge, **bearer(event_key))
    assert response.status_code == 413
    assert not Event.objects.exists()


def test_more_than_5000_events_in_one_request_is_refused(client, event_key):
    response = post(client, "/events/", [{"name": "n"}] * 5001, **bearer(event_key))
    assert response.status_code == 400
    assert "5000" in response.json()["error"]
    assert not Event.objects.exists()
    assert post(client, "/events/", [{"name": "n"}] * 5000, **bearer(event_key)).status_code == 201


NOT_JSON = [
    ("application/x-www-form-urlencoded", "not 'application/x-www-form-urlencoded'"),
    ("text/plain; charset=utf-8", "not 'text/plain'"),
    ("", "not none"),
]


@pytest.mark.parametrize(("content_type", "says"), NOT_JSON)
def test_a_body_that_is_not_json_content_is_415(client, event_key, content_type, says):
    body = '{"name": "test/one"}'
    response = client.post(API + "/events/", body, content_type=content_type, **bearer(event_key))
    assert response.status_code == 415
    assert response.json()["error"] == (
        f"events are sent as JSON: the Content-Type must be application/json, {says}"
    )
    assert not Event.objects.exists()


@pytest.mark.parametrize(("content_type", "says"), NOT_JSON)
def test_inngests_event_api_takes_json_only_too(client, event_key, content_type, says):
    response = client.post(f"/e/{event_key}", "name=test/one", content_type=content_type)
    assert response.status_code == 415
    assert response.json() == {
        "ids": [],
        "status": 415,
        "error": f"events are sent as JSON: the Content-Type must be application/json, {says}",
    }
    assert not Event.objects.exists()
    # Parameters of the JSON media type are fine.
    ok = client.post(
        f"/e/{event_key}", '{"name": "test/one"}', content_type="application/json; charset=utf-8"
    )
    assert ok.status_code == 200 and Event.objects.count() == 1


# --- reading -----------------------------------------------------------------------


def test_runs_are_paginated_newest_first_and_filterable(client, staff):
    first = start("test/one")
    second = start("test/three")
    run_until_idle()
    client.force_login(staff)
    body = client.get(API + "/runs/").json()
    assert set(body) == {"count", "next", "previous", "results"}
    ids = [r["id"] for r in body["results"] if r["function_id"] in ("one-step", "three-steps")]
    assert ids == [second.pk, first.pk]
    assert client.get(API + "/runs/?page_size=1").json()["next"]

    def ids_for(query: str) -> set[str]:
        return {r["id"] for r in client.get(API + "/runs/?" + query).json()["results"]}

    assert ids_for("function_id=one-step") == {first.pk}
    assert ids_for("event_name=test/three") == {second.pk}
    assert first.pk in ids_for("status=completed")
    assert ids_for("status=failed") == set()


def test_a_bad_choice_in_a_filter_is_drfs_field_error_without_python_reprs(client, staff):
    client.force_login(staff)
    bad = client.get(API + "/runs/?status=bogus&function_id=x")
    assert bad.status_code == 400
    message = "Select a valid choice. bogus is not one of the available choices."
    assert bad.json() == {"status": [message], "error": f"status: {message}"}


def test_a_run_has_its_steps_in_order_with_the_models_field_names(client, staff):
    run = start("test/three")
    run_until_idle()
    client.force_login(staff)
    body = client.get(f"{API}/runs/{run.pk}/").json()
    for field in ("id", "function_id", "status", "event", "output", "error"):
        assert field in body
    for field in ("created_at", "started_at", "ended_at"):
        assert body[field]
    assert body["status"] == "completed" and body["event"] == run.event_id
    assert [s["name"] for s in body["steps"]] == ["a", "b", "c"]
    step = body["steps"][0]
    assert {"run", "name", "kind", "status", "output", "error", "attempts"} <= set(step)
    assert (step["kind"], step["status"], step["attempts"], step["run"]) == (
        "run",
        "completed",
        1,
        run.pk,
    )
    assert client.get(f"{API}/runs/nope/").status_code == 404


def test_a_failed_runs_error_has_type_message_and_traceback(client, staff):
    run = start("test/nonretriable")
    run_until_idle()
    client.force_login(staff)
    body = client.get(f"{API}/runs/{run.pk}/").json()
    assert body["status"] == "failed"
    assert body["steps"][0]["error"]["message"] == "card declined"
    assert "traceback" in body["steps"][0]["error"]


def test_cancel_answers_200_with_the_run_and_rerun_201_with_the_new_run(client, staff):
    run = start("test/one")
    client.force_login(staff)
    response = client.post(f"{API}/runs/{run.pk}/cancel/")
    assert response.status_code == 200
    assert (response.json()["id"], response.json()["status"]) == (run.pk, "cancelled")
    response = client.post(f"{API}/runs/{run.pk}/rerun/")
    assert response.status_code == 201
    new = response.json()
    assert new["id"] != run.pk and new["rerun_of"] == run.pk and new["event"] == run.event_id
    run_until_idle()
    assert Run.objects.get(pk=new["id"]).status == "completed"
    assert client.post(f"{API}/runs/nope/cancel/").status_code == 404
    assert client.post(f"{API}/runs/nope/rerun/").status_code == 404


def test_retry_resumes_a_failed_run_and_refuses_others_with_409(client, staff):
    from tests.models import Ledger

    run = start("test/gated")
    run_until_idle()
    client.force_login(staff)
    Ledger.objects.create(key=f"allow-{run.pk}")
    response = client.post(f"{API}/runs/{run.pk}/retry/")
    assert response.status_code == 200
    assert (response.json()["id"], response.json()["status"]) == (run.pk, "queued")
    run_until_idle()
    assert Run.objects.get(pk=run.pk).status == "completed"
    again = client.post(f"{API}/runs/{run.pk}/retry/")
    assert again.status_code == 409 and "only a failed run" in again.json()["error"]
    assert client.post(f"{API}/runs/nope/retry/").status_code == 404


def test_cancel_and_rerun_are_staff_only(client, member, event_key):
    run = start("test/one")
    for auth in ({}, basic(member), bearer(event_key)):
        assert client.post(f"{API}/runs/{run.pk}/cancel/", **auth).status_code in (401, 403)
        assert client.post(f"{API}/runs/{run.pk}/rerun/", **auth).status_code in (401, 403)
        assert client.post(f"{API}/runs/{run.pk}/retry/", **auth).status_code in (401, 403)
    run.refresh_from_db()
    assert run.status == "queued" and Run.objects.count() == 1


def test_events_newest_first_and_an_event_lists_the_runs_it_started(client, staff):
    df.send(df.Event(name="test/one", id="older"))
    df.send(df.Event(name="test/three", id="orders/42"))
    client.force_login(staff)
    body = client.get(API + "/events/").json()
    assert [e["id"] for e in body["results"]][:2] == ["orders/42", "older"]
    assert client.get(API + "/events/?name=test/one").json()["count"] == 1
    detail = client.get(API + "/events/orders/42/").json()
    assert detail["name"] == "test/three" and detail["data"] == {}
    assert [r["function_id"] for r in detail["runs"]] == ["three-steps"]
    assert client.get(API + "/events/missing/").status_code == 404


def test_functions_lists_registered_functions_with_triggers_and_options(client, staff):
    client.force_login(staff)
    body = client.get(API + "/functions/?page_size=500").json()
    functions = {f["id"]: f for f in body["results"]}
    assert functions["one-step"]["triggers"] == [{"event": "test/one", "expression": None}]
    assert functions["flaky"]["retries"] == 4
    assert functions["pro-only"]["triggers"][0]["expression"] == "event.data.plan == 'pro'"
    assert body["count"] == len(functions)
