"""Helpers for your own tests of durable functions.

``run_until_idle()`` executes every runnable run in the calling thread, so it
works inside a test's transaction (``pytest.mark.django_db`` or ``TestCase``).
"""

from __future__ import annotations

from .worker import Worker


def run_until_idle(*, queues: list[str] | None = None) -> int:
    """Execute runnable runs (and those they make runnable) until none is left.

    Returns how many run executions took place. Sleeping and waiting runs are
    left as they are.
    """
    return Worker(queues=queues, burst=True, name="durable_flows.testing").drain()
