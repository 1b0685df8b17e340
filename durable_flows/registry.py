# TEMPORARY re-exports for the engine during the redesign; removed when it lands.
"""Moved to ``durable_flows.definitions``; the engine, worker and waits still import these."""

from .definitions.functions import Function, registry
from .definitions.options import PRIORITY_RANGE, check_match
from .definitions.payloads import RESERVED_PREFIX

__all__ = ["PRIORITY_RANGE", "RESERVED_PREFIX", "Function", "check_match", "registry"]
