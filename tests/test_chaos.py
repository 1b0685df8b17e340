"""A short chaos run: workers SIGKILLed at random, and every promise still holds."""

import pytest
from django.db import connection

from tests import chaos

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


def test_random_sigkills_lose_nothing_and_double_nothing(tmp_path):
    summary = chaos.run(
        runs=150,
        workers=3,
        db_name=connection.settings_dict["NAME"],
        workdir=tmp_path,
        kill_every=(0.4, 1.2),
        sleep="1s",
        timeout=240,
    )
    print(summary)
    assert summary["kills"] >= 3
    assert chaos.verify(summary) == [], summary
