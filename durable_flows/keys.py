"""Event keys: create (the raw key is shown once), authenticate in constant time, revoke."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC

from . import clock
from .conf import db_alias
from .models import EventKey

KEY_PREFIX = "dfk_"
PREFIX_LENGTH = 12


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class KeyNameTaken(ValueError):
    """An active event key already has the name asked for."""


def create_key(name: str) -> tuple[EventKey, str]:
    """Store a new key named ``name``; returns the row and the raw key (not stored anywhere).

    A name belongs to one active key, so that the admin's list tells keys apart:
    ``KeyNameTaken`` if an active key has it (a revoked key's name may be used again).
    """
    taken = EventKey.objects.active().filter(name=name).first()
    if taken is not None:
        raise KeyNameTaken(
            f"an event key named {name!r} already exists (prefix {taken.prefix}, created "
            f"{taken.created_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC); nothing was created. "
            "To replace it, revoke it in the admin (Event keys, action 'Revoke selected "
            "event keys') and run this again, or give the new key another name"
        )
    raw = KEY_PREFIX + secrets.token_urlsafe(32)
    key = EventKey(name=name, prefix=raw[:PREFIX_LENGTH], key_hash=hash_key(raw))
    key.save(using=db_alias())
    return key, raw


def authenticate(raw: str | None) -> EventKey | None:
    """The active key whose hash matches ``raw``, or None."""
    if not raw or len(raw) > 256:
        return None
    digest = hash_key(raw)
    key = EventKey.objects.active().filter(key_hash=digest).first()
    # The lookup is by an index on the hash; comparing the digests again in
    # constant time keeps the final decision free of timing differences.
    if key is None or not hmac.compare_digest(key.key_hash, digest):
        return None
    now = clock.now()
    if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
        EventKey.objects.filter(pk=key.pk).update(last_used_at=now)
    return key


def revoke(keys) -> int:
    """Revoke the given keys (a queryset); returns how many were still active."""
    return keys.filter(revoked_at__isnull=True).update(revoked_at=clock.now())
