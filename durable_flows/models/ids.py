"""Row ids and the manager every table of the app uses."""

from __future__ import annotations

from django.db import models
from ulid import ULID

from ..conf import db_alias


def new_id() -> str:
    """A 26-character ULID: unique, and sorts by creation time."""
    return str(ULID())


class FlowManager(models.Manager):
    """Reads and writes go to the alias named by ``DURABLE_FLOWS["DATABASE"]``."""

    def get_queryset(self) -> models.QuerySet:
        return super().get_queryset().using(self._db or db_alias())
