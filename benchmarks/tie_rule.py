"""How many anchors each low-quality tie rule claims, against exact rational arithmetic.

The low-quality rule lets every gt claim the anchors that tie with its best IoU. This script
counts, per gt of a COCO-like file (:mod:`benchmarks.coco_like`, float coordinates as in
COCO's json) over RetinaNet anchors at each image's size:

* ``equal`` — anchors whose float32 IoU equals the gt's best float32 IoU (torchvision's
  ``==``, and ``tie_rule="equal"``);
* ``rounding`` — anchors within the rounding bound of the best
  (``IoU >= best · (1 − 40u)``, u = 2⁻²⁴; ``tie_rule="rounding"``, the default);
* ``exact`` — anchors whose IoU, computed with Python ``fractions`` from the float32
  coordinates (exactly what the arrays hold), equals the exact maximum over all anchors.

The exact maximum is searched among the anchors within 10⁻⁴ (relative) of the float32
best: the float32 IoU is within 16u ≈ 10⁻⁶ of the exact one, so no exact tie lies outside.
It also reports how many exact ties each float rule misses and how many non-ties it
claims, and the positive anchors :func:`~focal_array.matcher.match_anchors` finds with each
rule (default options, crowd regions left out).

Usage::

    python -m benchmarks.tie_rule [--images 48] [--seed 0] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from benchmarks.coco_like import generate
from focal_array.anchors import retinanet_anchors
from focal_array.matcher import TIE_BOUND_ULPS, match_anchors

_SEARCH_BAND = 1e-4


def _iou32(anchors: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """float32 IoU of every anchor with one gt, torchvision's order of operations."""
    w = np.maximum(np.minimum(anchors[:, 2], gt[2]) - np.maximum(anchors[:, 0], gt[0]),
                   np.float32(0))
    h = np.maximum(np.minimum(anchors[:, 3], gt[3]) - np.maximum(anchors[:, 1], gt[1]),
                   np.float32(0))
    inter = w * h
    area_a = (anchors[:, 2] - anchors[:, 0]) * (anchors[:, 3] - anchors[:, 1])
    area_g = (gt[2] - gt[0]) * (gt[3] - gt[1])
    return inter / (area_a + area_g - inter)


def _exact_iou(a: Sequence[float], g: Sequence[float]) -> Fraction:
    ax1, ay1, ax2, ay2 = (Fraction(float(v)) for v in a)
    gx1, gy1, gx2, gy2 = (Fraction(float(v)) for v in g)
    w = max(min(ax2, gx2) - max(ax1, gx1), Fraction(0))
    h = max(min(ay2, gy2) - max(ay1, gy1), Fraction(0))
    inter = w * h
    union = (ax2 - ax1) * (ay2 - ay1) + (gx2 - gx1) * (gy2 - gy1) - inter
    return inter / union if union else Fraction(0)


def count(num_images: int, seed: int) -> dict[str, Any]:
    """The per-rule claim counts over ``num_images`` generated images."""
    doc = generate(num_images, seed=seed)
    by_image: dict[int, list[list[float]]] = {}
    for ann in doc["annotations"]:
        if not ann["iscrowd"]:
            by_image.setdefault(ann["image_id"], []).append(ann["bbox"])
    factor = np.float32(1.0 - TIE_BOUND_ULPS * 2.0**-24)
    totals = {"gts": 0, "equal": 0, "rounding": 0, "exact": 0, "equal_missed": 0,
              "equal_extra": 0, "rounding_missed": 0, "rounding_extra": 0,
              "gts_with_split_exact_ties": 0}
    totals |= {"positives_equal": 0, "positives_rounding": 0}
    cache: dict[tuple[int, int], np.ndarray] = {}
    for image in doc["images"]:
        size = (image["height"], image["width"])
        if size not in cache:
            cache[size] = np.asarray(retinanet_anchors(size), dtype=np.float32)
        anchors = cache[size]
        boxes = np.asarray([[x, y, x + w, y + h] for x, y, w, h in
                            by_image.get(image["id"], [])], dtype=np.float32).reshape(-1, 4)
        for rule in ("equal", "rounding"):
            matched = match_anchors(anchors, boxes, tie_rule=rule)
            totals[f"positives_{rule}"] += int((matched >= 0).sum())
        for x, y, w, h in by_image.get(image["id"], []):
            gt = np.asarray([x, y, x + w, y + h], dtype=np.float32)
            iou = _iou32(anchors, gt)
            best = iou.max()
            if not best > 0:
                continue
            equal = iou == best
            rounding = iou >= best * factor
            near = np.nonzero(iou >= best * np.float32(1 - _SEARCH_BAND))[0]
            exact_values = {int(a): _exact_iou(anchors[a], gt) for a in near}
            top = max(exact_values.values())
            exact = np.zeros_like(equal)
            exact[[a for a, v in exact_values.items() if v == top]] = True
            totals["gts"] += 1
            totals["equal"] += int(equal.sum())
            totals["rounding"] += int(rounding.sum())
            totals["exact"] += int(exact.sum())
            totals["equal_missed"] += int((exact & ~equal).sum())
            totals["equal_extra"] += int((equal & ~exact).sum())
            totals["rounding_missed"] += int((exact & ~rounding).sum())
            totals["rounding_extra"] += int((rounding & ~exact).sum())
            totals["gts_with_split_exact_ties"] += int(bool((exact & ~equal).any()))
    return {"images": num_images, "seed": seed, **totals}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.tie_rule``: print (and optionally save) the counts."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tie_rule",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="OUT.json", default=None)
    args = parser.parse_args(argv)
    result = count(args.images, args.seed)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
