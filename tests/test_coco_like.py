"""The COCO-like generator of ``benchmarks/coco_like.py``: loadable, val2017-like, seeded.

And ``focal-array inspect`` on generated files: the counts of its lean matching (only the
anchors that touch a box, the strict pass on the positives, anchors cached per size) equal
those of matching every anchor twice, and large files report as documented.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.coco_like import COCO_CATEGORIES, generate, main
from focal_array import _cli_stats
from focal_array.anchors import retinanet_anchors
from focal_array.coco import load
from focal_array.matcher import match_anchors

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def doc() -> dict:
    return generate(2000, seed=0)


def _boxes_per_image(doc: dict) -> np.ndarray:
    counts = Counter(a["image_id"] for a in doc["annotations"])
    return np.asarray([counts.get(im["id"], 0) for im in doc["images"]])


def test_loads_with_the_library(doc: dict) -> None:
    ds = load(doc)  # warns (and fails under -W error) if a box were degenerate
    assert len(ds) == 2000 and ds.num_classes == 80
    assert ds.num_annotations == len(doc["annotations"]) and not ds.dropped
    for image_id in list(ds)[:200]:
        info, boxes = ds.image(image_id), ds.annotations(image_id).boxes
        assert (boxes[:, :2] >= 0).all()
        assert (boxes[:, 2] <= info.width).all() and (boxes[:, 3] <= info.height).all()


def test_boxes_per_image_like_val2017(doc: dict) -> None:
    counts = _boxes_per_image(doc)
    assert 6.8 <= counts.mean() <= 7.8  # val2017: 7.36
    assert 3 <= np.median(counts) <= 6  # skewed: most images have a few boxes
    assert 0.003 <= (counts == 0).mean() <= 0.03  # val2017: ~1 % without boxes
    assert counts.max() >= 40  # a long tail


def test_crowd_fraction_and_categories(doc: dict) -> None:
    crowd = np.mean([a["iscrowd"] for a in doc["annotations"]])
    assert 0.006 <= crowd <= 0.015  # COCO: ~1 %
    ids = [c["id"] for c in doc["categories"]]
    assert len(ids) == 80 and max(ids) == 90 and 12 not in ids  # COCO's gaps
    assert ids == [c[0] for c in COCO_CATEGORIES]
    person = np.mean([a["category_id"] == 1 for a in doc["annotations"]])
    assert 0.25 <= person <= 0.35


def test_sizes_and_coordinates(doc: dict) -> None:
    shapes = Counter((im["width"], im["height"]) for im in doc["images"])
    assert set(shapes) == {(640, 480), (480, 640)}
    assert 0.65 <= shapes[(640, 480)] / len(doc["images"]) <= 0.85
    area = np.asarray([a["bbox"][2] * a["bbox"][3] for a in doc["annotations"]
                       if not a["iscrowd"]])
    small, large = (area < 32**2).mean(), (area >= 96**2).mean()
    assert 0.35 <= small <= 0.47 and 0.18 <= large <= 0.30  # COCO: 41 % / 24 %
    coords = np.asarray([a["bbox"] for a in doc["annotations"]])
    assert (coords != np.round(coords)).mean() > 0.9  # floats, not a pixel grid


def test_deterministic_for_a_seed() -> None:
    assert generate(50, seed=3) == generate(50, seed=3)
    assert generate(50, seed=3) != generate(50, seed=4)
    assert generate(0)["images"] == []


def test_bad_count() -> None:
    with pytest.raises(ValueError, match="num_images"):
        generate(-1)


def test_main_writes_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "c.json"
    assert main([str(out), "--images", "20", "--seed", "1"]) == 0
    assert json.loads(out.read_text()) == generate(20, seed=1)
    assert "20 images" in capsys.readouterr().out


# ----------------------------------------------------------------------------- inspect


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "focal_array.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=False)


def expected_anchor_count(height: int, width: int) -> int:
    return sum(math.ceil(height / s) * math.ceil(width / s) * 9 for s in (8, 16, 32, 64, 128))


def _coco_like_file(tmp_path: Path, images: int, *, seed: int = 0) -> Path:
    doc = generate(images, seed=seed)
    # a few crowd regions for sure, and an image whose only box is a crowd region
    for ann in doc["annotations"][::40]:
        ann["iscrowd"] = 1
    path = tmp_path / "coco_like.json"
    path.write_text(json.dumps(doc))
    return path


def _direct_counts(ds: Any, image_size: tuple[int, int] | None, *, high: float = 0.5,
                   low: float = 0.4) -> dict[str, Any]:
    """What the command reports, from ``match_anchors`` on every anchor of every image."""
    per_image, rescued, unmatched, per_gt = [], [], [], []
    for image_id in ds:
        info, ann = ds.image(image_id), ds.annotations(image_id)
        if image_size is None:
            size, scale = (info.height, info.width), 1.0
        else:
            size = image_size
            scale = min(size[0] / info.height, size[1] / info.width)
        anchors = retinanet_anchors(size, dtype=np.float32)
        if len(ann) == 0:
            per_image.append((anchors.shape[0], 0, anchors.shape[0], 0))
            continue
        boxes = (ann.boxes * scale).astype(np.float32)
        opts = {"gt_crowd": np.asarray(ann.crowd), "high": high, "low": low}
        m = match_anchors(anchors, boxes, **opts)
        strict = match_anchors(anchors, boxes, allow_low_quality_matches=False, **opts)
        per_image.append((anchors.shape[0], int((m >= 0).sum()), int((m == -1).sum()),
                          int((m == -2).sum())))
        for g, ann_id in enumerate(ann.annotation_ids.tolist()):
            if ann.crowd[g]:
                continue
            n, n_strict = int((m == g).sum()), int((strict == g).sum())
            per_gt.append(n)
            if n == 0:
                unmatched.append(ann_id)
            elif n_strict == 0:
                rescued.append(ann_id)
    return {"per_image": per_image, "rescued": rescued, "unmatched": unmatched,
            "per_gt": per_gt}


@pytest.mark.parametrize(("image_size", "low"), [(None, 0.4), ((256, 384), 0.4),
                                                 ((256, 384), 0.0)])
def test_inspect_counts_equal_matching_every_anchor(image_size: tuple[int, int] | None,
                                                    low: float, tmp_path: Path) -> None:
    # the command matches only the anchors that touch a box and runs the strict pass on the
    # positives only; the counts must be exactly those of matching all anchors twice
    ds = load(_coco_like_file(tmp_path, 12, seed=3), warn=False)
    assert sum(int(ds.annotations(i).crowd.sum()) for i in ds) > 0
    r = _cli_stats.inspect_dataset(ds, backend=_cli_stats.resolve_backend("numpy"),
                                   image_size=image_size, high=0.5, low=low)
    expected = _direct_counts(ds, image_size, low=low)
    got = [(im["anchors"], im["positives"], im["negatives"], im["ignored"])
           for im in r["per_image"]]
    assert got == expected["per_image"]
    assert r["rescued_gts"]["annotation_ids"] == expected["rescued"]
    assert r["unmatched_gts"]["annotation_ids"] == expected["unmatched"]
    assert [c for im in r["per_image"] for c in im["positives_per_gt"]] == expected["per_gt"]
    assert r["totals"]["positives"] == sum(p for _, p, _, _ in expected["per_image"])


def test_inspect_large_file_text_and_json(tmp_path: Path) -> None:
    path = _coco_like_file(tmp_path, 11)
    text = run("inspect", str(path))
    assert text.returncode == 0, text.stderr
    assert text.stderr == ""  # not a terminal: no bar
    assert "W×H   anchors" not in text.stdout  # over 10 images: no per-image table
    assert "images                            11 (" in text.stdout
    proc = run("inspect", str(path), "--json")
    r = json.loads(proc.stdout)
    assert len(r["per_image"]) == r["images"] == 11  # --json always lists every image
    assert sum(im["gts"] for im in r["per_image"]) == r["gts"]
    assert sum(im["crowd_gts"] for im in r["per_image"]) == r["crowd_gts"] > 0


def test_inspect_many_sizes_keep_few_anchor_sets(tmp_path: Path) -> None:
    # more distinct native sizes than the anchor cache holds: every size still reported
    sizes = [(40 + 8 * i, 56 + 4 * i) for i in range(_cli_stats._ANCHOR_CACHE_SIZES + 4)]
    sizes += sizes[:3]  # sizes seen again after they left the cache
    doc = {"images": [{"id": i + 1, "file_name": f"{i}.jpg", "width": w, "height": h}
                      for i, (h, w) in enumerate(sizes)],
           "categories": [{"id": 1, "name": "thing"}],
           "annotations": [{"id": i + 1, "image_id": i + 1, "category_id": 1,
                            "bbox": [3.5, 4.25, 20.0, 17.5]} for i in range(len(sizes))]}
    ds = load(doc)
    r = _cli_stats.inspect_dataset(ds, backend=_cli_stats.resolve_backend("numpy"),
                                   image_size=None, high=0.5, low=0.4)
    reported = {(a["height"], a["width"]): (a["anchors"], a["images"])
                for a in r["anchors_per_image"]}
    assert list(reported) == list(dict.fromkeys(sizes))  # first-seen order
    for (h, w), (anchors, images) in reported.items():
        assert anchors == expected_anchor_count(h, w)
        assert images == sizes.count((h, w))
    expected = _direct_counts(ds, None)["per_image"]
    assert [(im["anchors"], im["positives"], im["negatives"], im["ignored"])
            for im in r["per_image"]] == expected
