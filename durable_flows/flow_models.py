# TEMPORARY re-exports for the engine during the redesign; removed when it lands.
"""StepTaskStatus lives in durable_flows.models; engine/parallel.py still imports it here."""

from .models import StepTaskStatus

__all__ = ["StepTaskStatus"]
