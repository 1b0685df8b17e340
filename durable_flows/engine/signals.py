"""What the step kinds (``waiting``, ``parallel``) and the executor share: the signals
that stop executing a run, and ``Runner``, the part of an execution a step kind
may use."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..exceptions import Interrupt, StepError
from ..models import Run, Step, StepKind, StepStatus

DONE = (StepStatus.COMPLETED, StepStatus.FAILED)


class Suspended(Interrupt):
    """The run's next state is already committed (a retry is scheduled)."""


class Crashed(Interrupt):
    """The workers executing the run died more often than its retries allow."""


class Released(Interrupt):
    """The worker is stopping; hand the run back before starting another step."""


@dataclass
class Opened:
    """A step reached: its recorded result (``recorded``), or what its checkpoint needs."""

    name: str
    memo: Step | None
    checkpoint: dict[str, Any]
    recorded: bool = False
    output: Any = None


class Runner(Protocol):
    """One pass of a run's function on a worker (``executor.Execution``)."""

    run: Run
    using: str
    token: str
    memos: dict[str, Step]
    seen: dict[str, int]
    position: int
    in_step: bool
    planning: list[Any] | None
    # A parallel step task executes only its target step (``step_tasks``).
    targeted: bool

    @property
    def replaying(self) -> bool: ...

    def reach(self, step_id: str, kind: StepKind) -> tuple[str, int, Step | None]: ...

    def boundary(self) -> None: ...

    def fence(self) -> bool: ...

    def leave_group(self) -> None: ...

    def step_error(self, name: str, error: dict[str, Any]) -> StepError: ...

    def run_step(
        self,
        step_id: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        *,
        atomic: bool,
        kind: StepKind = StepKind.RUN,
        retries: int | None = None,
    ) -> Any: ...

    def open_step(
        self, step_id: str, kind: StepKind = StepKind.RUN, retries: int | None = None
    ) -> Opened: ...

    def close_step(self, opened: Opened, value: Any, error: BaseException | None) -> Any: ...
