"""The benchmark harness cannot rot: ``--quick`` runs end to end and writes a valid report,
and the GPU script's CPU smoke mode runs every code path.

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
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run([sys.executable, "-m", "benchmarks.run", "--quick", "--out",
                           str(out)], cwd=ROOT, capture_output=True, text=True, timeout=900,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(out / "results.json") as f:
        result = json.load(f)
    return result, (out / "benchmarks.md").read_text(), proc.stdout, out


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _check_status(item: dict) -> None:
    assert item["status"] in ("measured", "missing"), item
    if item["status"] == "missing":
        assert isinstance(item["reason"], str) and item["reason"], item


def test_top_level_schema(quick_run):
    result, _, _, _ = quick_run
    for key in ("schema", "date", "quick", "workloads", "backends", "machine", "rows",
                "memory", "accuracy", "targets", "method", "durations", "wall_s", "command"):
        assert key in result, key
    assert result["schema"] == 2 and result["quick"] is True
    assert result["wall_s"] > 0 and result["durations"]
    assert all(d["seconds"] >= 0 and d["workload"] for d in result["durations"])
    assert result["machine"]["cores"] >= 1 and result["machine"]["cpu"]
    assert result["rows"] and result["targets"]


def test_every_row_is_measured_or_says_why(quick_run):
    result, _, _, _ = quick_run
    for row in result["rows"]:
        for key in ("workload", "size", "size_label", "x", "backend", "mode", "key", "impl",
                    "status"):
            assert key in row, (key, row)
        _check_status(row)
        if row["status"] == "measured":
            t = row["times_ms"]
            assert len(t) == row["repeats"] and all(v > 0 for v in t)
            assert row["min_ms"] <= row["median_ms"] <= row["max_ms"]
            assert row["first_call_ms"] > 0
            if not row["peer"]:
                for ratio in row["ratios"].values():
                    assert ratio["min"] <= ratio["median"] <= ratio["max"]


def test_every_workload_size_and_backend_appears(quick_run):
    from benchmarks.workloads import sizes

    result, _, _, _ = quick_run
    seen = {(r["workload"], r["size"], r["backend"]) for r in result["rows"]}
    expect = {"sigmoid_b1": ("numpy", "jax", "torch"), "sigmoid_b8": ("numpy", "jax", "torch"),
              "softmax_ce": ("numpy", "jax", "torch"),
              "softmax_focal": ("numpy", "jax", "torch"), "match_1img": ("numpy", "torch"),
              "match_b8": ("jax", "torch"), "inspect": ("numpy",)}
    assert set(result["workloads"]) == set(expect)
    for w, backends in expect.items():
        for s in sizes(w, quick=True):
            for b in backends:
                if b == "numpy" or _installed(b):
                    assert (w, s.key, b) in seen, (w, s.key, b)
    # the peers each focal_array row is divided by, per backend
    keys = {(r["workload"], r["backend"], r["key"]) for r in result["rows"]}
    for k in [("sigmoid_b1", "torch", "tv"), ("sigmoid_b1", "torch", "tv_compiled"),
              ("sigmoid_b1", "jax", "optax"), ("sigmoid_b1", "numpy", "naive"),
              ("softmax_ce", "torch", "F.cross_entropy"), ("softmax_ce", "jax", "optax"),
              ("softmax_focal", "torch", "logsoftmax_focal"),
              ("softmax_focal", "jax", "logsoftmax_focal"), ("softmax_focal", "numpy", "naive"),
              ("match_1img", "torch", "tv"), ("match_b8", "jax", "jax_loop"),
              ("match_b8", "torch", "tv_loop")]:
        if k[1] == "numpy" or _installed(k[1]):
            assert k in keys, k


def test_peers_that_are_absent_say_so(quick_run):
    result, _, _, _ = quick_run
    rows = [r for r in result["rows"] if r["backend"] == "torch" and r["key"] == "tv"]
    if _installed("torch") and not _installed("torchvision"):
        assert rows and all("stand-in" in r["impl"] for r in rows)
    # --quick skips torch.compile, and says so
    compiled = [r for r in result["rows"] if r["key"] in ("fa_compiled", "tv_compiled")]
    if _installed("torch"):
        assert compiled and all(r["status"] == "missing" and "compile" in r["reason"]
                                for r in compiled)
    inspect_rows = [r for r in result["rows"] if r["workload"] == "inspect"]
    assert {r["key"] for r in inspect_rows} == {"inspect_native", "inspect_800x1333"}
    if not os.path.exists(os.path.join(ROOT, "benchmarks", "coco_like.py")):
        assert all(r["status"] == "missing" and "coco_like" in r["reason"]
                   for r in inspect_rows)


def test_memory_and_accuracy_entries(quick_run):
    result, _, _, _ = quick_run
    assert result["memory"] and result["accuracy"]
    for m in result["memory"]:
        _check_status(m)
        if m["status"] == "measured":
            assert m["peak_extra_bytes"] >= 0 and m["method"]
            assert m["x_logits"] == pytest.approx(m["peak_extra_bytes"] / m["logits_bytes"])
    assert {m["workload"] for m in result["memory"]} >= {"sigmoid_b1", "softmax_ce"}
    for a in result["accuracy"]:
        _check_status(a)
        if a["status"] == "measured":
            assert 0.0 <= a["max_rel_err"] and 0.0 <= a["frac_rel_err_gt_1e-5"] <= 1.0


def test_targets_at_every_size(quick_run):
    from benchmarks.workloads import sizes

    result, _, stdout, _ = quick_run
    for t in result["targets"]:
        assert t["met"] in (True, False, None)
        assert (t["measured"] is None) == (t["met"] is None)
        if t["met"] is None:
            assert t["note"], t
    # one target row per size: e.g. the JAX-vs-optax sigmoid target, per size and mode
    optax = [t for t in result["targets"] if t["target"] == "JAX jit ≤ 0.25× optax"
             and t["workload"] == "sigmoid_b1"]
    if _installed("jax"):
        assert {(t["size"], t["mode"]) for t in optax} == {
            (s.key, m) for s in sizes("sigmoid_b1", quick=True) for m in ("fwd", "fwd+bwd")}
    names = {t["target"] for t in result["targets"]}
    for name in ("PyTorch eager ≤ 0.9× torchvision", "NumPy CE ≤ 0.5× naive NumPy",
                 "matcher JAX jit batch of 8 ≤ 0.25× torchvision loop",
                 "focal-array inspect ≤ 30 s (native sizes)",
                 "numpy peak extra memory ≤ 4× logits"):
        assert name in names, name
    assert "target:" in stdout


def test_page_and_plot(quick_run):
    result, page, _, out = quick_run
    assert page.startswith("# Benchmarks")
    assert result["date"] in page and result["machine"]["cpu"] in page
    assert "| target |" in page and "**Run time:**" in page and "8 × 1,000,000" in page
    for w in result["workloads"]:
        assert f"### {w}" in page, w
    assert "](figures/benchmark_ratios.png)" in page
    png = out / "figures" / "benchmark_ratios.png"
    data = png.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 10_000
    width = int.from_bytes(data[16:20], "big")
    assert width == 1440  # 9 in at 160 dpi
    # the docs show it in their 688-px column: its smallest text (PLOT_FONT_PT) at >= 11 px
    from benchmarks import render

    assert render.PLOT_FONT_PT * 688 / width * 160 / 72 >= 11


def test_script_form_help():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "run.py"),
                           "--help"], capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0 and "--quick" in proc.stdout and "--sizes" in proc.stdout


def test_page_renders_again_from_json_with_new_notes(quick_run, tmp_path):
    result, page, _, _ = quick_run
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
    assert again.split("## Timings")[1][:3000] == page.split("## Timings")[1][:3000]
    assert json.loads((out / "results.json").read_text())["rows"] == result["rows"]
    assert (out / "figures" / "benchmark_ratios.png").read_bytes()[:8] == PNG_MAGIC


def test_gpu_script_cpu_smoke_mode(tmp_path):
    # the CUDA script's code paths (cases on a device, synchronization, bandwidth) on CPU
    out = tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu", "--dry-run", "--out",
                           str(out)], cwd=ROOT, capture_output=True, text=True, timeout=900,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    assert data["dry_run"] is True
    backends = {r["backend"] for r in data["results"] if r["device"]}
    assert backends == {b for b in ("jax", "torch") if _installed(b)}
    for res in data["results"]:
        if not res["device"]:
            continue
        assert res["peak_gbps"] > 0
        rows = [r for r in res["rows"] if r["status"] == "measured"]
        assert {(r["workload"], r["mode"]) for r in rows} == {
            (w, m) for w in ("sigmoid_b1", "sigmoid_b8", "softmax_ce", "softmax_focal")
            for m in ("fwd", "fwd+bwd")}
        for r in rows:
            assert r["bytes"] > 0 and r["achieved_gbps"] > 0 and r["hbm_fraction"] > 0
        assert any(r.get("ratios") for r in rows)
    assert "× peak" in proc.stdout


def test_gpu_script_without_cuda_says_so():
    from benchmarks import gpu

    assert gpu.peak_gbps("NVIDIA H200") == 4800 and gpu.peak_gbps("NVIDIA L4") == 300
    assert gpu.peak_gbps("NVIDIA H100 80GB HBM3") == 3350
    assert gpu.peak_gbps("NVIDIA A100-SXM4-40GB") == 1555
    assert gpu.peak_gbps("Some Other GPU") is None
    if _installed("torch") and importlib.import_module("torch").cuda.is_available():
        pytest.skip("a CUDA device is present")
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu", "--backends", "torch"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0 and "nothing measured" in proc.stdout


def test_group_budget_caps_the_rounds_and_ratios_pair_up():
    import time

    from benchmarks.timing import time_group
    from benchmarks.workloads import Case

    cases = [Case("fa", "focal_array", lambda: time.sleep(0.02), peer=False),
             Case("peer", "peer", lambda: time.sleep(0.04))]
    rows = time_group(cases, 1, 10, budget_s=0.15)  # a round takes ~0.06 s: 2 fit
    assert [len(r["times_ms"]) for r in rows] == [2, 2]
    assert 0.2 < rows[0]["ratios"]["peer"]["median"] < 1.0
    assert len(time_group(cases, 1, 3)[0]["times_ms"]) == 3  # no budget: every repeat


@pytest.mark.parametrize("script,args,rows", [
    ("benchmarks.focal_variants", ["--repeats", "1"],
     {(b, loss, m) for b in ("jax", "torch")
      for loss in ("qfl", "dfl", "vfl", "poly1", "softmax_poly1", "fl_star")
      for m in ("fwd", "fwd+bwd")}),
    ("benchmarks.rcnn_head", [], None),
])
def test_family_and_rcnn_benchmarks_run_quick(tmp_path, script, args, rows):
    """The focal-family and R-CNN head scripts at their --quick sizes: every row measured
    (ours and the peer's), with a ratio; nothing about speed is asserted."""
    out = tmp_path / "rows.json"
    proc = subprocess.run([sys.executable, "-m", script, "--quick", *args, "--json",
                           str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    assert data["quick"] is True
    measured = [r for r in data["rows"] if r["status"] == "measured"]
    assert measured and all(r["median_ms"] > 0 for r in measured)
    ours = [r for r in measured if not r["peer"]]
    assert ours and all(r["ratios"] for r in ours)
    if rows is not None:
        assert {(r["backend"], r["loss"], r["mode"]) for r in ours} == rows
    else:
        assert {r["mode"] for r in ours} == {"fwd", "fwd+bwd"}


def test_assigner_benchmark_runs_quick_and_agrees_with_its_references(tmp_path):
    """benchmarks.assigners at --quick sizes: every row measured, and each assigner gives
    its reference implementation's gt index for every anchor (FCOS: torchvision's loop,
    ATSS: mmdetection's, task-aligned: ultralytics' with YOLOv8's options)."""
    out = tmp_path / "assigners.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.assigners", "--quick", "--json",
                           str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    assert data["quick"] is True
    assert {g["workload"] for g in data["groups"]} == {"fcos", "atss", "tal"}
    for group in data["groups"]:
        rows = group["rows"]
        assert all(r["status"] == "measured" and r["median_ms"] > 0 for r in rows)
        ours = [r for r in rows if not r["peer"]]
        assert ours and all(r["agreement"]["same_index"] == 1.0 for r in ours), group
        assert all(r["agreement"]["positives"] > 0 for r in ours), group
