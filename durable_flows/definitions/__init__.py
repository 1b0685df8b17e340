"""Definitions: what a durable function is, as plain values, before anything is stored.

``@function`` and its registry, triggers and flow-control options, the ``Event``
dataclass and the checks an event must pass, values as JSON, event schemas
(``@event_schema``), and the app's lifecycle event names.
The bottom layer: it imports only the base utilities (conf, clock, exceptions,
durations, cron, expressions), never models, storage, the engine or anything above.
"""
