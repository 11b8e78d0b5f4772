"""Synthetic, strongly imbalanced detection data shared by the examples (NumPy, seeded).

Each 64×64 grey image holds one to four shapes on a noisy background — class 0 a filled
square, class 1 a disc, class 2 a cross — with their ``xyxy`` boxes and labels, padded to
``max_objects`` with a valid mask. The anchor grid (two pyramid levels, six anchors per
location, 480 anchors) leaves about 98 % of the anchors background, which is the regime
focal loss was made for.

This file also holds what every example needs besides the framework: the head layout
(anchors per location), the evaluation (score, decode, greedy NMS, AP at IoU 0.5, all in
NumPy) and the model's layer list, so the Flax and PyTorch models are the same network.
"""

from __future__ import annotations

import argparse
import math
from typing import NamedTuple

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


def average_precision(detections: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
                      truth: Batch, *, iou: float = 0.5) -> dict[str, float]:
    """AP at ``iou`` per class (all-point interpolated, as PASCAL VOC 2010+) and their mean.

    A detection is a true positive when its IoU with a not yet matched gt of its class is
    ≥ ``iou`` (detections taken in decreasing score over the whole set); precision is made
    monotone from the right and integrated over every recall step.
    """
    result = {}
    for c in range(NUM_CLASSES):
        records = []  # (score, is_tp)
        n_gt = 0
        for (boxes, scores, labels), gtb, gtl, gtv in zip(detections, truth.boxes,
                                                          truth.labels, truth.valid,
                                                          strict=True):
            gts = gtb[gtv & (gtl == c)].astype(np.float64)
            n_gt += len(gts)
            taken = np.zeros(len(gts), dtype=bool)
            sel = labels == c
            for box, score in sorted(zip(boxes[sel], scores[sel], strict=True),
                                     key=lambda t: -t[1]):
                tp = False
                if len(gts):
                    ious = np.where(taken, -1.0, _iou(box, gts))
                    j = int(np.argmax(ious))
                    if ious[j] >= iou:
                        taken[j], tp = True, True
                records.append((score, tp))
        if n_gt == 0:
            continue
        records.sort(key=lambda t: -t[0])
        tp = np.cumsum([r[1] for r in records], dtype=np.float64)
        fp = np.cumsum([not r[1] for r in records], dtype=np.float64)
        recall = np.concatenate([[0.0], tp / n_gt, [1.0]]) if records else np.array([0., 1.])
        precision = (np.concatenate([[1.0], tp / np.maximum(tp + fp, 1e-9), [0.0]])
                     if records else np.array([1.0, 0.0]))
        precision = np.maximum.accumulate(precision[::-1])[::-1]
        steps = np.flatnonzero(recall[1:] != recall[:-1])
        result[CLASS_NAMES[c]] = float(np.sum((recall[steps + 1] - recall[steps])
                                              * precision[steps + 1]))
    result["mAP"] = float(np.mean([result[n] for n in CLASS_NAMES if n in result]))
    return result


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
