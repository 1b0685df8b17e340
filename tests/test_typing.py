"""The steps' types: mypy infers ``ctx.step.run``'s result from its function (and
``ctx.step.invoke``'s from the invoked function), and reports wrong uses
(tests/typing/)."""

from __future__ import annotations

import re
from pathlib import Path

from mypy import api

HERE = Path(__file__).parent / "typing"
GOOD, BAD = HERE / "steps_good.py", HERE / "steps_bad.py"
ERROR = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): error: .*\[(?P<code>[\w-]+)\]$")


def test_mypy_infers_step_results_and_reports_wrong_uses():
    out, err, _ = api.run([str(GOOD), str(BAD), "--no-incremental"])
    errors = [m for m in map(ERROR.match, out.splitlines()) if m]
    assert errors, out + err
    assert not [m for m in errors if Path(m["file"]).name == GOOD.name], out
    reported = {(int(m["line"]), m["code"]) for m in errors if Path(m["file"]).name == BAD.name}
    expected = {
        (number, line.rsplit("# error: ", 1)[1].strip())
        for number, line in enumerate(BAD.read_text().splitlines(), 1)
        if "# error: " in line
    }
    assert len(expected) == 7
    assert reported == expected, out
