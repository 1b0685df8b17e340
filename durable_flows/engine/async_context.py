"""What an ``async def`` function sees: ``ctx.step`` and ``ctx.group``, awaited.

Each step method returns an awaitable (``StepCall``); awaiting it runs the
same step machinery as a synchronous function's, on the worker thread
(``bridge.on_worker``), so the ORM never runs on the event loop. Only an
async step function with ``atomic=False`` is awaited on the loop itself, and
its result is then checkpointed on the worker thread.

A step call that is never awaited, or two awaited at once, is a mistake the
run fails on (``StepUsageError``), never a coroutine stored or dropped in
silence.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine, Generator
from datetime import datetime, timedelta
from typing import Any, TypeVar, TypeVarTuple, overload

from ..definitions.functions import Function
from ..definitions.payloads import Event
from ..exceptions import Interrupt, StepArgumentError, StepUsageError
from . import mailbox, patching, waiting
from .bridge import on_worker
from .context import Group, RunContext, check_run_arguments
from .parallel import park, plan_group
from .signals import Runner

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


def is_async_callable(fn: Any) -> bool:
    """Does calling ``fn`` make a coroutine (an ``async def`` function, a partial of
    one, an object with an ``async def __call__``)?"""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - the method, not callable()
    )


class StepCall(Awaitable[T]):
    """A step made by an async function: it runs when awaited, once."""

    def __init__(self, calls: StepCalls, what: str, coro: Coroutine[Any, Any, T]) -> None:
        self._calls, self.what, self._coro = calls, what, coro
        self.awaited = False
        calls.made.append(self)

    def __await__(self) -> Generator[Any, None, T]:
        try:
            self._calls.begin(self)
        except StepUsageError:
            self.close()
            raise
        try:
            return (yield from self._coro.__await__())
        finally:
            self._calls.end(self)

    def close(self) -> None:
        self._coro.close()  # never awaited: no "coroutine was never awaited" warning


class StepCalls:
    """The step calls of one run: each must be awaited, one after another."""

    def __init__(self) -> None:
        self.made: list[StepCall[Any]] = []
        self._running: list[StepCall[Any]] = []

    def begin(self, call: StepCall[Any]) -> None:
        if call.awaited:
            raise StepUsageError(f"{call.what} was awaited twice")
        call.awaited = True
        self.check(before=call)
        if self._running and self._running[-1].what != "ctx.group.parallel(...)":
            raise StepUsageError(
                f"{call.what} was awaited while {self._running[-1].what} was still running: "
                "await steps one at a time (asyncio.gather and tasks cannot run steps "
                "side by side); use ctx.group.parallel for steps that run at the same time"
            )
        self._running.append(call)

    def end(self, call: StepCall[Any]) -> None:
        self._running.remove(call)

    def check(self, before: StepCall[Any] | None = None) -> None:
        """A step made earlier (than ``before``, or at all) and never awaited fails the run."""
        for made in self.made:
            if made is before:
                break
            if not made.awaited:
                self.close()
                raise StepUsageError(
                    f"{made.what} was never awaited: in an async function every step "
                    f"is awaited, as in `await {made.what}`"
                )
        self.made = [] if before is None else self.made[self.made.index(before) + 1 :]

    def close(self) -> None:
        for made in self.made:
            if not made.awaited:
                made.close()
        self.made = []


class AsyncSteps:
    """``ctx.step`` in an ``async def`` function: the steps of ``Steps``, each awaited.

    ``await ctx.step.run(id, fn, *args)`` takes a synchronous ``fn`` (executed on
    the worker thread, inside the checkpoint's transaction when ``atomic=True``) or,
    with ``atomic=False`` only, an ``async def`` one, awaited on the event loop.
    """

    def __init__(self, execution: Runner, calls: StepCalls) -> None:
        self._execution = execution
        self._calls = calls

    def _call(self, what: str, coro: Coroutine[Any, Any, T]) -> StepCall[T]:
        return StepCall(self._calls, what, coro)

    @overload
    def run(
        self,
        step_id: str,
        fn: Callable[[*Ts], Awaitable[T]],
        *args: *Ts,
        atomic: bool = True,
        retries: int | None = None,
        **unknown: Any,
    ) -> StepCall[T]: ...

    @overload
    def run(
        self,
        step_id: str,
        fn: Callable[[*Ts], T],
        *args: *Ts,
        atomic: bool = True,
        retries: int | None = None,
        **unknown: Any,
    ) -> StepCall[T]: ...

    def run(
        self,
        step_id: str,
        fn: Callable[[*Ts], Any],
        *args: *Ts,
        atomic: bool = True,
        retries: int | None = None,
        **unknown: Any,
    ) -> StepCall[Any]:
        """``ctx.step.run`` awaited: run ``fn(*args)`` once, memoized across replays.

        As ``Steps.run``; besides, an ``async def`` ``fn`` needs ``atomic=False``
        (Django has no async transactions): its result is awaited on the event loop,
        then checkpointed.

        Raises:
            StepArgumentError: At the call: an ``async def`` ``fn`` with
                ``atomic=True``, an unknown keyword, a ``fn`` that is not callable.
        """
        check_run_arguments(step_id, fn, unknown, retries)
        if atomic and is_async_callable(fn):
            raise StepArgumentError(
                f"ctx.step.run({step_id!r}, ...): an async fn cannot be atomic (Django has "
                "no async transactions); pass atomic=False, or make fn synchronous to run "
                "it in the checkpoint's transaction"
            )
        what = f"ctx.step.run({step_id!r}, ...)"
        if atomic:
            run_step = self._execution.run_step
            call = on_worker(run_step, step_id, fn, args, atomic=True, retries=retries)
            return self._call(what, call)
        return self._call(what, _non_atomic(self._execution, step_id, fn, args, retries))

    def sleep(self, step_id: str, duration: timedelta | str) -> StepCall[None]:
        """``ctx.step.sleep``, awaited."""
        until, delta = waiting.sleep_args(duration=duration)
        call = on_worker(waiting.sleep, self._execution, step_id, until, delta)
        return self._call(f"ctx.step.sleep({step_id!r}, ...)", call)

    def sleep_until(self, step_id: str, when: datetime) -> StepCall[None]:
        """``ctx.step.sleep_until``, awaited."""
        until, delta = waiting.sleep_args(when=when)
        call = on_worker(waiting.sleep, self._execution, step_id, until, delta)
        return self._call(f"ctx.step.sleep_until({step_id!r}, ...)", call)

    def wait_for_event(
        self,
        step_id: str,
        *,
        event: str,
        timeout: timedelta | str,
        match: str | None = None,
        if_exp: str | None = None,
    ) -> StepCall[Event | None]:
        """``ctx.step.wait_for_event``, awaited."""
        call = on_worker(
            waiting.wait_for_event,
            self._execution,
            step_id,
            event=event,
            timeout=timeout,
            match=match,
            if_exp=if_exp,
        )
        return self._call(f"ctx.step.wait_for_event({step_id!r}, ...)", call)

    def send_event(self, step_id: str, events: Any) -> StepCall[list[str]]:
        """``ctx.step.send_event``, awaited."""
        call = on_worker(waiting.send_event, self._execution, step_id, events)
        return self._call(f"ctx.step.send_event({step_id!r}, ...)", call)

    @overload
    def invoke(
        self,
        step_id: str,
        *,
        function: Function[T],
        data: dict[str, Any] | None = None,
        timeout: timedelta | str | None = None,
    ) -> StepCall[T]: ...

    @overload
    def invoke(
        self,
        step_id: str,
        *,
        function: str,
        data: dict[str, Any] | None = None,
        timeout: timedelta | str | None = None,
    ) -> StepCall[Any]: ...

    def invoke(
        self,
        step_id: str,
        *,
        function: Function[Any] | str,
        data: dict[str, Any] | None = None,
        timeout: timedelta | str | None = None,
    ) -> StepCall[Any]:
        """``ctx.step.invoke``, awaited: the child run's result."""
        call = on_worker(
            waiting.invoke, self._execution, step_id, function=function, data=data, timeout=timeout
        )
        return self._call(f"ctx.step.invoke({step_id!r}, ...)", call)

    def wait_for_signal(
        self, step_id: str, name: str, timeout: timedelta | str
    ) -> StepCall[dict[str, Any] | None]:
        """``ctx.step.wait_for_signal``, awaited: the signal's data, or None at timeout."""
        call = on_worker(mailbox.wait_for_signal, self._execution, step_id, name, timeout)
        return self._call(f"ctx.step.wait_for_signal({step_id!r}, ...)", call)

    def _patched(self, change_id: str) -> StepCall[bool]:
        call = on_worker(patching.patched, self._execution, change_id)
        return self._call(f"ctx.patched({change_id!r})", call)


async def _non_atomic(
    execution: Runner, step_id: str, fn: Any, args: tuple[Any, ...], retries: int | None
) -> Any:
    """A non-atomic step: an async ``fn`` runs on the event loop; a synchronous one on
    the worker thread, and a coroutine it returns on the event loop."""
    opened = await on_worker(execution.open_step, step_id, retries=retries)
    if opened.recorded:
        return opened.output
    value, error = None, None
    execution.in_step = True
    try:
        value = fn(*args) if is_async_callable(fn) else await on_worker(fn, *args)
        if inspect.isawaitable(value):
            value = await value
    except Interrupt:
        raise
    except BaseException as exc:  # user code: any exception, SystemExit included
        error = exc
    finally:
        execution.in_step = False
    return await on_worker(execution.close_step, opened, value, error)


class AsyncGroup:
    """``ctx.group`` in an ``async def`` function."""

    def __init__(self, execution: Runner, calls: StepCalls) -> None:
        self._execution = execution
        self._calls = calls

    def parallel(self, callables: Any) -> StepCall[tuple[Any, ...]]:
        """``ctx.group.parallel``, awaited; each callable makes its step (``lambda:
        ctx.step.run(...)``, not awaited there: the group awaits it).

        ```python
        a, b = await ctx.group.parallel((
            lambda: ctx.step.run("fetch-a", fetch_a),
            lambda: ctx.step.run("fetch-b", fetch_b),
        ))
        ```
        """
        return StepCall(self._calls, "ctx.group.parallel(...)", self._parallel(callables))

    async def _parallel(self, callables: Any) -> tuple[Any, ...]:
        execution = self._execution
        await on_worker(execution.leave_group)
        steps = plan_group(execution, callables)
        try:
            fn = next(steps)
            while True:
                try:
                    value = fn()
                    if inspect.isawaitable(value):
                        value = await value
                except BaseException as exc:  # delivered where the group called fn
                    fn = steps.throw(exc)
                else:
                    fn = steps.send(value)
        except StopIteration as stop:
            outcome = stop.value
        if not isinstance(outcome, tuple):
            await on_worker(park, execution, outcome)
        return outcome


async def checked(ctx: AsyncContext, body: Awaitable[T]) -> T:
    """An async function's result, once every step it made was awaited."""
    try:
        value = await body
    except BaseException:
        ctx.calls.close()
        raise
    ctx.calls.check()
    return value


class AsyncContext(RunContext[AsyncSteps, AsyncGroup]):
    """``ctx`` in an ``async def`` durable function: ``await ctx.step.run(...)``.

    ``ctx.step`` ([`AsyncSteps`][durable_flows.engine.async_context.AsyncSteps]) and
    ``ctx.group`` ([`AsyncGroup`][durable_flows.engine.async_context.AsyncGroup]) return
    awaitables; the rest is as in ``df.Context``.
    """

    def __init__(self, execution: Runner, event: Event | None, events: list[Event]) -> None:
        super().__init__(execution, event, events)
        self.calls = StepCalls()
        self.step = AsyncSteps(execution, self.calls)
        self.group = AsyncGroup(execution, self.calls)

    def patched(self, change_id: str) -> StepCall[bool]:  # type: ignore[override]
        """``ctx.patched``, awaited: ``if await ctx.patched("change-id"):``."""
        return self.step._patched(change_id)


__all__ = ["AsyncContext", "AsyncGroup", "AsyncSteps", "Group", "StepCall"]
