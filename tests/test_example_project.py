"""The example project: deploy checks pass in production settings; the demo runs."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

from tests.conftest import ROOT


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings", **env}
    full_env.pop("DF_DB_NAME", None)
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
    )


def test_check_deploy_passes_in_production_settings():
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="flows.example.com",
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_settings_refuse_to_start_without_a_secret_key():
    result = manage("check", DEBUG="false", SECRET_KEY="")
    assert result.returncode != 0
    assert "Set SECRET_KEY" in result.stderr


def test_the_demo_runs_every_example_workflow_to_its_end(tmp_path):
    url = f"sqlite:///{tmp_path / 'demo.sqlite3'}"
    assert manage("migrate", "-v", "0", DATABASE_URL=url).returncode == 0
    result = manage("demo", DATABASE_URL=url)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert out.count("fulfil-order  COMPLETED") == 2
    assert "fulfil-order  FAILED" in out and "not enough 'gadget' in stock" in out
    assert "alert-ops-on-failure  COMPLETED" in out
    assert "'logged_in': True" in out and "'logged_in': False" in out
    assert "onboarding  CANCELLED" in out
    assert "Traceback" not in result.stderr
