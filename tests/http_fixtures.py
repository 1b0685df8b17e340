"""Users and event keys for the HTTP tests (admin, dashboard, API, Event API)."""

from __future__ import annotations

import base64

import pytest
from django.contrib.auth.models import User

from durable_flows.keys import create_key, revoke
from durable_flows.models import EventKey

PASSWORD = "correct horse battery staple"


def basic(user: User) -> dict[str, str]:
    token = base64.b64encode(f"{user.username}:{PASSWORD}".encode()).decode()
    return {"HTTP_AUTHORIZATION": f"Basic {token}"}


def bearer(raw_key: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {raw_key}"}


@pytest.fixture
def staff(db) -> User:
    return User.objects.create_user("staff", password=PASSWORD, is_staff=True, is_superuser=True)


@pytest.fixture
def member(db) -> User:
    """Signed in, but not staff."""
    return User.objects.create_user("member", password=PASSWORD)


@pytest.fixture
def event_key(db) -> str:
    return create_key("tests")[1]


@pytest.fixture
def revoked_key(db) -> str:
    key, raw = create_key("revoked")
    revoke(EventKey.objects.filter(pk=key.pk))
    return raw
