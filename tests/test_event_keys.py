"""Event keys: printed once by createeventkey, stored as a hash, revocable."""

from __future__ import annotations

import hashlib
import io
from datetime import UTC

import pytest
from django.core.management import CommandError, call_command

from durable_flows.keys import authenticate, revoke
from durable_flows.models import EventKey

pytestmark = pytest.mark.django_db


def create(name: str) -> tuple[str, str]:
    out = io.StringIO()
    call_command("createeventkey", name, stdout=out)
    text = out.getvalue()
    return text, text.strip().splitlines()[-1]


def test_createeventkey_prints_the_key_as_its_last_line_and_stores_only_a_hash():
    text, raw = create("billing")
    key = EventKey.objects.get()
    assert key.name == "billing"
    assert len(raw) >= 40 and " " not in raw
    assert key.key_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert raw.startswith(key.prefix) and len(key.prefix) < len(raw) // 2
    # The raw key appears nowhere in the row.
    row = EventKey.objects.filter(pk=key.pk).values().get()
    assert all(raw not in str(value) for value in row.values())
    assert authenticate(raw) == key


def test_each_key_is_new_and_only_its_own_text_authenticates():
    _, first = create("a")
    _, second = create("b")
    assert first != second
    assert authenticate(first).name == "a"
    assert authenticate(second).name == "b"
    assert authenticate(first[:-1]) is None
    assert authenticate("") is None
    assert authenticate(None) is None


def test_a_revoked_key_no_longer_authenticates():
    _, raw = create("old")
    assert revoke(EventKey.objects.all()) == 1
    assert authenticate(raw) is None
    assert EventKey.objects.get().revoked_at is not None


def test_a_name_is_required():
    with pytest.raises(CommandError):
        call_command("createeventkey", "   ", stdout=io.StringIO())
    assert not EventKey.objects.exists()


def test_a_second_key_of_one_name_is_refused_and_nothing_is_created():
    _, raw = create("billing")
    first = EventKey.objects.get()
    with pytest.raises(CommandError) as refused:
        create("billing")
    assert str(refused.value) == (
        f"an event key named 'billing' already exists (prefix {first.prefix}, created "
        f"{first.created_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC); nothing was created. To "
        "replace it, revoke it in the admin (Event keys, action 'Revoke selected event keys') "
        "and run this again, or give the new key another name"
    )
    assert list(EventKey.objects.all()) == [first]
    assert authenticate(raw) == first
    # Once revoked, its name is free for the key that replaces it.
    revoke(EventKey.objects.all())
    _, new = create("billing")
    assert authenticate(new).name == "billing" and EventKey.objects.count() == 2
