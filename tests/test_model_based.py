"""Model-based, differential: random programs (tests/model_based.py) predicted by a model
of the specification, executed by the in-process reference, and by real ``runflows``
processes that their crashing steps kill; all must agree, and every effect must have
happened as often as promised.

The seed is printed; MODEL_SEED=<seed> reproduces the programs (MODEL_PROGRAMS=<n>
changes how many). A longer run: ``make soak``.
"""

from __future__ import annotations

import os
from collections import Counter

import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import model_based

PROGRAMS = int(os.environ.get("MODEL_PROGRAMS", "40"))


def _run(tmp_path, database: str) -> None:
    seed = model_based.seed_from_env()
    programs = model_based.generate_programs(seed, PROGRAMS)
    print(f"model: seed {seed}, {len(programs)} programs on {connection.vendor}")
    summary = model_based.run_model(
        programs,
        db_name=str(connection.settings_dict["NAME"]),
        workdir=tmp_path,
        seed=seed,
        timeout=150,
    )
    lines: list[str] = []
    model_based.report(summary, programs, seed, say=lines.append)
    print("\n".join(lines))
    assert not summary["findings"] and not summary["stuck"], (
        f"MODEL_SEED={seed} python -m tests.model_based --programs {PROGRAMS} "
        f"--database {database}  # reproduces the programs\n" + "\n".join(lines)
    )


@pytest.mark.postgres
@pytest.mark.timeout(240)
@pytest.mark.django_db(transaction=True)
def test_random_programs_agree_on_postgresql(tmp_path):
    _run(tmp_path, "postgres")


@pytest.mark.sqlite
@pytest.mark.timeout(240)
@pytest.mark.django_db(transaction=True)
def test_random_programs_agree_on_sqlite(tmp_path):
    _run(tmp_path, "sqlite")


class _Draw:
    """A program's choices drawn by hypothesis, so that a failing program shrinks."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data

    def randint(self, a: int, b: int) -> int:
        return self.data.draw(st.integers(a, b))

    def choice(self, seq: list):
        return seq[self.randint(0, len(seq) - 1)]

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.randint(0, 100) / 100

    def chance(self, p: float) -> bool:
        return self.randint(0, 99) >= 100 - round(p * 100)


@pytest.mark.timeout(120)
@pytest.mark.django_db
@settings(
    max_examples=int(os.environ.get("MODEL_EXAMPLES", "50")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_the_reference_executes_programs_as_the_model_predicts(tmp_path_factory, data):
    """In-process only (crashes modelled as failed attempts): quick, and shrinks."""
    program = {"index": 0, **model_based.generate_program(_Draw(data))}
    directory = tmp_path_factory.mktemp("ref")
    runs = model_based.execute_reference([program], directory, os.urandom(4).hex(), timeout=60)
    observed, world = model_based.observe_all(runs, directory)
    got = observed[0]
    assert model_based.compare(model_based.predict(program), got) == [], program
    assert model_based.check_effects(program, got, world, Counter()) == [], program
