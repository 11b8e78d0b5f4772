"""Static types of the public API: pyright and mypy report nothing on the package and on
the typed user scripts of tests/typing/, and do report the misuses of
tests/typing/negative_checks.py (a typo'd ``reduction=``, a list for an array, ...).

The checkers are optional locally (skipped when not installed) and required in CI
(``CI=true``). One run of each covers everything (about a minute on two cores).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest

from focal_array import _typing, boxes, detection, matcher, rcnn
from focal_array._loss_checks import REDUCTIONS

ROOT = Path(__file__).resolve().parent.parent
NEGATIVE = ROOT / "tests" / "typing" / "negative_checks.py"
TARGETS = ["focal_array", "tests/typing"]


def _tool(name: str) -> list[str]:
    if shutil.which(name) is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{name} is required in CI (pip install -e '.[test]')")
        pytest.skip(f"{name} is not installed")
    return [name] if name == "pyright" else [sys.executable, "-m", name]


def _expected(checker: str) -> set[int]:
    """Lines of negative_checks.py marked ``# error`` (or ``# error: <checker>``)."""
    lines = set()
    for number, line in enumerate(NEGATIVE.read_text().splitlines(), start=1):
        marker = re.search(r"# error(?::\s*(\w+))?$", line)
        if marker and marker.group(1) in (None, checker):
            lines.add(number)
    return lines


def _split(errors: list[tuple[str, int, str]]) -> tuple[list[str], set[int]]:
    """(errors outside negative_checks.py as messages, lines with errors inside it)."""
    unexpected, negative = [], set()
    for path, line, message in errors:
        if Path(path).resolve() == NEGATIVE:
            negative.add(line)
        else:
            unexpected.append(f"{path}:{line}: {message}")
    return unexpected, negative


def test_pyright() -> None:
    cmd = [*_tool("pyright"), "--outputjson", *TARGETS]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    report = json.loads(run.stdout)
    errors = [(d["file"], d["range"]["start"]["line"] + 1, d["message"])
              for d in report["generalDiagnostics"] if d["severity"] == "error"]
    unexpected, negative = _split(errors)
    assert unexpected == []
    assert negative == _expected("pyright")


def test_mypy(tmp_path: Path) -> None:
    cmd = [*_tool("mypy"), "--cache-dir", str(tmp_path / "cache"), "--no-error-summary",
           "--show-error-codes", *TARGETS]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode in (0, 1), run.stderr
    errors = []
    for line in run.stdout.splitlines():
        found = re.match(r"(.+?):(\d+): error: (.*)", line)
        if found:
            errors.append((found.group(1), int(found.group(2)), found.group(3)))
    unexpected, negative = _split(errors)
    assert unexpected == []
    assert negative == _expected("mypy")


@pytest.mark.parametrize(("literal", "runtime"), [
    (_typing.Reduction, REDUCTIONS),
    (_typing.TieRule, matcher.TIE_RULES),
    (_typing.BoxFormat, boxes.FORMATS),
    (_typing.ClassificationLoss, detection.CLASSIFICATION_LOSSES),
    (_typing.BoxLoss, detection.BOX_LOSSES),
    (_typing.Normalization, detection.NORMALIZATIONS),
    (_typing.Assigner, detection.ASSIGNERS),
    (_typing.BoxCoding, detection.BOX_CODINGS),
    (_typing.BoxWeighting, detection.BOX_WEIGHTINGS),
    (_typing.RcnnLoss, rcnn.RCNN_LOSSES),
])
def test_literals_list_the_accepted_strings(literal: object, runtime: tuple[str, ...]) -> None:
    """Each Literal option type names exactly the strings the function accepts."""
    assert set(get_args(literal)) == set(runtime)


def test_detection_result_keys() -> None:
    """The TypedDict's keys are the result's (centerness only with centerness_logits)."""
    import numpy as np

    anchors = np.array([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 40.0, 40.0]])
    args = (np.zeros((1, 2, 2)), np.zeros((1, 2, 4)), anchors,
            np.array([[[0.0, 0.0, 10.0, 10.0]]]), np.array([[1]]))
    spec = _typing.DenseDetectionLoss
    assert set(detection.dense_detection_loss(*args)) == spec.__required_keys__
    with_ctr = detection.dense_detection_loss(*args, centerness_logits=np.zeros((1, 2)))
    assert set(with_ctr) == spec.__required_keys__ | spec.__optional_keys__
