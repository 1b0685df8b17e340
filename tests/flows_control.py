"""Durable functions for the flow-control and parallel-step tests (and the bench)."""

from __future__ import annotations

import os
import time

import durable_flows as df

from .models import Effect, Span


def span(key: str, run_id: str, label: str, seconds: float) -> float:
    """Execute for ``seconds`` and record when (one write, after the fact)."""
    started = time.time()
    time.sleep(seconds)
    Span.objects.create(
        key=key, run_id=run_id, label=label, pid=os.getpid(), started=started, ended=time.time()
    )
    return started


@df.function(
    id="per-tenant",
    trigger=df.TriggerEvent(event="test/tenant-job"),
    concurrency=[df.Concurrency(limit=2, key="event.data.tenant")],
)
def per_tenant(ctx: df.Context) -> str:
    tenant, seconds = ctx.event.data["tenant"], ctx.event.data.get("seconds", 0.2)
    ctx.step.run("work", span, "tenant", ctx.run_id, tenant, seconds, atomic=False)
    ctx.step.run("more", span, "tenant", ctx.run_id, tenant, seconds / 2, atomic=False)
    return tenant


@df.function(
    id="two-limits",
    trigger=df.TriggerEvent(event="test/two-limits"),
    concurrency=[df.Concurrency(limit=3), df.Concurrency(limit=1, key="event.data.account")],
)
def two_limits(ctx: df.Context) -> None:
    ctx.step.run(
        "work", span, "two-limits", ctx.run_id, ctx.event.data["account"], 0.15, atomic=False
    )


@df.function(
    id="throttled",
    trigger=df.TriggerEvent(event="test/throttled"),
    throttle=df.Throttle(limit=2, period="1s", key="event.data.key"),
)
def throttled(ctx: df.Context) -> float:
    return ctx.step.run("start", time.time)


@df.function(
    id="rate-limited",
    trigger=df.TriggerEvent(event="test/rate-limited"),
    rate_limit=df.RateLimit(limit=3, period="1m", key="event.data.user"),
)
def rate_limited(ctx: df.Context) -> None:
    Effect.objects.create(key="rate-limited", run_id=ctx.run_id)


@df.function(
    id="debounced",
    trigger=df.TriggerEvent(event="test/debounced"),
    debounce=df.Debounce(period="1s", key="event.data.user", timeout="3s"),
)
def debounced(ctx: df.Context) -> int:
    Effect.objects.create(key="debounced", run_id=ctx.run_id)
    return ctx.event.data["n"]


@df.function(
    id="batched",
    trigger=df.TriggerEvent(event="test/batched"),
    batch_events=df.Batch(max_size=5, timeout="2s", key="event.data.group"),
)
def batched(ctx: df.Context) -> list:
    Effect.objects.create(key="batched", run_id=ctx.run_id)
    return [e.data["n"] for e in ctx.events]


@df.function(
    id="prioritised",
    trigger=df.TriggerEvent(event="test/prioritised"),
    priority=df.Priority(run="event.data.priority"),
)
def prioritised(ctx: df.Context) -> float:
    return ctx.step.run("start", time.time)


@df.function(
    id="idempotent",
    trigger=df.TriggerEvent(event="test/idempotent"),
    idempotency="event.data.order_id",
)
def idempotent(ctx: df.Context) -> None:
    Effect.objects.create(key="idempotent", run_id=ctx.run_id)


def _singleton_body(ctx: df.Context) -> str:
    seconds = ctx.event.data.get("seconds", 0)
    ctx.step.run("one", span, "singleton", ctx.run_id, "one", seconds, atomic=False)
    ctx.step.run("two", span, "singleton", ctx.run_id, "two", 0, atomic=False)
    return ctx.event.data["n"]


single_skip = df.function(
    id="single-skip",
    trigger=df.TriggerEvent(event="test/single-skip"),
    singleton=df.Singleton(key="event.data.user", mode="skip"),
)(_singleton_body)

single_cancel = df.function(
    id="single-cancel",
    trigger=df.TriggerEvent(event="test/single-cancel"),
    singleton=df.Singleton(key="event.data.user", mode="cancel"),
)(_singleton_body)


def _maybe_fail(run_id: str, label: str, failures: int) -> str:
    Effect.objects.create(key=f"parallel-{label}", run_id=run_id)
    if Effect.objects.filter(key=f"parallel-{label}", run_id=run_id).count() <= failures:
        raise ValueError(f"{label} failed")
    return label


def _fan_step(run_id: str, label: str, seconds: float, failures: int) -> str:
    span("fan-out", run_id, label, seconds)
    return _maybe_fail(run_id, label, failures)


def fan_out(ctx: df.Context) -> dict:
    seconds = ctx.event.data.get("seconds", 0)
    fail = ctx.event.data.get("fail", {})
    first = ctx.step.run("before", lambda: "before")

    def branch(label: str):
        args = (ctx.run_id, label, seconds, fail.get(label, 0))
        return lambda: ctx.step.run(label, _fan_step, *args, atomic=False)

    results = ctx.group.parallel(tuple(branch(label) for label in ("a", "b", "c")))
    caught = None
    try:
        ctx.group.parallel(
            (
                lambda: ctx.step.run("doomed", _maybe_fail, ctx.run_id, "doomed", 99, atomic=False),
                lambda: ctx.step.run("fine", lambda: "fine"),
            )
        )
    except df.StepError as exc:
        caught = exc.error["message"]
    last = ctx.step.run("after", lambda: "after")
    return {"first": first, "results": list(results), "caught": caught, "last": last}


df.function(id="fan-out", trigger=df.TriggerEvent(event="test/fan-out"), retries=2)(fan_out)
df.function(
    id="fan-out-one-at-a-time",
    trigger=df.TriggerEvent(event="test/fan-out-limited"),
    retries=2,
    concurrency=[df.Concurrency(limit=1)],
)(fan_out)


# --- the bench (bench/concurrency_keys.py) ----------------------------------------


def _bench_step(key: str) -> str:
    time.sleep(0.01)
    return key


@df.function(id="bench-unlimited", trigger=df.TriggerEvent(event="bench/unlimited"))
def bench_unlimited(ctx: df.Context) -> str:
    return ctx.step.run("work", _bench_step, ctx.event.data["key"], atomic=False)


@df.function(
    id="bench-keyed",
    trigger=df.TriggerEvent(event="bench/keyed"),
    concurrency=[df.Concurrency(limit=1, key="event.data.key")],
)
def bench_keyed(ctx: df.Context) -> str:
    return ctx.step.run("work", _bench_step, ctx.event.data["key"], atomic=False)


def _boom() -> None:
    raise df.NonRetriableError("boom")


@df.function(id="fail-fast", trigger=df.TriggerEvent(event="test/fail-fast"))
def fail_fast(ctx: df.Context) -> dict:
    try:
        ctx.group.parallel(
            (
                lambda: ctx.step.run("boom", _boom),
                lambda: ctx.step.run("ok", lambda: "ok"),
                lambda: ctx.step.run("also-ok", lambda: "also ok"),
            )
        )
    except df.StepError as exc:
        return {"caught": exc.error["message"]}
    return {"caught": None}
