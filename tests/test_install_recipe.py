"""The tutorial's install recipe, pasted into a brand-new ``django-admin startproject``,
works: the blocks of docs/tutorial.md marked ``<!-- recipe: NAME -->`` are applied as
written (settings appended, urls.py and flows.py replaced), then its commands run: the
system checks pass, the example flow completes, and a staff user opens the dashboard."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.sqlite  # it builds its own SQLite project: once is enough


def recipe() -> dict[str, str]:
    text = (ROOT / "docs" / "tutorial.md").read_text()
    blocks = re.findall(r"<!-- recipe: (\w+) -->\n```\w*\n(.*?)\n```", text, flags=re.S)
    return dict(blocks)


def run(script: str, cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"{script}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    return done.stdout + done.stderr


def test_the_tutorial_recipe_works_in_a_fresh_startproject(tmp_path):
    blocks = recipe()
    assert {"setup", "settings", "urls", "flows", "commands"} <= set(blocks)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "DATABASE_URL", "DF_", "DURABLE_FLOWS"))
    }
    # The recipe's `python` and `django-admin` are this environment's; the app is
    # importable as an installed package would be.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = str(ROOT)
    run(blocks["setup"], tmp_path, env)
    site = tmp_path / "mysite"
    settings = site / "mysite" / "settings.py"
    settings.write_text(settings.read_text() + "\n" + blocks["settings"] + "\n")
    (site / "mysite" / "urls.py").write_text(blocks["urls"] + "\n")
    (site / "shop" / "flows.py").write_text(blocks["flows"] + "\n")

    output = run(blocks["commands"], site, env)
    assert "System check identified no issues" in output
    assert re.search(r"\S+ completed ", output), output

    dashboard = run(
        "python manage.py shell -c '\n"
        "from django.test import Client\n"
        "c = Client()\n"
        'assert c.login(username="admin", password="change-me")\n'
        'for url in ("/flows/", "/flows/functions/", "/admin/durable_flows/run/"):\n'
        '    print(url, c.get(url, HTTP_HOST="localhost").status_code)\n'
        "'",
        site,
        env,
    )
    pages = [line for line in dashboard.splitlines() if line.startswith("/")]
    assert pages == [
        "/flows/ 200",
        "/flows/functions/ 200",
        "/admin/durable_flows/run/ 200",
    ], dashboard
