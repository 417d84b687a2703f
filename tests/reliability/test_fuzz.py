"""The fuzz suite's fast subset, one test per category, and the runner's own verdicts.

`python tests/reliability/fuzz.py --full` runs every case (docs/reliability.md); here each
category's fast cases must end with misbehaved = 0, and the runner must tell each way a case can
go wrong (a traceback, a hang, memory, a signal) and go on after it.
"""

import io
import os
import re
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fuzz  # noqa: E402

# Categories that share a worker process here (its imports, models and run folders): the suite's
# time. The command runs each in its own.
GROUPS = ("serving,tflite", "config,data,run_folder,keras_file", "flags")


def test_the_groups_cover_every_category():
    assert sorted(c for g in GROUPS for c in g.split(",")) == sorted(fuzz.CATEGORIES)


@pytest.mark.parametrize("group", GROUPS)
def test_the_fast_cases_are_clear_refusals_or_correct_results(group):
    out = io.StringIO()
    totals = fuzz.run([group], full=False, out=out)
    report = out.getvalue()
    assert not totals["misbehaved"], report
    # A category whose every case is one verdict tests only half of the contract.
    for category in group.split(","):
        counts = totals["by_category"][category]
        assert counts[fuzz.CLEAR] > 0 and counts[fuzz.CORRECT] > 0, report
    summary = report.strip().splitlines()[-1]
    assert re.fullmatch(
        rf"fuzz: tried {totals['tried']}, clear errors {totals['clear']}, correct results "
        rf"{totals['correct']}, misbehaved 0",
        summary,
    ), summary


def test_the_runner_judges_every_way_a_case_can_fail_and_goes_on():
    verdicts = {}

    def report(_category, name, verdict, detail):
        verdicts[name] = (verdict, detail)

    fuzz.run_category(fuzz.SELF_TEST, False, report)
    by_name = {name: verdict for name, (verdict, _) in verdicts.items()}
    assert by_name == {
        "clear": fuzz.CLEAR,
        "unclear": fuzz.MISBEHAVED,
        "wrong kind": fuzz.MISBEHAVED,
        "accepted": fuzz.MISBEHAVED,
        "correct": fuzz.CORRECT,
        "wrong": fuzz.MISBEHAVED,
        "hang": fuzz.MISBEHAVED,
        "after the hang": fuzz.CORRECT,
        "memory": fuzz.MISBEHAVED,
        "after the memory": fuzz.CORRECT,
        "signal": fuzz.MISBEHAVED,
        "after the signal": fuzz.CORRECT,
    }, verdicts
    assert "KeyError" in verdicts["wrong kind"][1]
    assert f"over {2 * fuzz.TIME_LIMIT_SCALE:g} s" in verdicts["hang"][1]
    assert "GB resident" in verdicts["memory"][1]
    assert "signal 11" in verdicts["signal"][1]
