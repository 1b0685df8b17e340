"""The admin is for inspection: read-only records; cancel, rerun and revoke are actions
that call the same functions as Python users (``durable_flows.control``, ``keys``).

Importing the package registers every model admin (``admin.autodiscover``)."""

from . import events, keys, runs, workers

__all__ = ["events", "keys", "runs", "workers"]
