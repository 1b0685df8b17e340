"""The engine: executing runs, and every change of a run's state.

A run's statuses and the one named function for each transition:

    send() ──▶ queued ──claim──▶ running ──finish──▶ completed | failed | cancelled
                 ▲  ▲              │ │ │
                 │  └──release─────┘ │ └──suspend──▶ waiting ──(due, woken)──claim──▶ running
                 │     hand_back     │                 │
                 │     rescue, sweep │                 └──cancel──▶ cancelled
                 └──────reopen───────┼── failed
                 queued ──cancel──▶ cancelled      running ──cancel──▶ (flagged; stops at a
                                                                        step boundary)

- ``leases.claim``: queued, or waiting and due, -> running (a lease token).
- ``leases.fence``: inside a checkpoint, prove the lease is still held.
- ``leases.release``: running -> queued, due at a time (a retry, a graceful
  stop, an engine error).
- ``leases.hand_back``: claimed runs that did not start -> queued, as they were.
- ``leases.suspend``: running -> waiting (a sleep, a wait for an event, an invoke,
  parallel steps); woken by the clock or by what it waits for.
- ``leases.rescue``: running under a dead worker -> queued, the crash counted.
- ``leases.sweep``: running under a live worker but held by none of its
  threads -> queued.
- ``outcomes.finish``: running -> completed, failed or cancelled, with its
  lifecycle events and its waits closed, in one transaction (``outcomes.fail``:
  failed, logged once).
- ``outcomes.cancel``: queued or waiting -> cancelled at once; running -> flagged.
- ``outcomes.retry_failed``: failed -> queued, from the step that failed.

Each transition is a conditional update on the state it expects; zero rows
means another worker moved the run first (``LeaseLost``).

Modules, each one concept: ``executor`` (one pass of a run's function) with
``steps`` (a ``ctx.step.run`` step: its function, checkpoint and retries) and
``context`` (the ``ctx`` API); ``async_context`` (the awaited ``ctx`` of an
``async def`` function) and ``bridge`` (a worker thread's event loop, and its
database calls sent back to the worker thread); the step kinds ``waiting`` (sleep, wait for an
event, invoke, send) and ``parallel`` (planning a group) behind
``signals.Runner``; ``step_tasks`` (a group's steps on any worker);
``checkpoints`` (a step's result and record); ``group_commit`` (shared commits);
``inbox`` (storing events) and ``outcomes`` (what storing an event or ending a
run sets off: waits resolved, runs started, runs cancelled; the recursion
lives there); ``waits`` (arming and matching waits); ``admission`` (flow
control at send) and ``slots`` (concurrency at claim); ``retry``,
``timeouts``; ``workers`` (worker rows, and rescuing dead workers' runs).
The engine reads and writes through the ORM and ``storage``; it never looks
at the database vendor.
"""
