"""The staff dashboard: runs, a run's step waterfall, events, functions, workers,
search, and a send form.

Pages that read are in ``pages``, views that change something in ``actions``;
``durable_flows.urls`` routes the views named here.
"""

from .actions import run_cancel, run_rerun, run_retry, send_event
from .functions import functions
from .pages import event_detail, events, run_detail, runs
from .search import search
from .workers import workers_page

__all__ = [
    "event_detail",
    "events",
    "functions",
    "run_cancel",
    "run_detail",
    "run_rerun",
    "run_retry",
    "runs",
    "search",
    "send_event",
    "workers_page",
]
