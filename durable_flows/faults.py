"""Named fault points: places where a test can make the worker process die.

Set ``DURABLE_FLOWS_FAULTS=after_checkpoint`` (comma-separated names, each
optionally ``name:N`` to fire on the N-th hit) in a worker's environment and
the process SIGKILLs itself there. Unset, a fault point costs one set lookup.
"""

from __future__ import annotations

import os
import signal
import threading

_spec = os.environ.get("DURABLE_FLOWS_FAULTS", "")
_armed: dict[str, int] = {}
for _item in filter(None, (part.strip() for part in _spec.split(","))):
    _name, _, _nth = _item.partition(":")
    _armed[_name] = int(_nth or 1)
_lock = threading.Lock()

POINTS = (
    "after_claim",  # the run is leased, nothing executed
    "after_effect",  # a step's function returned; its checkpoint is not committed
    "after_checkpoint",  # a step's checkpoint (and atomic effects) committed
    "after_wake",  # a sleeping run, resumed, has recorded its sleep as over
)


def fault_point(name: str) -> None:
    if name not in _armed:
        return
    with _lock:
        _armed[name] -= 1
        fire = _armed[name] == 0
    if fire:
        os.kill(os.getpid(), signal.SIGKILL)
