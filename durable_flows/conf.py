"""The ``DURABLE_FLOWS`` settings dict: defaults, validation, and cached access."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from .exceptions import ConfigurationError

DEFAULTS: dict[str, Any] = {
    "DATABASE": "default",
    "MAX_EVENT_BYTES": 512 * 1024,
    "MAX_STEP_OUTPUT_BYTES": 4 * 1024 * 1024,
    "MAX_STEPS_PER_RUN": 1000,
    "LEASE_SECONDS": 30,
    "RETRY_BACKOFF_SECONDS": (15, 30, 60, 120, 300, 600, 1200, 2400, 3600, 7200),
    "RETRY_JITTER_SECONDS": 30,
    "API_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"],
    # Not in the public contract, but tunable: how often an idle worker polls
    # when no LISTEN/NOTIFY wake-up arrives (SQLite always polls).
    "POLL_INTERVAL_SECONDS": 1.0,
    "SQLITE_POLL_INTERVAL_SECONDS": 0.1,
    "EVENT_DEDUP_SECONDS": 24 * 3600,
    # PostgreSQL: the engine's hot statements are prepared (engine/sql.py). False
    # for a pooler that cannot keep prepared statements.
    "PREPARED_STATEMENTS": True,
}


def _validate(values: dict[str, Any]) -> None:
    unknown = sorted(set(values) - set(DEFAULTS))
    if unknown:
        raise ConfigurationError(
            f"DURABLE_FLOWS has unknown key(s): {', '.join(unknown)}. "
            f"Known keys: {', '.join(sorted(DEFAULTS))}."
        )
    for key in ("MAX_EVENT_BYTES", "MAX_STEP_OUTPUT_BYTES", "MAX_STEPS_PER_RUN"):
        if key in values and (not isinstance(values[key], int) or values[key] <= 0):
            raise ConfigurationError(f"DURABLE_FLOWS[{key!r}] must be a positive integer.")
    for key in ("LEASE_SECONDS", "RETRY_JITTER_SECONDS", "POLL_INTERVAL_SECONDS"):
        if key in values and (not isinstance(values[key], int | float) or values[key] < 0):
            raise ConfigurationError(f"DURABLE_FLOWS[{key!r}] must be a number >= 0.")
    if not isinstance(values.get("PREPARED_STATEMENTS", True), bool):
        raise ConfigurationError("DURABLE_FLOWS['PREPARED_STATEMENTS'] must be True or False.")
    if "LEASE_SECONDS" in values and values["LEASE_SECONDS"] <= 0:
        raise ConfigurationError("DURABLE_FLOWS['LEASE_SECONDS'] must be > 0.")
    backoff = values.get("RETRY_BACKOFF_SECONDS", DEFAULTS["RETRY_BACKOFF_SECONDS"])
    if (
        not isinstance(backoff, list | tuple)
        or not backoff
        or not all(isinstance(v, int | float) and v >= 0 for v in backoff)
    ):
        raise ConfigurationError(
            "DURABLE_FLOWS['RETRY_BACKOFF_SECONDS'] must be a non-empty sequence of numbers >= 0."
        )


class FlowSettings:
    """Attribute access to the merged settings; re-read when ``override_settings`` changes them."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        if self._cache is None:
            user = getattr(settings, "DURABLE_FLOWS", None) or {}
            if not isinstance(user, dict):
                raise ConfigurationError("DURABLE_FLOWS must be a dict.")
            _validate(user)
            self._cache = {**DEFAULTS, **user}
        return self._cache

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        values = self._load()
        try:
            return values[name]
        except KeyError:
            raise AttributeError(f"no durable_flows setting {name!r}") from None

    def reload(self) -> None:
        self._cache = None

    def check(self) -> None:
        self.reload()
        self._load()


flow_settings = FlowSettings()


@receiver(setting_changed)
def _reload(*, setting: str, **kwargs: Any) -> None:
    if setting == "DURABLE_FLOWS":
        flow_settings.reload()


def db_alias() -> str:
    return str(flow_settings.DATABASE)
