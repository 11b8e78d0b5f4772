"""The benchmark harness cannot rot: ``--quick`` runs end to end and writes a valid report.

Nothing here looks at how fast anything is; only at the shape of what the harness writes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run([sys.executable, "-m", "benchmarks.run", "--quick", "--out",
                           str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(out / "results.json") as f:
        result = json.load(f)
    return result, (out / "benchmarks.md").read_text(), proc.stdout


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def test_top_level_schema(quick_run):
    result, _, _ = quick_run
    for key in ("schema", "date", "size", "quick", "repeats", "workloads", "machine", "rows",
                "memory", "accuracy", "targets", "method", "durations", "wall_s"):
        assert key in result, key
    assert result["schema"] == 1 and result["quick"] is True and result["size"] == "quick"
    assert result["wall_s"] > 0 and result["durations"]
    assert all(d["seconds"] >= 0 and d["workload"] for d in result["durations"])
    assert result["machine"]["cores"] >= 1 and result["machine"]["cpu"]
    assert result["rows"] and result["targets"]


def _check_status(item: dict) -> None:
    assert item["status"] in ("measured", "missing"), item
    if item["status"] == "missing":
        assert isinstance(item["reason"], str) and item["reason"], item


def test_every_row_is_measured_or_says_why(quick_run):
    result, _, _ = quick_run
    for row in result["rows"]:
        for key in ("workload", "backend", "mode", "impl", "status"):
            assert key in row, (key, row)
        _check_status(row)
        if row["status"] == "measured":
            t = row["times_ms"]
            assert len(t) == row["repeats"] and all(v > 0 for v in t)
            assert row["warmups"] >= 1
            assert row["min_ms"] <= row["median_ms"] <= row["max_ms"]
            if not row["peer"]:
                for ratio in row["ratios"].values():
                    assert ratio["min"] <= ratio["median"] <= ratio["max"]


def test_every_workload_and_backend_appears(quick_run):
    result, _, _ = quick_run
    seen = {(r["workload"], r["backend"]) for r in result["rows"]}
    for w in result["workloads"]:
        for b in ("numpy", "jax", "torch"):
            assert (w, b) in seen, (w, b)
    # focal_array itself is measured on numpy, and on jax/torch where installed
    for b in ("numpy", "jax", "torch"):
        if b != "numpy" and not _installed(b):
            continue
        assert any(r["backend"] == b and not r["peer"] and r["status"] == "measured"
                   for r in result["rows"]), b


def test_missing_peers_say_so(quick_run):
    result, _, _ = quick_run
    peers = {r["impl"]: r for r in result["rows"] if r["backend"] == "torch"}
    if not _installed("torchvision"):
        assert "not installed" in peers["torchvision eager"]["reason"]
    keras_rows = [r for r in result["rows"] if r["impl"].startswith("Keras")]
    assert keras_rows
    if not _installed("keras"):
        assert all("not installed" in r["reason"] for r in keras_rows)


def test_memory_and_accuracy_entries(quick_run):
    result, _, _ = quick_run
    assert result["memory"] and result["accuracy"]
    for m in result["memory"]:
        _check_status(m)
        if m["status"] == "measured":
            assert m["peak_extra_bytes"] >= 0 and m["method"]
            assert m["x_logits"] == pytest.approx(m["peak_extra_bytes"] / m["logits_bytes"])
    for a in result["accuracy"]:
        _check_status(a)
        if a["status"] == "measured":
            assert 0.0 <= a["max_rel_err"] and 0.0 <= a["frac_rel_err_gt_1e-5"] <= 1.0


def test_dense_memory_row(quick_run):
    # the "no (B, A, C) float target tensor" property is measured on JAX where installed
    result, page, _ = quick_run
    dense = [m for m in result["memory"] if m.get("workload") == "dense_b8"]
    targets = [t for t in result["targets"] if t["workload"] == "dense_b8"]
    assert len(targets) == 2 and all(t["limit"] == 0 for t in targets)
    if _installed("jax"):
        assert {m["mode"] for m in dense} == {"fwd", "fwd+bwd"}
        assert all(m["status"] == "measured" and m["xla_temp_bytes"] >= 0 for m in dense)
        assert all(isinstance(m["bac_temporaries"], int) for m in dense)
        assert all(t["met"] is not None for t in targets)
    assert "| dense_b8 |" in page


def test_full_size_temporaries_reads_the_entry_computation():
    from benchmarks.run import _full_size_temporaries

    hlo = """HloModule m

%fused (p: f32[2,3,4]) -> f32[2,3,4] {
  %p = f32[2,3,4]{2,1,0} parameter(0)
  ROOT %n = f32[2,3,4]{2,1,0} negate(%p)
}

ENTRY %main (x: f32[2,3,4]) -> (f32[], f32[2,3,4]) {
  %x = f32[2,3,4]{2,1,0} parameter(0)
  %mask = pred[2,3,4]{2,1,0} fusion(%x), kind=kLoop, calls=%fused
  %other = f32[2,3,5]{2,1,0} fusion(%x), kind=kLoop, calls=%fused
  %grad = f32[2,3,4]{2,1,0} fusion(%x, %mask), kind=kLoop, calls=%fused
  %sum = f32[] reduce(%grad), dimensions={0,1,2}
  ROOT %t = (f32[], f32[2,3,4]{2,1,0}) tuple(%sum, %grad)
}
"""
    # the parameter and the output are not temporaries; the mask is (any element type)
    assert _full_size_temporaries(hlo, (2, 3, 4)) == ["mask"]


def test_targets_and_page(quick_run):
    result, page, stdout = quick_run
    for t in result["targets"]:
        assert t["met"] in (True, False, None)
        assert (t["measured"] is None) == (t["met"] is None)
        if t["met"] is None:
            assert t["note"], t
    assert page.startswith("# Benchmarks")
    assert result["date"] in page and result["machine"]["cpu"] in page
    assert "| target |" in page and "target:" in stdout and "**Run time:**" in page


def test_script_form_help():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "run.py"),
                           "--help"], capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0 and "--quick" in proc.stdout


def test_page_renders_again_from_json_with_new_notes(quick_run, tmp_path):
    result, page, _ = quick_run
    src = tmp_path / "results.json"
    src.write_text(json.dumps(result))
    notes = tmp_path / "notes.md"
    notes.write_text("Closing note: rendered again, nothing measured.\n")
    out = tmp_path / "again"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.run", "--from-json", str(src),
                           "--notes", str(notes), "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    again = (out / "benchmarks.md").read_text()
    assert "Closing note: rendered again, nothing measured." in again
    # the measured part of the page is the same
    assert again.split("## Timings")[1][:2000] == page.split("## Timings")[1][:2000]
    assert json.loads((out / "results.json").read_text())["rows"] == result["rows"]
