"""Starting a function directly and waiting for its result, through real ``runflows``
workers on both databases: ``df.start``, ``df.handle`` and ``df.RunHandle``."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from asgiref.sync import sync_to_async
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext

import durable_flows as df
from durable_flows.models import Event, Run
from tests.flows_handles import started_only
from tests.models import Ledger

pytestmark = pytest.mark.django_db(transaction=True)


def test_start_runs_a_function_without_trigger_and_result_returns_its_output(start_worker):
    handle = df.start(started_only, {"order_id": 7})
    assert isinstance(handle, df.RunHandle)
    assert handle.status == "queued"
    start_worker("--concurrency", "2")
    assert handle.result(timeout=60) == {
        "event": "durable_flows/function.invoked",
        "data": {"order_id": 7},
        "run_id": handle.id,
    }
    assert handle.status == "completed"
    run = Run.objects.get(pk=handle.id)
    assert run.function_id == "started-only"
    assert run.event.name == "durable_flows/function.invoked"
    assert df.handle(handle.id) == handle


def test_start_by_id_string_and_without_data():
    handle = df.start("started-only")
    assert Run.objects.get(pk=handle.id).event.data == {}


def test_start_refuses_unknown_functions_and_bad_data_and_stores_nothing():
    with pytest.raises(ValueError, match="start\\(function=...\\) must be a durable function"):
        df.start("no-such-function")
    with pytest.raises(ValueError, match="must be a JSON object"):
        df.start(started_only, ["not", "a", "dict"])  # type: ignore[arg-type]
    assert not Run.objects.exists() and not Event.objects.exists()


def test_handle_of_an_unknown_run_raises_run_not_found():
    with pytest.raises(df.RunNotFound):
        df.handle("01NOSUCHRUN0000000000000000")


def test_start_commits_and_rolls_back_with_the_caller(start_worker):
    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        lost = df.start(started_only, {"ledger": "lost"})
        raise Abort
    with transaction.atomic():
        kept = df.start(started_only, {"ledger": "kept"})
    assert not Run.objects.filter(pk=lost.id).exists()
    start_worker()
    kept.result(timeout=60)
    with pytest.raises(df.RunNotFound):
        lost.result(timeout=1)
    assert list(Ledger.objects.values_list("key", flat=True)) == ["kept"]


def test_the_same_id_returns_the_first_runs_handle_and_starts_nothing():
    first = df.start(started_only, {"n": 1}, id="order-7")
    again = df.start(started_only, {"n": 2}, id="order-7")
    assert again == first
    assert Run.objects.count() == 1
    assert Run.objects.get().event.data == {"n": 1}


def test_result_raises_for_failed_and_cancelled_runs_and_times_out(start_worker):
    failed = df.start(started_only, {"fail": "card declined"})
    napping = df.start(started_only, {"sleep": "1h"})
    start_worker()
    with pytest.raises(df.RunFailedError) as caught:
        failed.result(timeout=60)
    assert caught.value.error["type"] == "NonRetriableError"
    assert caught.value.error["message"] == "card declined"
    deadline = time.monotonic() + 60
    while napping.status != "waiting" and time.monotonic() < deadline:
        time.sleep(0.05)
    began = time.monotonic()
    with pytest.raises(TimeoutError):
        napping.result(timeout=0.5)
    assert 0.4 < time.monotonic() - began < 5
    df.cancel(napping.id)
    with pytest.raises(df.RunCancelledError):
        napping.result(timeout=10)


def test_aresult_waits_without_blocking_the_event_loop(start_worker):
    handles = [df.start(started_only, {"i": i}) for i in range(5)]
    start_worker("--concurrency", "2")

    async def main() -> list:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        beat = asyncio.create_task(ticker())
        results = await asyncio.gather(*(h.aresult(timeout=60) for h in handles))
        beat.cancel()
        assert ticks > 1  # the loop ran while the handles waited
        await sync_to_async(lambda: connections.close_all())()  # the ORM thread of async code
        return results

    results = asyncio.run(main())
    assert [r["data"]["i"] for r in results] == list(range(5))


@pytest.mark.postgres
def test_waiting_handles_share_one_listen_connection_and_do_not_poll(start_worker):
    """On PostgreSQL, result() is woken by NOTIFY: waiting handles hold one LISTEN
    connection per process between them and read their run only when woken."""
    handles = [df.start(started_only, {"slow": 1.5, "i": i}) for i in range(4)]
    reads: list[int] = []
    results: list = []

    def wait(handle: df.RunHandle) -> None:
        from django.db import connection as thread_connection

        with CaptureQueriesContext(thread_connection) as queries:
            results.append(handle.result(timeout=60))
        reads.append(len(queries))
        thread_connection.close()

    threads = [threading.Thread(target=wait, args=(h,)) for h in handles]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    start_worker("--concurrency", "4")
    time.sleep(0.5)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN durable_flows_finished'"
        )
        assert cursor.fetchone()[0] == 1
    for thread in threads:
        thread.join(60)
    assert len(results) == 4
    # Each handle read its run a handful of times (when woken), not every few ms for
    # the 2.5 s it waited.
    assert max(reads) <= 12, reads
