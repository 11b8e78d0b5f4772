"""focal_array.keras on Keras 3's JAX and PyTorch backends, each in its own subprocess.

``KERAS_BACKEND`` is read once, when Keras is first imported, so the suite's own process
never imports Keras: tests/keras_checks.py runs once per backend (both at once) and
writes one result per check, reported here as one test each. Keras missing is a skip on
a user's machine and a failure in CI (``CI`` set), as for the array backends.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
SCRIPT = HERE / "keras_checks.py"
BACKENDS = ["jax", "torch"]


def _checks() -> list[tuple[str, str]]:
    """(backend, check) pairs of the script: every ``check_*`` on each backend, those
    decorated ``@eager_only_on_torch`` on torch only."""
    pairs = []
    for node in ast.parse(SCRIPT.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("check_"):
            torch_only = any(getattr(d, "id", None) == "eager_only_on_torch"
                             for d in node.decorator_list)
            pairs += [(b, node.name) for b in BACKENDS if b == "torch" or not torch_only]
    return pairs


CHECKS = _checks()


def _missing(name: str) -> bool:
    return importlib.util.find_spec(name) is None


@pytest.fixture(scope="module")
def keras_results(tmp_path_factory):
    """{backend: {check: "ok" | "skipped: ..." | traceback}}, or {backend: None} where
    that backend or Keras is not installed."""
    tmp = tmp_path_factory.mktemp("keras")
    runs, results = {}, {}
    for backend in BACKENDS:
        if _missing("keras") or _missing(backend):
            results[backend] = None
            continue
        env = {**os.environ, "KERAS_BACKEND": backend, "KERAS_HOME": str(tmp / "home"),
               "JAX_PLATFORMS": "cpu"}
        out = tmp / f"{backend}.json"
        proc = subprocess.Popen([sys.executable, str(SCRIPT), str(out)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        runs[backend] = (proc, out)
    for backend, (proc, out) in runs.items():
        try:
            stdout, stderr = proc.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        if proc.returncode != 0 or not out.exists():
            results[backend] = {"error": f"exit {proc.returncode}\n{stdout}\n{stderr}"}
        else:
            results[backend] = json.loads(out.read_text(encoding="utf-8"))["results"]
    return results


@pytest.mark.parametrize(("backend", "check"), CHECKS, ids=[f"{b}-{c[6:]}" for b, c in CHECKS])
def test_keras(keras_results, backend, check):
    results = keras_results[backend]
    if results is None:
        what = "keras" if _missing("keras") else backend
        if os.environ.get("CI"):
            pytest.fail(f"{what} must be installed in CI (focal_array.keras on {backend})")
        pytest.skip(f"{what} not installed")
    assert "error" not in results, results.get("error")
    result = results[check]
    if result.startswith("skipped:"):
        pytest.skip(result)
    assert result == "ok", result


def test_checks_are_found():
    assert len(CHECKS) >= 20
    assert {(b, "check_compile_fit_evaluate_save_load") for b in BACKENDS} <= set(CHECKS)
    assert ("jax", "check_doctests") not in CHECKS and ("torch", "check_doctests") in CHECKS
