"""``runflows --reload``: restart the worker when code changes, as ``runserver`` does.

Two processes, as with Django's own autoreloader. The *supervisor* (the command the
developer started) runs the worker as a child process and starts it again whenever it
exits with :data:`RESTART`. The *child* runs the worker in its main thread (so that
SIGTERM and Ctrl-C stop it gracefully) and Django's file watcher in a side thread: when
a watched file changes, the worker finishes the steps in hand, releases its runs and
exits with :data:`RESTART`, so that a reload never counts as a crash of the runs in
hand. A child that fails to start (a syntax error in ``flows.py``) is started again
at the next change of a ``.py`` file under the current directory.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from django.utils import autoreload

log = logging.getLogger("durable_flows.worker")

RESTART = 3  # the exit code Django's autoreloader uses for "start me again"
SKIPPED_DIRS = {".venv", "venv", "node_modules", "__pycache__", "site"}


def is_child() -> bool:
    return os.environ.get(autoreload.DJANGO_AUTORELOAD_ENV) == "true"


def supervise() -> int:
    """Run the worker as a child process until it exits for another reason than a
    reload; returns its exit code. SIGTERM and SIGINT are passed on to the child."""
    env = {**os.environ, autoreload.DJANGO_AUTORELOAD_ENV: "true"}
    arguments = autoreload.get_child_arguments()
    stopping = False
    while True:
        child = subprocess.Popen(arguments, env=env)  # noqa: S603 - our own command line

        def forward(signum: int, frame: Any, child: subprocess.Popen[bytes] = child) -> None:
            nonlocal stopping
            stopping = True
            child.send_signal(signum)

        previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            code = child.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if stopping:
            return code
        if code != RESTART:
            log.error("the worker exited with %s; it starts again when a .py file changes", code)
            _wait_for_a_change(Path.cwd())


def watch(stop_worker: Callable[[], None]) -> Callable[[], bool]:
    """In the child: watch files in a side thread; a change stops the worker gracefully.
    Returns a function telling whether the worker stopped for a change (then exit with
    :data:`RESTART`)."""
    reloader = autoreload.get_reloader()
    changed: list[str] = []

    def on_change(sender: object, file_path: Path, **kwargs: Any) -> bool:
        if not changed:
            log.info("%s changed: finishing the steps in hand, then restarting", file_path)
        changed.append(str(file_path))
        stop_worker()
        return True  # handled: no abrupt exit from the watcher's thread

    watching = threading.Event()

    def on_start(sender: object, **kwargs: Any) -> None:
        watching.set()

    autoreload.file_changed.connect(on_change, weak=False)
    autoreload.autoreload_started.connect(on_start, weak=False)
    threading.Thread(
        target=reloader.run, args=(threading.main_thread(),), name="df-reload", daemon=True
    ).start()
    # The watcher's first look at the files is its baseline: the worker starts after it
    # (loading the URLconf first can take a while), so no change goes unseen.
    watching.wait(timeout=60)
    time.sleep(0.2)
    log.info("watching for file changes with %s", type(reloader).__name__)

    def stopped_for_a_change() -> bool:
        reloader.stop()
        return bool(changed)

    return stopped_for_a_change


def _python_files(root: Path) -> Iterator[tuple[str, float]]:
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS and not d.startswith(".")]
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                try:
                    yield path, os.stat(path).st_mtime
                except OSError:
                    continue


def _wait_for_a_change(root: Path, interval: float = 1.0) -> None:
    before = dict(_python_files(root))
    while dict(_python_files(root)) == before:
        time.sleep(interval)
