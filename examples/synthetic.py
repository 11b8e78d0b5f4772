"""Synthetic, strongly imbalanced detection data shared by the examples (NumPy, seeded).

Each 64×64 grey image holds one to four shapes on a noisy background — class 0 a filled
square, class 1 a disc, class 2 a cross — with their ``xyxy`` boxes and labels, padded to
``max_objects`` with a valid mask. The anchor grid (two pyramid levels, six anchors per
location, 480 anchors) leaves about 98 % of the anchors background, which is the regime
focal loss was made for.

This file also holds what every example needs besides the framework: the head layout
(anchors per location), the evaluation (score, decode and greedy NMS in NumPy; COCO's
AP@[.5:.95], AP50 and AP75 from pycocotools' ``COCOeval``) and the model's layer list, so
the Flax and PyTorch models are the same network.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
from typing import Any, NamedTuple

import numpy as np

from focal_array.anchors import retinanet_anchors
from focal_array.boxes import decode

IMAGE_SIZE = 64
NUM_CLASSES = 3
CLASS_NAMES = ("square", "disc", "cross")
MAX_OBJECTS = 4
STRIDES = (8, 16)
SIZES = (12.0, 24.0)
SCALES = (1.0, 2**0.5)
RATIOS = (0.5, 1.0, 2.0)
ANCHORS_PER_LOCATION = len(SCALES) * len(RATIOS)
PRIOR = 0.01  # π: initial foreground probability of the classification head

#: The backbone both examples build: (in, out, stride) of each 3×3 conv + ReLU; the last
#: two outputs are the pyramid levels P3 (stride 8) and P4 (stride 16).
BACKBONE = ((1, 16, 1), (16, 32, 2), (32, 32, 2), (32, 64, 2), (64, 64, 2))
HEAD_WIDTH = 64


class Batch(NamedTuple):
    """A padded batch: images ``(N, H, W, 1)`` float32, boxes ``(N, G, 4)`` float32 xyxy,
    labels ``(N, G)`` int32, valid ``(N, G)`` bool."""

    images: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    valid: np.ndarray

    def take(self, index: np.ndarray | slice) -> Batch:
        """The images at ``index``."""
        return Batch(*(a[index] for a in self))


def make_anchors() -> np.ndarray:
    """The ``(A, 4)`` float32 anchors of the examples' head, in the head's output order."""
    return np.asarray(retinanet_anchors((IMAGE_SIZE, IMAGE_SIZE), strides=STRIDES,
                                        sizes=SIZES, scales=SCALES, aspect_ratios=RATIOS))


def _draw(image: np.ndarray, label: int, box: np.ndarray, intensity: float) -> None:
    x0, y0, x1, y1 = box
    yy, xx = np.mgrid[0:image.shape[0], 0:image.shape[1]] + 0.5
    inside = (xx >= x0) & (xx < x1) & (yy >= y0) & (yy < y1)
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
    if label == 0:
        mask = inside
    elif label == 1:
        mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2
    else:
        bar = (x1 - x0) / 5
        mask = inside & ((np.abs(xx - cx) <= bar) | (np.abs(yy - cy) <= bar))
    image[mask] = intensity


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def make_dataset(num_images: int, *, seed: int = 0, max_objects: int = MAX_OBJECTS
                 ) -> Batch:
    """``num_images`` synthetic images with 1 to ``max_objects`` shapes each.

    Shapes are 10–26 px squares, discs or crosses, placed with IoU < 0.2 between them, at
    random brightness on a noisy background (so the task is not solvable by a threshold).

    Args:
        num_images: how many images.
        seed: seed of the NumPy generator; the same seed gives the same data.
        max_objects: G, the padded number of boxes per image.

    Returns:
        A :class:`Batch`.

    Example:
        >>> b = make_dataset(2, seed=0)
        >>> b.images.shape, b.boxes.shape, int(b.valid.sum()) >= 2
        ((2, 64, 64, 1), (2, 4, 4), True)
    """
    rng = np.random.default_rng(seed)
    images = rng.normal(0.0, 0.15, size=(num_images, IMAGE_SIZE, IMAGE_SIZE, 1))
    boxes = np.zeros((num_images, max_objects, 4))
    labels = np.zeros((num_images, max_objects), dtype=np.int32)
    valid = np.zeros((num_images, max_objects), dtype=bool)
    for i in range(num_images):
        placed = 0
        for _ in range(int(rng.integers(1, max_objects + 1))):
            for _attempt in range(20):
                side = rng.uniform(10, 26)
                x0, y0 = rng.uniform(1, IMAGE_SIZE - 1 - side, size=2)
                box = np.array([x0, y0, x0 + side, y0 + side])
                if all(_overlap(box, boxes[i, j]) < 0.2 for j in range(placed)):
                    break
            else:
                continue
            label = int(rng.integers(0, NUM_CLASSES))
            _draw(images[i, ..., 0], label, box, rng.uniform(0.6, 1.0))
            boxes[i, placed], labels[i, placed], valid[i, placed] = box, label, True
            placed += 1
    return Batch(images.astype(np.float32), boxes.astype(np.float32), labels, valid)


def init_params(seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Initial weights of the examples' detector, as NumPy float32, in Flax's layout.

    ``{layer: {"kernel": (3, 3, in, out), "bias": (out,)}}`` for ``backbone_0…4``,
    ``cls_tower``, ``cls_out``, ``box_tower``, ``box_out``. Backbone kernels are He-normal
    (std √(2 / fan_in)), head kernels N(0, 0.01²) with zero bias except the classification
    bias, −log((1 − π)/π) (RetinaNet's initialization). Both examples start from these, so
    the Flax and PyTorch runs of one seed begin with the same network.
    """
    rng = np.random.default_rng(seed)

    def layer(cin: int, cout: int, std: float, bias: float = 0.0) -> dict[str, np.ndarray]:
        return {"kernel": rng.normal(0.0, std, size=(3, 3, cin, cout)).astype(np.float32),
                "bias": np.full((cout,), bias, dtype=np.float32)}

    params = {f"backbone_{i}": layer(cin, cout, math.sqrt(2.0 / (9 * cin)))
              for i, (cin, cout, _) in enumerate(BACKBONE)}
    top, width, k = BACKBONE[-1][1], HEAD_WIDTH, ANCHORS_PER_LOCATION
    params["cls_tower"] = layer(top, width, 0.01)
    params["cls_out"] = layer(width, k * NUM_CLASSES, 0.01, prior_bias())
    params["box_tower"] = layer(top, width, 0.01)
    params["box_out"] = layer(width, k * 4, 0.01)
    return params


def prior_bias(prior: float = PRIOR) -> float:
    """RetinaNet's classification bias −log((1 − π)/π): every anchor starts at P = π."""
    return -math.log((1.0 - prior) / prior)


# --------------------------------------------------------------------------- evaluation


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    iw = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    ih = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = iw * ih
    union = ((box[2] - box[0]) * (box[3] - box[1])
             + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter)
    return inter / np.maximum(union, 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float = 0.5) -> np.ndarray:
    """Greedy non-maximum suppression: indices of the kept boxes, best score first."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        best, order = order[0], order[1:]
        keep.append(best)
        order = order[_iou(boxes[best], boxes[order]) <= iou]
    return np.asarray(keep, dtype=np.int64)


def detect(logits: np.ndarray, deltas: np.ndarray, anchors: np.ndarray, *,
           score_threshold: float = 0.05, max_detections: int = 100
           ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per image ``(boxes, scores, labels)``: sigmoid scores, decoded boxes, per-class NMS.

    Args:
        logits: ``(N, A, C)`` classification logits.
        deltas: ``(N, A, 4)`` box deltas.
        anchors: ``(A, 4)`` anchors.
        score_threshold: candidates below it are dropped (RetinaNet: 0.05).
        max_detections: kept per image, best first.
    """
    scores = 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))
    boxes = np.asarray(decode(np.asarray(anchors, np.float64),
                              np.asarray(deltas, np.float64)))
    out = []
    for i in range(scores.shape[0]):
        b_all, s_all, l_all = [], [], []
        for c in range(scores.shape[2]):
            cand = np.flatnonzero(scores[i, :, c] > score_threshold)
            if cand.size == 0:
                continue
            keep = cand[nms(boxes[i, cand], scores[i, cand, c])]
            b_all.append(boxes[i, keep])
            s_all.append(scores[i, keep, c])
            l_all.append(np.full(keep.size, c))
        if not s_all:
            out.append((np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64)))
            continue
        b, s, lab = np.concatenate(b_all), np.concatenate(s_all), np.concatenate(l_all)
        top = np.argsort(-s, kind="stable")[:max_detections]
        out.append((b[top], s[top], lab[top]))
    return out


def coco_ground_truth(truth: Batch) -> dict[str, list[dict[str, Any]]]:
    """The batch's valid boxes as a COCO instances dict (what ``pycocotools.coco.COCO``
    holds as ``dataset``).

    Image ``i`` of the batch is image id ``i + 1``, class ``c`` is category id ``c + 1``
    (COCO ids start at 1), boxes are ``[x, y, width, height]`` and ``area`` is the box's
    area (no masks), nothing is crowd.
    """
    n = truth.images.shape[0]
    images = [{"id": i + 1, "width": IMAGE_SIZE, "height": IMAGE_SIZE,
               "file_name": f"synthetic_{i}.png"} for i in range(n)]
    annotations = []
    for i, j in np.argwhere(truth.valid):
        x0, y0, x1, y1 = (float(v) for v in truth.boxes[i, j])
        annotations.append({"id": len(annotations) + 1, "image_id": int(i) + 1,
                            "category_id": int(truth.labels[i, j]) + 1,
                            "bbox": [x0, y0, x1 - x0, y1 - y0],
                            "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
    categories = [{"id": c + 1, "name": name} for c, name in enumerate(CLASS_NAMES)]
    return {"images": images, "annotations": annotations, "categories": categories}


def coco_results(detections: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
                 ) -> list[dict[str, Any]]:
    """:func:`detect`'s output in COCO's results format: one dict per detection with
    ``image_id``, ``category_id`` (ids as in :func:`coco_ground_truth`), ``bbox``
    ``[x, y, width, height]`` and ``score``."""
    return [{"image_id": i + 1, "category_id": int(label) + 1,
             "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])],
             "score": float(score)}
            for i, (boxes, scores, labels) in enumerate(detections)
            for b, score, label in zip(boxes, scores, labels, strict=True)]


def coco_metrics(detections: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
                 truth: Batch) -> dict[str, float]:
    """COCO box metrics of ``detections`` against ``truth``, from pycocotools' ``COCOeval``.

    ``AP`` is AP@[.5:.95] (the mean over IoU thresholds 0.5, 0.55, ..., 0.95), ``AP50`` and
    ``AP75`` at one threshold; each is 101-point interpolated and averaged over the classes
    that have ground truth, with up to 100 detections per image (what :func:`detect`
    keeps). Also ``AP50`` of each class, under its name. With no detection at all every
    value is 0 (pycocotools cannot load an empty result list).

    Args:
        detections: per image ``(boxes xyxy, scores, labels)``, as :func:`detect` returns.
        truth: the images' ground truth.

    Returns:
        ``{"AP": ..., "AP50": ..., "AP75": ..., "square": ..., "disc": ..., "cross": ...}``
        (a class without ground truth is left out).
    """
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise SystemExit("the examples' evaluation needs pycocotools: "
                         "pip install pycocotools") from None
    gt_dict = coco_ground_truth(truth)
    present = sorted({a["category_id"] for a in gt_dict["annotations"]})
    results = coco_results(detections)
    if not results:
        return {"AP": 0.0, "AP50": 0.0, "AP75": 0.0,
                **{CLASS_NAMES[c - 1]: 0.0 for c in present}}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        gt = COCO()
        gt.dataset = gt_dict
        gt.createIndex()
        evaluator = COCOeval(gt, gt.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    ap, ap50, ap75 = (float(v) for v in evaluator.stats[:3])
    # precision: (IoU thresholds, recall thresholds, categories, area ranges, max dets);
    # IoU 0.5 is the first threshold, area "all" the first range, 100 dets the last
    precision = evaluator.eval["precision"][0, :, :, 0, -1]
    per_class = {CLASS_NAMES[c - 1]: float(np.mean(precision[:, k]))
                 for k, c in enumerate(evaluator.params.catIds) if c in present}
    return {"AP": ap, "AP50": ap50, "AP75": ap75, **per_class}


#: Column titles of :func:`metrics_row`, the detectors' summary table.
METRICS_HEADER = (f"{'AP':>6}  {'AP50':>6}  {'AP75':>6}  "
                  f"{'AP50 ' + '/'.join(CLASS_NAMES):>26}")


def metrics_row(metrics: dict[str, float]) -> str:
    """One row of the summary table: :func:`coco_metrics`' AP, AP50, AP75, AP50 per class."""
    per_class = " / ".join(f"{metrics.get(n, float('nan')):.3f}" for n in CLASS_NAMES)
    return (f"{metrics['AP']:6.3f}  {metrics['AP50']:6.3f}  {metrics['AP75']:6.3f}  "
            f"{per_class:>26}")


def base_parser(description: str) -> argparse.ArgumentParser:
    """The command-line options both detector examples share (same defaults, same budget)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--steps", type=int, default=400, help="train steps per run (400)")
    p.add_argument("--gamma", type=float, default=2.0, help="focal γ of a single run (2)")
    p.add_argument("--alpha", type=float, default=0.25,
                   help="α for positives (0.25); a negative value disables balancing")
    p.add_argument("--seed", type=int, default=0, help="data, init and batch order (0)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3, help="peak Adam step, cosine decay")
    p.add_argument("--train-images", type=int, default=1024, help="training set size (1024)")
    p.add_argument("--eval-images", type=int, default=256, help="held-out set size (256)")
    p.add_argument("--compare", action="store_true",
                   help="train γ = 0 (cross-entropy) and γ = 2 (focal) on the same budget")
    return p


def log_step(gamma: float, step: int, loss: float, classification: float,
             box_regression: float, positives: int, ema: float) -> None:
    """One line of a training loop's progress (both detector examples print the same)."""
    print(f"  γ={gamma:g} step {step:4d}  loss {loss:.4f}  (cls {classification:.4f}, "
          f"box {box_regression:.4f}, positives {positives}, EMA {ema:.1f})", flush=True)
