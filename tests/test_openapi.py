"""The OpenAPI document: valid OpenAPI 3, and no input drawn from it makes the API answer 5xx."""

from __future__ import annotations

import pytest
import schemathesis
from django.contrib.auth.models import User
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate

import durable_flows as df
from tests.http_fixtures import PASSWORD, basic, staff

__all__ = ["staff"]  # fixtures

SCHEMA = "/flows/api/schema/"


@pytest.mark.django_db
def test_the_schema_is_valid_openapi_3_and_documents_every_endpoint(client, staff):
    response = client.get(SCHEMA, **basic(staff))
    assert response.status_code == 200
    document = response.json()
    validate(document)
    assert document["openapi"].startswith("3.")
    paths = document["paths"]
    assert {
        "/flows/api/events/",
        "/flows/api/events/{id}/",
        "/flows/api/runs/",
        "/flows/api/runs/{id}/",
        "/flows/api/runs/{id}/cancel/",
        "/flows/api/runs/{id}/rerun/",
        "/flows/api/functions/",
    } <= set(paths)
    assert set(paths["/flows/api/events/"]) == {"get", "post"}
    params = {p["name"] for p in paths["/flows/api/runs/"]["get"]["parameters"]}
    assert {"status", "function_id", "event_name", "page"} <= params
    assert "/admin/" not in str(paths)  # only this API, not the whole project
    assert client.get(SCHEMA + "?format=yaml", **basic(staff)).content.startswith(b"openapi:")


@pytest.mark.django_db(transaction=True)
def test_schemathesis_finds_no_server_error(client, live_server):
    User.objects.create_user("fuzz", password=PASSWORD, is_staff=True, is_superuser=True)
    user = User.objects.get(username="fuzz")
    df.send([df.Event(name="test/one", id="known"), df.Event(name="test/three")])
    auth = {"Authorization": basic(user)["HTTP_AUTHORIZATION"]}
    schema = schemathesis.openapi.from_dict(client.get(SCHEMA, **basic(user)).json())
    calls: list[tuple[str, int]] = []

    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(
            max_examples=12,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def check(case):
            response = case.call(base_url=live_server.url, headers=auth, timeout=10)
            calls.append((case.operation.label, response.status_code))
            assert response.status_code < 500, (case.operation.label, response.text[:500])

        check()

    assert len({label for label, _ in calls}) >= 8
    assert any(status == 201 for _, status in calls)  # some drawn events were accepted
