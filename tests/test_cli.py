"""Tests for the ``focal-array`` command: exit codes, key numbers, the JSON schema, errors.

Most tests run the command as a user does, in a subprocess (``python -m focal_array.cli``),
so argument parsing, exit codes and the split between stdout and stderr are what is
checked. A few call ``main()`` in-process where a missing optional dependency has to be
simulated. Expected numbers are computed here independently of ``cli.py``: anchor counts
from the documented grid convention, positives with ``match_anchors`` directly, the rescued
gts from the IoU matrix, the loss shares from closed-form formulas.
"""

from __future__ import annotations

import io
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from focal_array import cli
from focal_array.anchors import retinanet_anchors
from focal_array.boxes import box_iou
from focal_array.coco import load_sample
from focal_array.matcher import match_anchors
from tests.helpers import require

REPO = Path(__file__).resolve().parents[1]


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``focal-array ARGS`` in a fresh interpreter; stdout and stderr captured apart."""
    return subprocess.run([sys.executable, "-m", "focal_array.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def sample_json() -> dict[str, Any]:
    """``focal-array inspect --json`` on the shipped sample (run once for the module)."""
    proc = run("inspect", "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def sample_text() -> str:
    proc = run("inspect")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def expected_anchor_count(height: int, width: int) -> int:
    """RetinaNet's P3-P7 grid: ceil(H/s) × ceil(W/s) locations × 9 anchors, summed."""
    return sum(math.ceil(height / s) * math.ceil(width / s) * 9 for s in (8, 16, 32, 64, 128))


def sample_matches(*, allow_low_quality: bool = True) -> dict[int, np.ndarray]:
    """Each sample image's per-anchor match, straight from the library (float32 boxes)."""
    ds = load_sample()
    out = {}
    for image_id in ds:
        info, ann = ds.image(image_id), ds.annotations(image_id)
        anchors = retinanet_anchors((info.height, info.width), dtype=np.float32)
        # gt_crowd only with boxes: the matcher cannot take a zero-length crowd mask
        # (a max over an empty axis), which is why the command pads to at least one gt
        crowd = np.asarray(ann.crowd) if len(ann) else None
        out[image_id] = match_anchors(anchors, ann.boxes.astype(np.float32),
                                      gt_crowd=crowd,
                                      allow_low_quality_matches=allow_low_quality)
    return out


# ----------------------------------------------------------------------------- help


@pytest.mark.parametrize("args", [("--help",), ("explain", "--help"), ("inspect", "--help")])
def test_help_exits_zero(args: tuple[str, ...]) -> None:
    proc = run(*args)
    assert proc.returncode == 0
    assert "usage: focal-array" in proc.stdout
    if args[0] == "inspect":
        assert "Easy negatives" in proc.stdout and "--json" in proc.stdout


def test_no_command_is_a_usage_error() -> None:
    proc = run()
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr


def test_installed_console_script() -> None:
    exe = shutil.which("focal-array")
    if exe is None:
        pytest.skip("focal-array is not on PATH (package not installed)")
    proc = subprocess.run([exe, "explain"], capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0
    assert "0.0002634" in proc.stdout


# ----------------------------------------------------------------------------- explain


def test_explain_worked_example() -> None:
    proc = run("explain")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    positive = next(line.split() for line in lines if line.strip().startswith("positive"))
    negative = next(line.split() for line in lines if line.strip().startswith("negative"))
    # anchor, class, [p0, p1], p_t, α_t, CE, FL, FL/CE — the source note's numbers
    assert positive[4:] == ["0.9", "0.25", "0.1054", "0.0002634", "0.0025"]
    assert negative[4:] == ["0.8", "0.75", "0.2231", "0.006694", "0.03"]
    assert "α NOT applied" in proc.stdout


def test_explain_tables_say_what_they_hold() -> None:
    # table 1's FL/CE is one anchor's FL over its CE, α_t included; table 2 without --alpha
    # is the bare (1 − p_t)^γ, a different quantity: it has its own name, not "FL/CE"
    plain = run("explain").stdout
    titles = {line.split(" — ")[0]: line.split(" — ")[1] for line in plain.splitlines()
              if line.startswith("table ")}
    assert set(titles) == {"table 1", "table 2"}
    assert titles["table 1"].startswith("per anchor: CE, FL and FL/CE, this anchor's focal "
                                        "loss over its cross-entropy = α_t (1 − p_t)^γ")
    assert titles["table 2"].startswith("modulating factor (1 − p_t)^γ: γ's reduction alone, "
                                        "α NOT applied; table 1's FL/CE is α_t × this")
    assert "FL/CE =" not in titles["table 2"] and "FL/CE is α_t × this" in titles["table 2"]
    # with --alpha, tables 2 and 3 hold table 1's quantity, and say so
    with_alpha = run("explain", "--alpha", "0.25").stdout
    assert "table 2 — FL/CE = α_t (1 − p_t)^γ, α APPLIED, table 1's FL/CE column: positive, " \
        "α_t = α = 0.25" in with_alpha
    assert "table 3 — FL/CE = α_t (1 − p_t)^γ, α APPLIED, table 1's FL/CE column: negative, " \
        "α_t = 1 − α = 0.75" in with_alpha


def _table_rows(text: str, title: str) -> dict[str, list[float]]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if title in line)
    rows = {}
    for line in lines[start + 2:start + 6]:
        p_t, *values = line.split()
        rows[p_t] = [float(v) for v in values]
    return rows


def test_explain_table_is_the_modulating_factor_without_alpha() -> None:
    proc = run("explain")
    rows = _table_rows(proc.stdout, "modulating factor (1 − p_t)^γ: γ's reduction alone")
    assert list(rows) == ["0.5", "0.9", "0.968", "0.99"]
    for p_t, values in rows.items():
        expected = [(1 - float(p_t)) ** g for g in (0, 0.5, 1, 2, 5)]
        np.testing.assert_allclose(values, expected, rtol=5e-4)


def test_explain_table_with_alpha_and_extra_gamma() -> None:
    proc = run("explain", "--alpha", "0.25", "--gamma", "1.5")
    assert proc.returncode == 0, proc.stderr
    assert "α = 0.25, γ = 1.5" in proc.stdout
    gammas = (0, 0.5, 1, 1.5, 2, 5)
    for title, alpha_t in (("positive, α_t = α = 0.25", 0.25),
                           ("negative, α_t = 1 − α = 0.75", 0.75)):
        rows = _table_rows(proc.stdout, title)
        for p_t, values in rows.items():
            expected = [alpha_t * (1 - float(p_t)) ** g for g in gammas]
            np.testing.assert_allclose(values, expected, rtol=5e-4)


def test_explain_plot_without_matplotlib(monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    out = tmp_path / "fl.png"
    assert cli.main(["explain", "--plot", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("focal-array: error: --plot needs matplotlib")
    assert "focal-array[plot]" in captured.err
    assert not out.exists()


def test_explain_plot_writes_a_png(tmp_path: Path) -> None:
    require("matplotlib")
    out = tmp_path / "fl.png"
    proc = run("explain", "--plot", str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------- inspect


def test_inspect_anchor_counts(sample_json: dict[str, Any], sample_text: str) -> None:
    ds = load_sample()
    sizes = {(ds.image(i).height, ds.image(i).width) for i in ds}
    reported = {(a["height"], a["width"]): a for a in sample_json["anchors_per_image"]}
    assert set(reported) == sizes
    for (h, w), entry in reported.items():
        assert entry["anchors"] == expected_anchor_count(h, w)
        assert f"{expected_anchor_count(h, w):,} at {w} × {h} (" in sample_text  # width first
    assert sum(a["images"] for a in reported.values()) == len(ds)
    assert expected_anchor_count(480, 640) == 57_600  # 4800 + 1200 + 300 + 80 + 20, × 9
    for im in sample_json["per_image"]:
        assert im["anchors"] == expected_anchor_count(im["height"], im["width"])


def test_inspect_counts_match_the_library(sample_json: dict[str, Any]) -> None:
    matches = sample_matches()
    totals = sample_json["totals"]
    assert totals["positives"] == sum(int((m >= 0).sum()) for m in matches.values())
    assert totals["negatives"] == sum(int((m == -1).sum()) for m in matches.values())
    assert totals["ignored"] == sum(int((m == -2).sum()) for m in matches.values())
    assert totals["positives"] + totals["negatives"] + totals["ignored"] == totals["anchors"]
    for im in sample_json["per_image"]:
        m = matches[im["id"]]
        assert (im["positives"], im["negatives"], im["ignored"]) == (
            int((m >= 0).sum()), int((m == -1).sum()), int((m == -2).sum()))
    positives = sorted(int((m >= 0).sum()) for m in matches.values())
    pct = sample_json["per_image_percentiles"]["positives"]
    assert pct["min"] == positives[0] and pct["max"] == positives[-1]
    assert pct["median"] == positives[len(positives) // 2]
    assert sample_json["negatives_per_positive"] == pytest.approx(
        totals["negatives"] / totals["positives"])


def test_inspect_per_gt_statistics(sample_json: dict[str, Any]) -> None:
    ds = load_sample()
    matches = sample_matches()
    counts, rescued, unmatched = [], set(), set()
    for image_id in ds:
        info, ann = ds.image(image_id), ds.annotations(image_id)
        m = matches[image_id]
        anchors = retinanet_anchors((info.height, info.width), dtype=np.float32)
        iou = box_iou(anchors, ann.boxes.astype(np.float32)) if len(ann) else None
        for g in range(len(ann)):
            if ann.crowd[g]:
                continue
            n = int((m == g).sum())
            counts.append(n)
            if n == 0:
                unmatched.add(int(ann.annotation_ids[g]))
            elif float(iou[:, g].max()) < 0.5:  # positives, but no anchor reaches high
                rescued.add(int(ann.annotation_ids[g]))
    hist = sample_json["positives_per_gt"]
    assert list(hist) == ["0", "1", "2", "3-5", "6-10", ">10"]
    assert sum(hist.values()) == len(counts) == sample_json["gts"] == 16
    assert hist["0"] == sum(c == 0 for c in counts)
    assert hist["6-10"] == sum(6 <= c <= 10 for c in counts)
    assert hist[">10"] == sum(c > 10 for c in counts)
    assert set(sample_json["rescued_gts"]["annotation_ids"]) == rescued
    assert sample_json["rescued_gts"]["count"] == len(rescued) > 0  # the sample's tiny boxes
    assert set(sample_json["unmatched_gts"]["annotation_ids"]) == unmatched
    assert sample_json["crowd_gts"] == 2


def test_inspect_rescued_gts_vanish_without_their_rule(sample_json: dict[str, Any]) -> None:
    # a rescued gt owns positives only with the low-quality rule: none without it
    ds = load_sample()
    strict = sample_matches(allow_low_quality=False)
    for image_id in ds:
        ann = ds.annotations(image_id)
        for g, ann_id in enumerate(ann.annotation_ids.tolist()):
            if ann_id in sample_json["rescued_gts"]["annotation_ids"]:
                assert int((strict[image_id] == g).sum()) == 0


def test_inspect_loss_shares_at_init(sample_json: dict[str, Any]) -> None:
    li = sample_json["loss_at_init"]
    pos, neg = sample_json["totals"]["positives"], sample_json["totals"]["negatives"]
    c = sample_json["classes"]
    assert c == 3 and li["prior"] == 0.01
    assert li["logit"] == pytest.approx(-math.log(99))
    # closed forms at σ(logit) = π: CE −log π / −log(1 − π); FL adds α_t (1 − p_t)^2
    ce1, ce0 = -math.log(0.01), -math.log(0.99)
    fl1, fl0 = 0.25 * 0.99**2 * ce1, 0.75 * 0.01**2 * ce0
    for name, (l1, l0) in (("ce", (ce1, ce0)), ("fl", (fl1, fl0))):
        negatives = neg * c * l0
        total = pos * (l1 + (c - 1) * l0) + negatives
        assert li[name]["negative_share"] == pytest.approx(negatives / total, rel=1e-9)
        assert li[name]["loss_per_positive"] == pytest.approx(total / pos, rel=1e-9)
    # the point of the focal loss: easy negatives dominate CE, not FL
    assert li["ce"]["negative_share"] > 0.5 > 0.01 > li["fl"]["negative_share"]


def test_inspect_json_schema(sample_json: dict[str, Any]) -> None:
    r = sample_json
    schema = {
        "source": str, "backend": str, "high": float, "low": float,
        "allow_low_quality_matches": bool, "tie_rule": str, "crowd_ioa": float,
        "image_size": type(None),
        "images": int, "images_without_boxes": int, "classes": int, "class_names": list,
        "gts": int, "crowd_gts": int, "dropped_boxes": dict, "anchors_per_image": list,
        "totals": dict, "per_image_percentiles": dict, "positives_per_gt": dict,
        "rescued_gts": dict, "unmatched_gts": dict, "negatives_per_positive": float,
        "loss_at_init": dict, "per_image": list, "seconds": float,
    }
    assert set(r) == set(schema)
    for key, kind in schema.items():
        assert isinstance(r[key], kind), key
    assert r["backend"] == "numpy" and r["images"] == 5 and r["images_without_boxes"] == 1
    assert r["class_names"] == ["person", "car", "dog"]
    assert r["dropped_boxes"] == {"count": 1, "annotation_ids": [3004],
                                  "reasons": ["width <= 0"]}
    assert set(r["totals"]) == {"anchors", "positives", "negatives", "ignored"}
    assert all(isinstance(v, int) for v in r["totals"].values())
    for key in ("positives", "negatives", "ignored"):
        assert set(r["per_image_percentiles"][key]) == {"min", "p10", "median", "p90", "max"}
    assert all(isinstance(v, int) for v in r["positives_per_gt"].values())
    for key in ("rescued_gts", "unmatched_gts"):
        assert set(r[key]) == {"count", "annotation_ids"}
        assert r[key]["count"] == len(r[key]["annotation_ids"])
    for entry in r["anchors_per_image"]:
        assert set(entry) == {"height", "width", "anchors", "images"}
    li = r["loss_at_init"]
    assert set(li) == {"prior", "logit", "classes", "alpha", "gamma", "ce", "fl"}
    for name in ("ce", "fl"):
        assert set(li[name]) == {"element_positive", "element_negative", "positives_loss",
                                 "negatives_loss", "negative_share", "loss_per_positive"}
        assert all(isinstance(v, float) for v in li[name].values())
    per_image_keys = {"id", "file_name", "height", "width", "scale", "anchors", "gts",
                      "crowd_gts", "positives", "negatives", "ignored", "positives_per_gt",
                      "rescued_gts", "unmatched_gts"}
    for im in r["per_image"]:
        assert set(im) == per_image_keys
        assert im["scale"] == 1.0
        assert len(im["positives_per_gt"]) == im["gts"]


def test_inspect_text_report(sample_text: str, sample_json: dict[str, Any]) -> None:
    t = sample_json["totals"]
    assert f"{t['positives']:,}" in sample_text and f"{t['negatives']:,}" in sample_text
    assert "dropped degenerate boxes          1 (annotation ids 3004)" in sample_text
    assert "gts rescued by low-quality match  4 of 16" in sample_text
    assert "CE (unweighted)" in sample_text and "FL (α = 0.25, γ = 2)" in sample_text
    assert "each image's own width × height" in sample_text


def test_inspect_quiet_stderr_and_pure_json_stdout() -> None:
    proc = run("inspect", "--json")
    assert proc.returncode == 0
    json.loads(proc.stdout)  # nothing but the one object
    # the dropped box is in the report; neither a warning nor a progress bar leaks out
    assert proc.stderr == ""


def test_inspect_image_size_scales_boxes(tmp_path: Path) -> None:
    doc = {"images": [{"id": 1, "file_name": "a.jpg", "width": 200, "height": 100}],
           "categories": [{"id": 1, "name": "thing"}],
           "annotations": [{"id": 9, "image_id": 1, "category_id": 1,
                            "bbox": [10, 10, 40, 40]}]}
    path = tmp_path / "one.json"
    path.write_text(json.dumps(doc))
    proc = run("inspect", str(path), "--image-size", "400", "600", "--json")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["image_size"] == [400, 600]
    assert r["per_image"][0]["scale"] == 3.0  # min(400 / 100, 600 / 200)
    assert r["anchors_per_image"] == [{"height": 400, "width": 600,
                                       "anchors": expected_anchor_count(400, 600),
                                       "images": 1}]
    anchors = retinanet_anchors((400, 600), dtype=np.float32)
    box = np.asarray([[30.0, 30.0, 150.0, 150.0]], dtype=np.float32)  # [10, 10, 50, 50] × 3
    assert r["totals"]["positives"] == int((match_anchors(anchors, box) >= 0).sum())


def test_inspect_thresholds_change_the_split() -> None:
    proc = run("inspect", "--high", "0.6", "--low", "0.3", "--json")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    ds = load_sample()
    pos = neg = 0
    for image_id in ds:
        info, ann = ds.image(image_id), ds.annotations(image_id)
        m = match_anchors(retinanet_anchors((info.height, info.width), dtype=np.float32),
                          ann.boxes.astype(np.float32),
                          gt_crowd=np.asarray(ann.crowd) if len(ann) else None,
                          high=0.6, low=0.3)
        pos, neg = pos + int((m >= 0).sum()), neg + int((m == -1).sum())
    assert (r["high"], r["low"]) == (0.6, 0.3)
    assert (r["totals"]["positives"], r["totals"]["negatives"]) == (pos, neg)


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_inspect_backends_agree_with_numpy(backend: str,
                                           sample_json: dict[str, Any]) -> None:
    require(backend)
    proc = run("inspect", "--backend", backend, "--json")
    assert proc.returncode == 0, proc.stderr
    other = json.loads(proc.stdout)
    assert other["backend"] == backend
    strip = {"seconds", "backend"}
    assert {k: v for k, v in other.items() if k not in strip} == \
        {k: v for k, v in sample_json.items() if k not in strip}


@pytest.fixture(scope="module")
def coco_like_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from benchmarks.coco_like import generate

    path = tmp_path_factory.mktemp("coco_like") / "instances.json"
    path.write_text(json.dumps(generate(24, seed=4)))
    return path


@pytest.mark.parametrize("tie_rule", ["equal", "rounding"])
def test_inspect_backends_agree_on_float_boxes(tie_rule: str, coco_like_file: Path) -> None:
    # COCO-like float coordinates (not on any grid), where JAX used to find other
    # low-quality ties than NumPy; every backend reports the same counts, and they are
    # match_anchors' with that tie rule
    from focal_array.coco import load

    reports = {}
    for backend in ("numpy", "jax", "torch"):
        require(backend)
        proc = run("inspect", str(coco_like_file), "--backend", backend, "--json",
                   "--tie-rule", tie_rule)
        assert proc.returncode == 0, proc.stderr
        reports[backend] = json.loads(proc.stdout)
    strip = {"seconds", "backend"}
    first = {k: v for k, v in reports["numpy"].items() if k not in strip}
    assert first["tie_rule"] == tie_rule
    for backend, r in reports.items():
        assert {k: v for k, v in r.items() if k not in strip} == first, backend
    ds = load(coco_like_file)
    positives = 0
    for info in ds.images:
        ann = ds.annotations(info.id)
        m = match_anchors(retinanet_anchors((info.height, info.width), dtype=np.float32),
                          ann.boxes.astype(np.float32).reshape(-1, 4),
                          gt_crowd=np.asarray(ann.crowd) if len(ann) else None,
                          tie_rule=tie_rule)
        positives += int((m >= 0).sum())
    assert first["totals"]["positives"] == positives


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_inspect_missing_backend(backend: str, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, backend, None)  # import <backend> -> ImportError
    assert cli.main(["inspect", "--backend", backend]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (f"focal-array: error: --backend {backend} needs {backend}, which "
                            f"is not installed (pip install 'focal-array[{backend}]')\n")


# ----------------------------------------------------------------------------- bad input


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(("case", "message"), [
    ("missing", "COCO file not found"),
    ("invalid_json", "invalid JSON at line 1"),
    ("missing_key", 'missing key "categories"'),
    ("bad_bbox", '"bbox" must be a list of four numbers'),
    ("directory", "is not a file"),
])
def test_bad_file_is_one_line_and_exit_2(case: str, message: str, tmp_path: Path) -> None:
    good = {"images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
            "categories": [{"id": 1, "name": "thing"}],
            "annotations": [{"id": 5, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]}]}
    if case == "missing":
        path = str(tmp_path / "nope.json")
    elif case == "invalid_json":
        path = _write(tmp_path, "bad.json", "{not json")
    elif case == "missing_key":
        path = _write(tmp_path, "mal.json", json.dumps({"images": [], "annotations": []}))
    elif case == "bad_bbox":
        good["annotations"][0]["bbox"] = [1, 2, 3]
        path = _write(tmp_path, "bbox.json", json.dumps(good))
    else:
        path = str(tmp_path)
    proc = run("inspect", path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("focal-array: error: ")
    assert message in proc.stderr
    if case == "bad_bbox":
        assert "annotation id 5" in proc.stderr


@pytest.mark.parametrize(("args", "message"), [
    (("inspect", "--low", "0.6", "--high", "0.5"), "--low (0.6) must not exceed --high (0.5)"),
    (("inspect", "--image-size", "0", "640"), "must be a positive integer, got 0"),
    (("inspect", "--image-size", "-3", "640"), "must be a positive integer, got -3"),
    (("inspect", "--high", "1.5"), "must be in [0, 1], got 1.5"),
    (("inspect", "--backend", "cupy"), "invalid choice: 'cupy'"),
    (("explain", "--alpha", "2"), "must be in [0, 1], got 2"),
    (("explain", "--gamma", "-1"), "must be a finite number >= 0, got -1"),
])
def test_bad_option_exit_2(args: tuple[str, ...], message: str) -> None:
    proc = run(*args)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("focal-array") and "error: " in last
    assert message in last


# ----------------------------------------------------------------------------- progress


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def test_progress_bar_shows_count_rate_and_eta() -> None:
    require("rich")
    stream = io.StringIO()
    bar = cli.Progress(3, stream, enabled=True)
    for done in (1, 2, 3):
        bar.update(done)
    bar.close()
    bar.close()  # closing twice is harmless
    text = _strip_ansi(stream.getvalue())
    assert "matching images" in text
    assert "3/3" in text  # the final state is drawn before the bar goes
    # done/total, the rate column and rich's time-remaining column, each with its label
    assert re.search(r"3/3 +(…|[\d,]+) images/s", text), text
    assert re.search(r"ETA +(-:--:--|\d+:\d\d:\d\d)", text), text
    # erased at the end (cursor up, clear line), so the report starts on a clean line
    assert stream.getvalue().endswith("\x1b[2K")


def test_progress_is_silent_off_a_terminal() -> None:
    stream = io.StringIO()  # isatty() is False
    bar = cli.Progress(1000, stream)
    bar.update(1000)
    bar.close()
    assert not bar.enabled and stream.getvalue() == ""


def test_progress_is_silent_for_a_few_images() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert not cli.Progress(5, Tty()).enabled
    assert cli.Progress(6, Tty()).enabled


def test_progress_without_rich_is_silent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rich.progress", None)  # import -> ImportError
    stream = io.StringIO()
    bar = cli.Progress(10, stream, enabled=True)
    bar.update(1)
    bar.close()
    assert not bar.enabled and stream.getvalue() == ""


@pytest.mark.parametrize("images", [0, 1])
def test_inspect_files_without_boxes(images: int, tmp_path: Path) -> None:
    # nothing to match must still give a report, with null where a ratio is undefined
    doc = {"images": [{"id": 1, "file_name": "a.jpg", "width": 50, "height": 40}][:images],
           "categories": [{"id": 1, "name": "thing"}], "annotations": []}
    path = _write(tmp_path, "empty.json", json.dumps(doc))
    proc = run("inspect", path, "--json")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["totals"]["positives"] == 0
    assert r["totals"]["negatives"] == images * expected_anchor_count(40, 50)
    assert r["negatives_per_positive"] is None
    assert r["loss_at_init"]["fl"]["loss_per_positive"] is None
    if images == 0:
        assert r["per_image_percentiles"]["positives"] is None
        assert r["loss_at_init"]["ce"]["negative_share"] is None


# ----------------------------------------------------------------------------- sizes


def test_inspect_sizes_print_width_by_height(sample_text: str, tmp_path: Path) -> None:
    # image 123 is 640 wide and 480 high; image 400 is 480 wide and 640 high
    rows = {line.split()[0]: line.split() for line in sample_text.splitlines()
            if line.startswith("  ") and line.split()[0].isdigit()}
    assert rows["123"][2:5] == ["640", "×", "480"] and rows["400"][2:5] == ["480", "×", "640"]
    assert "  image                    width × height   anchors" in sample_text
    assert ("anchors per image                 57,600 at 640 × 480 (width × height, 3 images)"
            " · 51,930 at 640 × 427 (1 image) · 57,600 at 480 × 640 (1 image)") in sample_text
    assert "input size                        each image's own width × height" in sample_text
    doc = {"images": [{"id": 1, "file_name": "a.jpg", "width": 200, "height": 100}],
           "categories": [{"id": 1, "name": "thing"}], "annotations": []}
    path = _write(tmp_path, "one.json", json.dumps(doc))
    proc = run("inspect", path, "--image-size", "400", "600")
    assert proc.returncode == 0, proc.stderr
    # --image-size is H W; the report says width × height, and which numbers it was given
    assert ("width × height = 600 × 400 for every image (--image-size H W = 400 600;"
            in proc.stdout)
    assert "anchors per image                 " \
        f"{expected_anchor_count(400, 600):,} at 600 × 400 (width × height, 1 image)" \
        in proc.stdout


# ----------------------------------------------------------------------------- hostile input
# (issue 11) every refusal is exit 2 with one line on stderr, never a traceback


def _one_line_error(proc: subprocess.CompletedProcess[str], *messages: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("focal-array: error: ")
    for message in messages:
        assert message in proc.stderr, proc.stderr


def _coco(tmp_path: Path, *, width: int = 640, height: int = 480, **ann: Any) -> str:
    doc = {"images": [{"id": 1, "file_name": "a.jpg", "width": width, "height": height}],
           "categories": [{"id": 1, "name": "c"}],
           "annotations": [{"id": 5, "image_id": 1, "category_id": 1, "bbox": [1, 2, 30, 40],
                            **ann}]}
    return _write(tmp_path, "coco.json", json.dumps(doc))


def test_huge_image_in_the_file_is_refused_with_the_memory_it_needs(tmp_path: Path) -> None:
    # 10^6 x 10^6 pixels: by the documented grid, sum ceil(10^6 / s)^2 * 9 anchors over
    # s = 8 ... 128, each 64 B + 12 B per box slot (one box)
    anchors = expected_anchor_count(10**6, 10**6)
    need = anchors * (64 + 12)
    proc = run("inspect", _coco(tmp_path, width=10**6, height=10**6), "--max-memory", "64G")
    _one_line_error(proc, "matching image 1 at width × height = 1000000 × 1000000 pixels",
                    f"{anchors:,} anchors", f"about {need / 2**40:,.3g} TiB",
                    "limit of 64 GiB (--max-memory)")


def test_huge_image_size_option_is_refused(tmp_path: Path) -> None:
    # H W = 100000 200000 on the command line: 200000 wide, 100000 high in the message
    proc = run("inspect", _coco(tmp_path), "--image-size", "100000", "200000",
               "--max-memory", "16G")
    anchors = expected_anchor_count(100000, 200000)
    _one_line_error(proc, "at width × height = 200000 × 100000 pixels", f"{anchors:,} anchors",
                    "limit of 16 GiB")
    # far beyond any machine: still one line (Python ints, no float overflow)
    proc = run("inspect", _coco(tmp_path), "--image-size", str(10**21), "5")
    _one_line_error(proc, "would need about", "TiB")


def test_max_memory_option(tmp_path: Path) -> None:
    path = _coco(tmp_path)
    # 640 x 480 has 57,600 anchors: 57,600 * (64 + 12) B = 4.2 MiB
    _one_line_error(run("inspect", path, "--max-memory", "1M"), "about 4.17 MiB",
                    "limit of 1 MiB")
    assert run("inspect", path, "--max-memory", "5MiB").returncode == 0
    assert run("inspect", path, "--max-memory", "none").returncode == 0
    for bad, message in (("0", "must be a positive size"), ("abc", "not a memory size"),
                         ("nan", "must be a positive size"), ("-3G", "must be a positive")):
        proc = run("inspect", path, f"--max-memory={bad}")
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert message in proc.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize(("contents", "message"), [
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    (None, '"id" must fit a signed 64-bit integer'),
    (b"\xff\xfe{", "not UTF-8 text"),
], ids=["deep", "big-id", "not-utf8"])
def test_hostile_files_exit_2(tmp_path: Path, contents: Any, message: str) -> None:
    if contents is None:
        doc = json.loads(Path(_coco(tmp_path)).read_text())
        doc["annotations"][0]["id"] = 2**70
        contents = json.dumps(doc)
    path = tmp_path / "hostile.json"
    if isinstance(contents, bytes):
        path.write_bytes(contents)
    else:
        path.write_text(contents)
    _one_line_error(run("inspect", str(path)), message)


def test_box_beyond_float32_exit_2(tmp_path: Path) -> None:
    _one_line_error(run("inspect", _coco(tmp_path, bbox=[3e38, 0, 1e38, 5])),
                    "annotation id 5", "beyond the float32 range")


def test_stdout_that_cannot_encode_the_report_exit_2() -> None:
    env = {**__import__("os").environ, "PYTHONIOENCODING": "ascii"}
    proc = subprocess.run([sys.executable, "-m", "focal_array.cli", "explain"], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False, env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1
    assert "cannot print" in proc.stderr and "PYTHONIOENCODING=utf-8" in proc.stderr


def test_memory_error_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    # should the estimate ever be short, running out of memory is still one line
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise MemoryError

    monkeypatch.setattr(cli, "inspect_dataset", boom)
    assert cli.main(["inspect"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("focal-array: error: out of memory")
