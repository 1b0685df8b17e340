"""A short chaos run: workers SIGKILLed and their connections cut at random while steps
fail and are retried, and every promise still holds. CHAOS_SEED reproduces the plan."""

import pytest
from django.db import connection

from tests import chaos

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


@pytest.mark.timeout(240)
def test_kills_cuts_and_failures_lose_nothing_and_double_nothing(tmp_path):
    summary = chaos.run(
        runs=100,
        workers=3,
        db_name=connection.settings_dict["NAME"],
        workdir=tmp_path,
        kill_every=(0.5, 1.5),
        cut_every=(1.0, 2.5),
        sleep="1s",
        timeout=180,
    )
    figures = "\n".join(f"  {key:<30} {value}" for key, value in summary.items())
    print(figures)
    assert summary["kills"] >= 3 and summary["connection_cuts"] >= 2, figures
    assert summary["step_retries"] > 0, figures
    assert chaos.verify(summary) == [], figures
