"""Security review, as tests: nothing pickled or evaluated, state changes need CSRF,
keys are never stored or logged in the clear."""

from __future__ import annotations

import hashlib
import logging
import re
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from durable_flows.models import EventKey
from tests.conftest import start
from tests.http_fixtures import PASSWORD, staff

__all__ = ["staff"]

APP = Path(__file__).resolve().parent.parent / "durable_flows"
FORBIDDEN = re.compile(
    r"\bimport pickle\b|\bpickle\.|\bmarshal\.|(?<![.\w])eval\(|(?<![.\w])exec\("
)


def test_no_pickle_marshal_eval_or_exec_in_the_app():
    offenders = [
        f"{path.relative_to(APP)}:{number}: {line.strip()}"
        for path in APP.rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if FORBIDDEN.search(line)
    ]
    assert offenders == []


@pytest.mark.django_db
def test_a_created_key_is_stored_only_as_a_hash_and_never_logged(caplog):
    out = StringIO()
    with caplog.at_level(logging.DEBUG):
        call_command("createeventkey", "ci", stdout=out)
    raw = out.getvalue().strip().splitlines()[-1]
    key = EventKey.objects.get(name="ci")
    assert key.key_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert raw not in caplog.text
    assert all(raw not in str(value) for value in vars(key).values())


def _dashboard_posts() -> list[str]:
    """Every dashboard URL that changes state (the views that require POST)."""
    names = []
    for pattern in get_resolver().url_patterns:
        if isinstance(pattern, URLResolver) and pattern.namespace == "durable_flows":
            for sub in pattern.url_patterns:
                if isinstance(sub, URLPattern) and getattr(sub.callback, "__name__", "") in {
                    "run_cancel",
                    "run_rerun",
                    "run_retry",
                    "send_event",
                }:
                    names.append(sub.name)
    return names


@pytest.mark.django_db
@pytest.mark.parametrize("name", _dashboard_posts())
def test_every_state_changing_dashboard_form_needs_a_csrf_token(staff, name):
    client = Client(enforce_csrf_checks=True)
    client.login(username=staff.username, password=PASSWORD)
    run = start("test/one")
    try:
        url = reverse(f"durable_flows:{name}", args=[run.pk])
    except Exception:
        url = reverse(f"durable_flows:{name}")
    response = client.post(url, {"name": "test/one", "data": "{}"})
    assert response.status_code == 403
    run.refresh_from_db()
    assert run.status == "queued" and run.reruns.count() == 0


def test_the_csrf_list_is_not_empty():
    assert len(_dashboard_posts()) >= 3
