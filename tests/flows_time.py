"""Durable functions for the time-and-events tests (imported by tests/flows.py)."""

from __future__ import annotations

import os

import durable_flows as df

from .models import Effect


def record(key: str, run_id: str = "") -> int:
    Effect.objects.create(key=key, run_id=run_id)
    return Effect.objects.filter(key=key, run_id=run_id).count()


@df.function(id="sleeper", trigger=df.TriggerEvent(event="test/sleep"))
def sleeper(ctx: df.Context) -> dict:
    before = ctx.step.run("before", record, "before-sleep", ctx.run_id)
    ctx.step.sleep("nap", ctx.event.data.get("duration", "7d"))
    after = ctx.step.run("after", record, "after-sleep", ctx.run_id)
    return {"before": before, "after": after}


@df.function(id="sleep-until", trigger=df.TriggerEvent(event="test/sleep-until"))
def sleep_until(ctx: df.Context) -> str:
    from datetime import datetime

    when = datetime.fromisoformat(ctx.event.data["when"])
    ctx.step.sleep_until("until", when)
    return ctx.step.run("woke", lambda: "woke")


@df.function(id="event-keeper", trigger=df.TriggerEvent(event="test/keep"))
def event_keeper(ctx: df.Context) -> dict:
    before = ctx.step.run("before", lambda: {"id": ctx.event.id, "data": ctx.event.data})
    ctx.step.sleep("nap", "2d")
    return {"before": before, "after": {"id": ctx.event.id, "data": ctx.event.data}}


@df.function(id="bad-sleep", trigger=df.TriggerEvent(event="test/bad-sleep"))
def bad_sleep(ctx: df.Context) -> None:
    ctx.step.sleep("nap", ctx.event.data["duration"])


def _retry_after(after: object) -> None:
    raise df.RetryAfterError("try later", after)  # type: ignore[arg-type]


@df.function(id="bad-retry-after", trigger=df.TriggerEvent(event="test/bad-retry-after"))
def bad_retry_after(ctx: df.Context) -> None:
    ctx.step.run("later", _retry_after, ctx.event.data["after"])


@df.function(id="waiter", trigger=df.TriggerEvent(event="test/wait"))
def waiter(ctx: df.Context) -> dict | None:
    d = ctx.event.data
    got = ctx.step.wait_for_event(
        "login",
        event="test/login",
        match=d.get("match", "data.user_id"),
        if_exp=d.get("if_exp"),
        timeout=d.get("timeout", "1h"),
    )
    record("resumed", ctx.run_id)  # outside a step: counts executions past the wait
    ctx.step.run("after", record, "after-wait", ctx.run_id)
    return None if got is None else {"id": got.id, "name": got.name, "data": got.data}


@df.function(id="sender", trigger=df.TriggerEvent(event="test/send"))
def sender(ctx: df.Context) -> list:
    ids = ctx.step.send_event(
        "send", [df.Event(name="test/one", data={}), {"name": "test/sent", "data": {"n": 1}}]
    )
    ctx.step.run("after", record, "after-send", ctx.run_id)
    return ids


@df.function(id="child", trigger=df.TriggerEvent(event="test/child"), retries=0)
def child(ctx: df.Context) -> dict:
    d = ctx.event.data
    if d.get("fail"):
        ctx.step.run("boom", _boom)
    if d.get("sleep"):
        ctx.step.sleep("slow", d["sleep"])
    return {"doubled": d["n"] * 2, "event": ctx.event.name}


def _boom() -> None:
    raise df.NonRetriableError("child exploded")


@df.function(id="parent", trigger=df.TriggerEvent(event="test/parent"))
def parent(ctx: df.Context) -> dict:
    d = ctx.event.data
    try:
        result = ctx.step.invoke(
            "call-child", function=child, data=d.get("child", {}), timeout=d.get("timeout")
        )
    except df.StepError as exc:
        return {"error": exc.error["type"], "message": exc.error["message"]}
    ctx.step.run("after", record, "after-invoke", ctx.run_id)
    return {"result": result}


@df.function(
    id="cancellable",
    trigger=df.TriggerEvent(event="test/order"),
    cancel=[
        df.Cancel(event="test/order.cancelled", match="data.order_id"),
        df.Cancel(event="test/stop-all", if_exp="async.data.reason == 'halt'", timeout="1h"),
    ],
)
def cancellable(ctx: df.Context) -> str:
    ctx.step.run("first", record, "cancellable-first", ctx.run_id)
    ctx.step.sleep("wait", ctx.event.data.get("sleep", "1d"))
    ctx.step.run("second", record, "cancellable-second", ctx.run_id)
    return "done"


@df.function(
    id="timed",
    trigger=df.TriggerEvent(event="test/timed"),
    timeouts=df.Timeouts(start="10m", finish="1h"),
)
def timed(ctx: df.Context) -> str:
    ctx.step.run("first", record, "timed-first", ctx.run_id)
    ctx.step.sleep("wait", ctx.event.data.get("sleep", "2h"))
    ctx.step.run("second", record, "timed-second", ctx.run_id)
    return "done"


def _notify_failure(ctx: df.Context, error: dict) -> dict:
    ctx.step.run("alert", record, "on-failure", ctx.event.data["order_id"])
    return {"event": ctx.event.name, "error": error["message"], "failed_run": ctx.failed_run_id}


@df.function(
    id="fails",
    trigger=df.TriggerEvent(event="test/fails"),
    retries=0,
    on_failure=_notify_failure,
)
def fails(ctx: df.Context) -> None:
    ctx.step.run("charge", _boom)


def register_cron_functions() -> list[str]:
    """Cron functions tick on their own, so they exist only where a test asks for them:
    in the test process through a fixture, in ``runflows`` processes with DF_TEST_CRON=1."""

    @df.function(id="ticker", trigger=df.TriggerCron(cron="*/2 * * * * *"))
    def ticker(ctx: df.Context) -> str:
        ctx.step.run("tick", record, "tick", ctx.event.data["tick"])
        return ctx.event.data["tick"]

    @df.function(id="daily", trigger=df.TriggerCron(cron="TZ=Europe/Paris 0 9 * * 1-5"))
    def daily(ctx: df.Context) -> str:
        return ctx.event.data["tick"]

    return ["ticker", "daily"]


if os.environ.get("DF_TEST_CRON"):
    register_cron_functions()
