"""durable_flows: Inngest-style durable workflows for Django, in your own database.

The public API (its reference is docs/reference/api.md): decorate functions with
``@function``, send events with ``send()`` or start a function with ``start()``,
and run ``python manage.py runflows``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "AsyncContext",
    "Batch",
    "Cancel",
    "Concurrency",
    "Context",
    "Debounce",
    "Event",
    "EventValidationError",
    "NonRetriableError",
    "Priority",
    "RateLimit",
    "RetryAfterError",
    "RunCancelledError",
    "RunFailedError",
    "RunHandle",
    "RunNotFound",
    "Singleton",
    "StepError",
    "Throttle",
    "Timeouts",
    "TriggerCron",
    "TriggerEvent",
    "__version__",
    "cancel",
    "event_schema",
    "function",
    "handle",
    "rerun",
    "send",
    "signal",
    "start",
]

# Importing the package must not import models before Django's app registry
# is ready (settings modules and AppConfigs import it), so names that touch
# models are loaded on first access.
_LAZY = {
    "AsyncContext": "durable_flows.engine.async_context",
    "Context": "durable_flows.engine.context",
    "send": "durable_flows.events",
    "cancel": "durable_flows.control",
    "rerun": "durable_flows.control",
    "signal": "durable_flows.control",
    "RunHandle": "durable_flows.handles",
    "handle": "durable_flows.handles",
    "start": "durable_flows.handles",
}

from .definitions.functions import function  # noqa: E402
from .definitions.options import (  # noqa: E402
    Batch,
    Cancel,
    Concurrency,
    Debounce,
    Priority,
    RateLimit,
    Singleton,
    Throttle,
    Timeouts,
    TriggerCron,
    TriggerEvent,
)
from .definitions.payloads import Event  # noqa: E402
from .definitions.schemas import event_schema  # noqa: E402
from .exceptions import (  # noqa: E402
    EventValidationError,
    NonRetriableError,
    RetryAfterError,
    RunCancelledError,
    RunFailedError,
    RunNotFound,
    StepError,
)

if TYPE_CHECKING:
    from .control import cancel, rerun, signal
    from .engine.async_context import AsyncContext
    from .engine.context import Context
    from .events import send
    from .handles import RunHandle, handle, start


def __getattr__(name: str) -> Any:
    # Start-up order: these import models, which Django loads only once the app
    # registry is ready; ``import durable_flows`` (in settings, say) must not.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'durable_flows' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
