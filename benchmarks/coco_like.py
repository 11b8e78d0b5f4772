"""A synthetic COCO instances file with COCO 2017's statistics, for timing at dataset scale.

``generate(n)`` returns a COCO "instances" dict (``images``, ``annotations``,
``categories``, ``info``, ``licenses``) that :func:`focal_array.coco.load` reads, built from
a seeded NumPy generator (same seed, same file). It mimics what matters for anchor matching
in COCO val2017 (5,000 images, 36,781 boxes):

* **Boxes per image** — mean ≈ 7.3 (val2017: 7.36) with a long tail: about 1 % of
  images have no box (val2017: 48 of 5,000), the rest ``1 + NegativeBinomial(r = 0.9,
  mean 6.4)``, capped at 93 (train2017's maximum): median ≈ 5 (val2017: 4) and about one
  image per thousand with 50 or more.
* **Crowd regions** — each box is ``iscrowd = 1`` with probability 1 % (COCO 2017: ≈ 1 %),
  and a crowd region is drawn larger (sqrt(area) median ≈ 150 px), as crowds cover groups.
* **Image sizes** — width × height 640 × 480 (landscape) for 75 % of the images and
  480 × 640 (portrait) for 25 %, COCO's two most common sizes in roughly its proportion
  of landscape to portrait images (COCO's long side is 640 for almost every image).
* **Categories** — COCO's 80 categories with their real, non-contiguous ids 1…90 and names;
  ``person`` takes 30 % of the boxes (val2017: 11,004 of 36,781), the other 79 follow a
  Zipf-like law (weight 1 / rank), as COCO's class frequencies fall off.
* **Box sizes** — sqrt(area) is log-normal (median ≈ 42 px, σ = 1.18 in log space), fitted
  to COCO's split of 41 % small (area < 32²), 34 % medium (< 96²) and 24 % large; the
  aspect ratio w / h is log-normal (σ = 0.6), and both sides are at least 1 px.
* **Coordinates** — floats rounded to 2 decimals as in COCO's json (not on any pixel grid),
  every box inside its image (a box wider or taller than the image is shrunk to fit).

Image ids are COCO-like: distinct, increasing, non-contiguous 6-digit numbers, and
``file_name`` is ``f"{id:012d}.jpg"``. Usage::

    python -m benchmarks.coco_like OUT.json --images 5000 [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["COCO_CATEGORIES", "generate", "main"]

#: COCO's 80 categories as (id, name, supercategory); ids 12, 26, 29, 30, 45, 66, 68, 69,
#: 71 and 83 are unused, as in the real files.
COCO_CATEGORIES: tuple[tuple[int, str, str], ...] = (
    (1, "person", "person"), (2, "bicycle", "vehicle"), (3, "car", "vehicle"),
    (4, "motorcycle", "vehicle"), (5, "airplane", "vehicle"), (6, "bus", "vehicle"),
    (7, "train", "vehicle"), (8, "truck", "vehicle"), (9, "boat", "vehicle"),
    (10, "traffic light", "outdoor"), (11, "fire hydrant", "outdoor"),
    (13, "stop sign", "outdoor"), (14, "parking meter", "outdoor"), (15, "bench", "outdoor"),
    (16, "bird", "animal"), (17, "cat", "animal"), (18, "dog", "animal"),
    (19, "horse", "animal"), (20, "sheep", "animal"), (21, "cow", "animal"),
    (22, "elephant", "animal"), (23, "bear", "animal"), (24, "zebra", "animal"),
    (25, "giraffe", "animal"), (27, "backpack", "accessory"), (28, "umbrella", "accessory"),
    (31, "handbag", "accessory"), (32, "tie", "accessory"), (33, "suitcase", "accessory"),
    (34, "frisbee", "sports"), (35, "skis", "sports"), (36, "snowboard", "sports"),
    (37, "sports ball", "sports"), (38, "kite", "sports"), (39, "baseball bat", "sports"),
    (40, "baseball glove", "sports"), (41, "skateboard", "sports"),
    (42, "surfboard", "sports"), (43, "tennis racket", "sports"), (44, "bottle", "kitchen"),
    (46, "wine glass", "kitchen"), (47, "cup", "kitchen"), (48, "fork", "kitchen"),
    (49, "knife", "kitchen"), (50, "spoon", "kitchen"), (51, "bowl", "kitchen"),
    (52, "banana", "food"), (53, "apple", "food"), (54, "sandwich", "food"),
    (55, "orange", "food"), (56, "broccoli", "food"), (57, "carrot", "food"),
    (58, "hot dog", "food"), (59, "pizza", "food"), (60, "donut", "food"),
    (61, "cake", "food"), (62, "chair", "furniture"), (63, "couch", "furniture"),
    (64, "potted plant", "furniture"), (65, "bed", "furniture"),
    (67, "dining table", "furniture"), (70, "toilet", "furniture"), (72, "tv", "electronic"),
    (73, "laptop", "electronic"), (74, "mouse", "electronic"), (75, "remote", "electronic"),
    (76, "keyboard", "electronic"), (77, "cell phone", "electronic"),
    (78, "microwave", "appliance"), (79, "oven", "appliance"), (80, "toaster", "appliance"),
    (81, "sink", "appliance"), (82, "refrigerator", "appliance"), (84, "book", "indoor"),
    (85, "clock", "indoor"), (86, "vase", "indoor"), (87, "scissors", "indoor"),
    (88, "teddy bear", "indoor"), (89, "hair drier", "indoor"), (90, "toothbrush", "indoor"),
)

_EMPTY_IMAGES = 0.01
_EXTRA_BOXES_MEAN = 6.4  # boxes beyond the first of an image with boxes: 0.99 × 7.4 ≈ 7.3
_EXTRA_BOXES_R = 0.9  # negative binomial dispersion: r < 1 gives COCO's long tail
_MAX_BOXES = 93
_CROWD = 0.01
_LANDSCAPE = 0.75
_PERSON = 0.30
_SQRT_AREA = (np.log(42.0), 1.18)  # log-normal (mu, sigma) of sqrt(area), pixels
_CROWD_SQRT_AREA = (np.log(150.0), 0.6)
_ASPECT_SIGMA = 0.6


def _category_weights() -> np.ndarray:
    rest = 1.0 / np.arange(1, len(COCO_CATEGORIES))
    return np.concatenate([[_PERSON], (1.0 - _PERSON) * rest / rest.sum()])


def generate(num_images: int, *, seed: int = 0) -> dict[str, Any]:
    """A COCO instances dict of ``num_images`` images with val2017-like statistics.

    Args:
        num_images: number of images (>= 0).
        seed: seed of the NumPy generator; the same seed gives the same dict.

    Returns:
        A JSON-ready dict with ``info``, ``licenses``, ``images``, ``annotations`` (``id``,
        ``image_id``, ``category_id``, ``bbox`` ``[x, y, w, h]``, ``area``, ``iscrowd``,
        ``segmentation``) and ``categories`` (COCO's 80, non-contiguous ids).

    Raises:
        ValueError: ``num_images`` negative or not an integer.

    Examples:
        >>> doc = generate(3, seed=1)
        >>> len(doc["images"]), len(doc["categories"]), doc["categories"][-1]["id"]
        (3, 80, 90)
    """
    if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 0:
        raise ValueError(f"num_images must be an integer >= 0, got {num_images!r}")
    rng = np.random.default_rng(seed)
    n = num_images
    # distinct, increasing, gappy ids below COCO's largest (581,929)
    ids = np.sort(rng.choice(np.arange(1, 581_930), size=n, replace=False)) if n else []
    landscape = rng.random(n) < _LANDSCAPE
    widths = np.where(landscape, 640, 480)
    heights = np.where(landscape, 480, 640)
    p = _EXTRA_BOXES_R / (_EXTRA_BOXES_R + _EXTRA_BOXES_MEAN)
    counts = 1 + rng.negative_binomial(_EXTRA_BOXES_R, p, size=n)
    counts = np.where(rng.random(n) < _EMPTY_IMAGES, 0, np.minimum(counts, _MAX_BOXES))

    total = int(counts.sum())
    image_of = np.repeat(np.arange(n), counts)
    crowd = rng.random(total) < _CROWD
    sqrt_area = np.where(crowd, rng.lognormal(*_CROWD_SQRT_AREA, size=total),
                         rng.lognormal(*_SQRT_AREA, size=total))
    aspect = np.exp(rng.normal(0.0, _ASPECT_SIGMA, size=total))  # w / h
    img_w = widths[image_of].astype(np.float64)
    img_h = heights[image_of].astype(np.float64)
    w = np.clip(sqrt_area * np.sqrt(aspect), 1.0, img_w)
    h = np.clip(sqrt_area / np.sqrt(aspect), 1.0, img_h)
    # rounding to COCO's 2 decimals must not push a box past the image's edge
    w, h = np.floor(w * 100) / 100, np.floor(h * 100) / 100
    x = np.floor(rng.random(total) * (img_w - w) * 100) / 100
    y = np.floor(rng.random(total) * (img_h - h) * 100) / 100
    cats = np.asarray([c[0] for c in COCO_CATEGORIES])
    category = cats[rng.choice(len(cats), size=total, p=_category_weights())]

    images = [{"id": int(i), "file_name": f"{int(i):012d}.jpg", "width": int(wd),
               "height": int(ht), "license": 1}
              for i, wd, ht in zip(ids, widths, heights, strict=True)]
    annotations = []
    for k in range(total):
        bx, by, bw, bh = float(x[k]), float(y[k]), float(w[k]), float(h[k])
        annotations.append({
            "id": k + 1, "image_id": int(ids[image_of[k]]), "category_id": int(category[k]),
            "bbox": [bx, by, bw, bh], "area": round(bw * bh, 2), "iscrowd": int(crowd[k]),
            # a box polygon: loaders that insist on a segmentation get one
            "segmentation": [[bx, by, bx + bw, by, bx + bw, by + bh, bx, by + bh]],
        })
    return {
        "info": {"description": f"COCO-like synthetic instances (seed {seed})",
                 "version": "1.0", "year": 2017},
        "licenses": [{"id": 1, "name": "synthetic", "url": ""}],
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": name, "supercategory": sup}
                       for i, name, sup in COCO_CATEGORIES],
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.coco_like OUT.json --images N [--seed S]``: write a file."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.coco_like",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("out", metavar="OUT.json", help="file to write")
    parser.add_argument("--images", type=int, default=5000, help="number of images (5000)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (0)")
    args = parser.parse_args(argv)
    if args.images < 0:
        parser.error(f"--images must be >= 0, got {args.images}")
    doc = generate(args.images, seed=args.seed)
    try:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(doc, f, separators=(",", ":"))
    except OSError as exc:
        print(f"coco_like: error: cannot write {args.out}: {exc.strerror}", file=sys.stderr)
        return 2
    boxes = len(doc["annotations"])
    print(f"wrote {args.out}: {args.images} images, {boxes} boxes "
          f"({boxes / max(args.images, 1):.2f} per image)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
