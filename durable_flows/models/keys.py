"""Event keys: credentials for sending events over HTTP."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from .ids import FlowManager


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
