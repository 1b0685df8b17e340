"""What user code sees: ``ctx`` and ``ctx.step``."""

from __future__ import annotations

import difflib
import inspect
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar, TypeVarTuple, overload

from ..definitions.functions import Function
from ..definitions.payloads import Event
from ..exceptions import StepArgumentError
from ..models import Event as EventRow
from . import mailbox, patching, waiting
from .parallel import run_group
from .signals import Runner

_base_logger = logging.getLogger("durable_flows.run")

T = TypeVar("T")
Ts = TypeVarTuple("Ts")
StepsT = TypeVar("StepsT")
GroupT = TypeVar("GroupT")


class _NotReplaying(logging.Filter):
    def __init__(self, execution: Runner) -> None:
        super().__init__()
        self._execution = execution

    def filter(self, record: logging.LogRecord) -> bool:
        return not self._execution.replaying


def _run_logger(execution: Runner) -> logging.Logger:
    # A fresh, unregistered Logger per run: it is collected with the run, and
    # its filter drops lines that a replay would otherwise log a second time.
    logger = logging.Logger(f"durable_flows.run.{execution.run.function_id}")
    logger.parent = _base_logger
    logger.addFilter(_NotReplaying(execution))
    return logger


class Steps:
    """``ctx.step``: every call is a checkpoint, executed once and then memoized."""

    def __init__(self, execution: Runner) -> None:
        self._execution = execution

    def run(
        self,
        step_id: str,
        fn: Callable[[*Ts], T],
        *args: *Ts,
        atomic: bool = True,
        retries: int | None = None,
        **unknown: Any,
    ) -> T:
        """Run ``fn(*args)`` once and return its (JSON) result, memoized across replays.

        With ``atomic=True`` the function's database writes and the checkpoint
        commit in one transaction: its writes to the ``DATABASE`` alias happen
        exactly once. Use ``atomic=False`` for calls to other systems: they are
        at-least-once (give them an idempotency key).

        A step that raises is retried with back-off under the function's
        ``retries``; ``df.NonRetriableError`` fails it at once and
        ``df.RetryAfterError`` picks the time of the next attempt.

        ``fn``'s arguments are passed positionally, after it; keywords are the
        step's own options (``atomic``), and any other keyword raises
        ``StepArgumentError`` (a ``TypeError``) at the call: give ``fn`` keyword
        arguments with ``functools.partial(fn, b=2)`` or a lambda. That error, a
        ``fn`` that is not callable, and a result that is not JSON
        (``StepOutputError``) are mistakes in the code: the run fails at once,
        without retries, saying which step and function.

        Args:
            step_id: The step's name within the run. A name repeated in a loop is
                recorded as ``id``, ``id:1``, ...
            fn: The step's code, called as ``fn(*args)``.
            *args: JSON values passed to ``fn``.
            atomic: Whether ``fn`` runs in the checkpoint's transaction.
            retries: How often this step is retried (0 to 20), instead of the
                function's ``retries``.

        Returns:
            ``fn``'s result, a JSON value (stored, never pickled).

        Raises:
            StepError: The step failed for good (retries exhausted or not
                retriable); the function may catch it.
        """
        check_run_arguments(step_id, fn, unknown, retries)
        return self._execution.run_step(step_id, fn, args, atomic=atomic, retries=retries)

    def sleep(self, step_id: str, duration: timedelta | str) -> None:
        """Pause the run for ``duration`` (``timedelta`` or ``"30s"``, ``"1h30m"``, ``"7d"``).

        Durable: the run holds no worker while it sleeps, and wakes when due even
        if every worker was restarted meanwhile.

        Args:
            step_id: The step's name within the run.
            duration: How long to sleep: a ``timedelta`` or a string such as ``"30s"``.
        """
        until, delta = waiting.sleep_args(duration=duration)
        waiting.sleep(self._execution, step_id, until, delta)

    def sleep_until(self, step_id: str, when: datetime) -> None:
        """Pause the run until ``when`` (a timezone-aware ``datetime``); a time in the
        past returns at once.

        Args:
            step_id: The step's name within the run.
            when: A timezone-aware ``datetime``.
        """
        until, delta = waiting.sleep_args(when=when)
        waiting.sleep(self._execution, step_id, until, delta)

    def wait_for_event(
        self,
        step_id: str,
        *,
        event: str,
        timeout: timedelta | str,
        match: str | None = None,
        if_exp: str | None = None,
    ) -> Event | None:
        """Wait for the first event named ``event`` sent after the wait began, or None at timeout.

        Args:
            step_id: The step's name within the run.
            event: The name of the event to wait for (no wildcard).
            timeout: How long to wait: a ``timedelta`` or a string such as ``"3d"``.
            match: A dotted path such as ``"data.user_id"``: the awaited event's
                value there must equal this run's event's.
            if_exp: A CEL condition over ``event`` (this run's event) and
                ``async`` (the candidate).

        Returns:
            The matching event, or ``None`` when the timeout passed first.
        """
        return waiting.wait_for_event(
            self._execution, step_id, event=event, timeout=timeout, match=match, if_exp=if_exp
        )

    def send_event(self, step_id: str, events: Any) -> list[str]:
        """Send one event or a list, once (the ids are memoized); returns the event ids.

        Args:
            step_id: The step's name within the run.
            events: A ``df.Event`` (or a dict with ``name``, ``data``, ...) or a
                list of them.

        Returns:
            The stored events' ids, in order, as ``df.send()`` returns them.
        """
        return waiting.send_event(self._execution, step_id, events)

    @overload
    def invoke(
        self,
        step_id: str,
        *,
        function: Function[T],
        data: dict[str, Any] | None = None,
        timeout: timedelta | str | None = None,
    ) -> T: ...

    @overload
    def invoke(
        self,
        step_id: str,
        *,
        function: str,
        data: dict[str, Any] | None = None,
        timeout: timedelta | str | None = None,
    ) -> Any: ...

    def invoke(
        self,
        step_id: str,
        *,
        function: Function[Any] | str,
        data: dict[str, Any] | None = None,
        timeout: timedelta | str | None = None,
    ) -> Any:
        """Start ``function`` (a durable function or its id) with ``data`` as its event's data,
        and return its result; a failed or timed-out child raises ``df.StepError``.

        The run holds no worker while the child runs.

        Args:
            step_id: The step's name within the run.
            function: The ``Function`` made by ``@df.function``, or its id.
            data: The ``data`` of the child's ``durable_flows/function.invoked`` event.
            timeout: Give up waiting after this long (``StepError``); ``None``
                waits as long as the child takes.

        Returns:
            The child run's return value.

        Raises:
            StepError: The child failed or the timeout passed.
        """
        return waiting.invoke(
            self._execution, step_id, function=function, data=data, timeout=timeout
        )

    def wait_for_signal(
        self, step_id: str, name: str, timeout: timedelta | str
    ) -> dict[str, Any] | None:
        """Wait for a signal ``name`` sent to this run with ``df.signal``, or None at timeout.

        A signal sent before the run reaches this step is kept and taken here; each
        signal is taken once, the oldest of its name first. The run holds no worker
        while it waits.

        Args:
            step_id: The step's name within the run.
            name: The signal's name.
            timeout: How long to wait: a ``timedelta`` or a string such as ``"1h"``.

        Returns:
            The signal's data (a dict), or ``None`` when the timeout passed first.
        """
        return mailbox.wait_for_signal(self._execution, step_id, name, timeout)


# The keywords ctx.step.run takes: its own options, keyword-only, read from its signature.
STEP_OPTIONS = tuple(
    name
    for name, parameter in inspect.signature(Steps.run).parameters.items()
    if parameter.kind is parameter.KEYWORD_ONLY
)


def check_run_arguments(
    step_id: str, fn: Any, unknown: dict[str, Any], retries: Any = None
) -> None:
    """``ctx.step.run``'s mistakes, refused at the call."""
    if unknown:
        raise StepArgumentError(_unknown_options(step_id, unknown))
    if retries is not None and (
        isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 20
    ):
        raise StepArgumentError(
            f"ctx.step.run({step_id!r}, ..., retries=...) must be an integer from 0 to 20 "
            f"(or None: the function's retries), got {retries!r}"
        )
    if not callable(fn):
        raise StepArgumentError(f"ctx.step.run({step_id!r}, fn): fn must be callable, got {fn!r}")


def _unknown_options(step_id: str, unknown: dict[str, Any]) -> str:
    """Which keywords ``ctx.step.run`` does not take, the option each may be a typo of,
    and how to pass arguments to ``fn`` instead."""
    named = []
    for name in sorted(unknown):
        close = difflib.get_close_matches(name, STEP_OPTIONS, n=1)
        named.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    plural = "s" if len(named) > 1 else ""
    options = ", ".join(f"{name}=" for name in STEP_OPTIONS)
    return (
        f"ctx.step.run({step_id!r}, ...) got unexpected keyword argument{plural} "
        f"{', '.join(named)}. Its keywords are its own options ({options}); fn's "
        f"arguments go positionally after fn, as in ctx.step.run({step_id!r}, fn, 1, 2), "
        "and for keyword arguments pass functools.partial(fn, b=2) or a lambda"
    )


class Group:
    """``ctx.group``: steps that may execute at the same time."""

    def __init__(self, execution: Runner) -> None:
        self._execution = execution

    def parallel(self, callables: Any) -> tuple[Any, ...]:
        """Call each callable (each makes steps); returns their results in order.

        New steps among them are executed side by side by any free workers, each
        retried on its own; the run holds no worker while it waits for them.

        ```python
        a, b = ctx.group.parallel((
            lambda: ctx.step.run("fetch-a", fetch_a),
            lambda: ctx.step.run("fetch-b", fetch_b),
        ))
        ```

        Args:
            callables: A sequence of callables without arguments, each of which
                calls ``ctx.step.run`` (or another step).

        Returns:
            Their results, in the order of ``callables``.
        """
        self._execution.leave_group()
        return run_group(self._execution, callables)


class RunContext(Generic[StepsT, GroupT]):
    """What ``ctx`` holds in synchronous and async functions alike."""

    step: StepsT
    """The step API: ``run``, ``sleep``, ``sleep_until``, ``wait_for_event``,
    ``send_event``, ``invoke``, ``wait_for_signal``."""
    group: GroupT
    """``parallel``: steps executed at the same time."""

    def __init__(self, execution: Runner, event: Event | None, events: list[Event]) -> None:
        run = execution.run
        self.event = event
        """The event that started the run (the first of a batch; a cron tick's is
        ``durable_flows/scheduled.timer``)."""
        self.events = events
        """Every event of the run: a batch's events (``batch_events=``), else ``[event]``."""
        self.run_id: str = run.pk
        """The run's id (a ULID): with the step's name, a good idempotency key."""
        self.function_id: str = run.function_id
        """The id given to ``@df.function``."""
        self.attempt: int = run.attempt
        """How many attempts of the code outside steps have failed so far (0 at first)."""
        self.logger = _run_logger(execution)
        """A ``logging.Logger`` (``durable_flows.run.<function id>``) that does not
        repeat its lines when the function is replayed."""
        # Set in on_failure handlers: the failed run's id and its function.failed event.
        self.failed_run_id: str | None = None
        """In an ``on_failure`` handler: the id of the run that failed."""
        self.failed_event: Event | None = None
        """In an ``on_failure`` handler: the event that started the failed run."""
        self._execution = execution

    def __repr__(self) -> str:
        return f"<Context {self.function_id} run={self.run_id}>"

    def patched(self, change_id: str) -> bool:
        """For changing code under running runs: True for a run that reaches this call
        for the first time, False for one that had already recorded steps past this
        point before the change existed. Recorded once per run; the same on replay.

        ```python
        if ctx.patched("send-sms-too"):
            ctx.step.run("sms", send_sms, order_id)   # the new code
        ctx.step.run("email", send_email, order_id)   # what old runs did
        ```

        Deploy, wait until the runs started before it have finished, then remove the
        old branch and, later, the call (see the orchestration docs).
        """
        return patching.patched(self._execution, change_id)

    def _stored_event(self, event_id: str) -> Event | None:
        """The stored event ``event_id``, or None: on_failure handlers load the failed run's."""
        row = EventRow.objects.filter(pk=event_id).first()
        return Event.from_model(row) if row is not None else None


class Context(RunContext[Steps, Group]):
    """The argument of every durable function, ``ctx``.

    ``ctx.step`` makes the steps ([`Steps`][durable_flows.engine.context.Steps]),
    ``ctx.group`` runs steps in parallel ([`Group`][durable_flows.engine.context.Group]).
    The other attributes are those of every run's context
    ([`RunContext`][durable_flows.engine.context.RunContext]).
    """

    def __init__(self, execution: Runner, event: Event | None, events: list[Event]) -> None:
        super().__init__(execution, event, events)
        self.step = Steps(execution)
        self.group = Group(execution)
