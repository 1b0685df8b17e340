"""Event keys never appear in the logs: ``POST /e/<key>`` keeps its path, and every log
record the app and Django (and gunicorn, uvicorn, uWSGI) write for it is masked."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.db import connection

from durable_flows.keys import create_key
from durable_flows.logs import MaskEventKeys, UWSGIMaskedURI, mask

ROOT = Path(__file__).resolve().parent.parent


def shown(raw: str) -> str:
    return raw[:12] + "…"


@pytest.mark.django_db
def test_djangos_4xx_warnings_for_the_event_api_are_masked(client, caplog):
    raw = create_key("logged")[1]
    with caplog.at_level(logging.DEBUG):
        assert client.get(f"/e/{raw}").status_code == 405
        assert client.post(f"/e/{raw}", "{oops", content_type="application/json").status_code == 400
        assert client.post(f"/e/{raw}?x=%00", "{}", content_type="application/json").status_code
        assert client.post("/e/not-a-key-but-secret").status_code == 401
        ok = client.post(f"/e/{raw}", '{"name": "test/one"}', content_type="application/json")
        assert ok.status_code == 200
    assert caplog.records, "the 4xx answers are logged"
    text = caplog.text
    assert raw not in text and raw[12:] not in text
    assert "not-a-key-but-secret" not in text
    assert f"Method Not Allowed: /e/{shown(raw)}" in text
    assert "Unauthorized: /e/…" in text


@pytest.mark.parametrize(
    ("logger", "message", "args"),
    [
        # runserver's access line (django.core.servers.basehttp.WSGIRequestHandler)
        ("django.server", '"%s" %s %s', ("POST /e/{key} HTTP/1.1", "200", "42")),
        # gunicorn's access log: its format string with a dict of atoms
        ("gunicorn.access", '%(h)s "%(r)s" %(s)s "%(f)s"', None),
        # uvicorn's access log
        ("uvicorn.access", '%s - "%s %s HTTP/%s" %d', ("::1", "GET", "/e/{key}", "1.1", 405)),
    ],
)
def test_access_log_lines_of_servers_are_masked(caplog, logger, message, args):
    raw = "dfk_" + "k" * 43
    if args is None:
        args = ({"h": "10.0.0.1", "r": f"POST /e/{raw} HTTP/1.1", "s": "200", "f": f"/e/{raw}"},)
    else:
        args = tuple(a.format(key=raw) if isinstance(a, str) else a for a in args)
    with caplog.at_level(logging.INFO, logger=logger):
        logging.getLogger(logger).info(message, *args)
    assert raw not in caplog.text and shown(raw) in caplog.text


def test_the_filter_masks_keys_anywhere_and_the_event_api_segment():
    raw = "dfk_" + "Ab9_-" * 8 + "xyz"
    assert mask(f"https://shop.example/e/{raw}?x=1") == f"https://shop.example/e/{shown(raw)}?x=1"
    assert mask(f"key={raw}; again {raw}") == f"key={shown(raw)}; again {shown(raw)}"
    assert mask('"POST /e/anything HTTP/1.1" 401') == '"POST /e/… HTTP/1.1" 401'
    assert mask("GET /flows/events/e/x/ and /docs/e/intro") == (
        "GET /flows/events/e/x/ and /docs/e/intro"
    )
    assert mask(mask(raw)) == shown(raw)
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "sent %s", (raw,), None)
    assert MaskEventKeys().filter(record) and record.getMessage() == f"sent {shown(raw)}"


def test_uwsgi_logs_get_a_masked_uri_variable(rf, monkeypatch):
    logvars: dict[str, str] = {}

    class FakeUWSGI:
        @staticmethod
        def set_logvar(key: str, value: str) -> None:
            logvars[key] = value

    monkeypatch.setitem(sys.modules, "uwsgi", FakeUWSGI)
    raw = "dfk_" + "z" * 43
    middleware = UWSGIMaskedURI(lambda request: None)
    middleware(rf.post(f"/e/{raw}?a=1"))
    assert logvars == {"masked_uri": f"/e/{shown(raw)}?a=1"}


# --- a real server ----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _request(url: str, method: str, body: bytes | None = None) -> int:
    request = urllib.request.Request(url, data=body, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.django_db(transaction=True)
def test_runservers_access_log_and_warnings_never_show_a_key(tmp_path):
    raw = create_key("runserver")[1]
    port = _free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DF_DB_NAME": str(connection.settings_dict["NAME"]),
        "PYTHONUNBUFFERED": "1",
    }
    log = tmp_path / "runserver.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.1)
            assert _request(f"{base}/e/{raw}", "POST", b'{"name": "test/one"}') == 200
            assert _request(f"{base}/e/{raw}", "GET") == 405
            assert _request(f"{base}/e/wrong-{raw[4:20]}", "POST", b"{}") == 401
        finally:
            server.terminate()
            server.wait(10)
    text = log.read_text(errors="replace")
    assert f"/e/{shown(raw)}" in text, text  # the lines are there, masked
    assert raw not in text and raw[12:30] not in text and raw[4:20] not in text
