from django.db import models


class Effect(models.Model):
    """One row per execution of something a test counts (a step, a function body)."""

    key = models.CharField(max_length=200, db_index=True)
    run_id = models.CharField(max_length=26, blank=True)
    pid = models.IntegerField(null=True)
    at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.key


class Ledger(models.Model):
    """Written by atomic steps: its rows must exist exactly once."""

    key = models.CharField(max_length=200, unique=True)

    def __str__(self) -> str:
        return self.key


class Span(models.Model):
    """When a step executed (wall-clock seconds), to prove limits and overlaps."""

    key = models.CharField(max_length=200, db_index=True)
    run_id = models.CharField(max_length=26, blank=True)
    label = models.CharField(max_length=200, blank=True)
    pid = models.IntegerField(null=True)
    started = models.FloatField()
    ended = models.FloatField()

    def __str__(self) -> str:
        return f"{self.key} {self.label}"
