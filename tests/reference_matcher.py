"""Plain float64 NumPy references for boxes and matching, written independently of the
library: explicit loops over boxes and anchors, straight from the definitions.

Single image only (2-D inputs); tests loop over a batch themselves.
"""

from __future__ import annotations

import math

import numpy as np

BACKGROUND = -1
IGNORE = -2


def _box(b):
    x1, y1, x2, y2 = (float(v) for v in b)
    return x1, y1, x2, y2


def box_area(b) -> float:
    x1, y1, x2, y2 = _box(b)
    return max(x2 - x1, 0.0) * max(y2 - y1, 0.0)


def intersection(a, b) -> float:
    ax1, ay1, ax2, ay2 = _box(a)
    bx1, by1, bx2, by2 = _box(b)
    w = max(min(ax2, bx2) - max(ax1, bx1), 0.0)
    h = max(min(ay2, by2) - max(ay1, by1), 0.0)
    return w * h


def iou(boxes1, boxes2) -> np.ndarray:
    """(N, M) IoU; 0 where the union is empty."""
    out = np.zeros((len(boxes1), len(boxes2)))
    for i, a in enumerate(boxes1):
        for j, b in enumerate(boxes2):
            inter = intersection(a, b)
            union = box_area(a) + box_area(b) - inter
            out[i, j] = inter / union if union > 0 else 0.0
    return out


def ioa(boxes1, boxes2) -> np.ndarray:
    """(N, M) intersection over the area of boxes1[i]; 0 where that area is 0."""
    out = np.zeros((len(boxes1), len(boxes2)))
    for i, a in enumerate(boxes1):
        for j, b in enumerate(boxes2):
            area = box_area(a)
            out[i, j] = intersection(a, b) / area if area > 0 else 0.0
    return out


def giou(boxes1, boxes2) -> np.ndarray:
    out = iou(boxes1, boxes2)
    for i, a in enumerate(boxes1):
        for j, b in enumerate(boxes2):
            ax1, ay1, ax2, ay2 = _box(a)
            bx1, by1, bx2, by2 = _box(b)
            c = (max(ax2, bx2) - min(ax1, bx1)) * (max(ay2, by2) - min(ay1, by1))
            union = box_area(a) + box_area(b) - intersection(a, b)
            if c > 0:
                out[i, j] -= (c - union) / c
    return out


def encode(anchor, box, weights=(1.0, 1.0, 1.0, 1.0)) -> np.ndarray:
    ax1, ay1, ax2, ay2 = _box(anchor)
    x1, y1, x2, y2 = _box(box)
    aw, ah = ax2 - ax1, ay2 - ay1
    w, h = x2 - x1, y2 - y1
    wx, wy, ww, wh = weights
    return np.array([
        wx * ((x1 + w / 2) - (ax1 + aw / 2)) / aw,
        wy * ((y1 + h / 2) - (ay1 + ah / 2)) / ah,
        ww * math.log(w / aw),
        wh * math.log(h / ah),
    ])


CLAMP = math.log(1000 / 16)


def decode(anchor, delta, weights=(1.0, 1.0, 1.0, 1.0), clamp=CLAMP):
    ax1, ay1, ax2, ay2 = _box(anchor)
    aw, ah = ax2 - ax1, ay2 - ay1
    dx, dy, dw, dh = (float(d) / w for d, w in zip(delta, weights, strict=True))
    if clamp is not None:
        dw, dh = min(dw, clamp), min(dh, clamp)
    cx = dx * aw + ax1 + aw / 2
    cy = dy * ah + ay1 + ah / 2
    w = math.exp(dw) * aw
    h = math.exp(dh) * ah
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


def match(quality, high=0.5, low=0.4, allow_low_quality_matches=True, tie_tolerance=0.0,
          usable=None, tie_rule="equal", roundoff=2.0**-24) -> np.ndarray:
    """Per-anchor matcher on an (A, G) matrix; ``usable`` (G,) marks gts that may match.

    ``tie_rule="rounding"``: a gt also claims the anchors with ``q >= gbest · (1 − 40u)``,
    the product rounded to the float of unit roundoff ``u`` (``roundoff``) as the library
    computes it in that dtype.
    """
    q = np.asarray(quality, dtype=np.float64)
    n_a, n_g = q.shape
    usable = np.ones(n_g, bool) if usable is None else np.asarray(usable, bool)
    out = np.full(n_a, BACKGROUND, dtype=np.int64)
    best_gt = np.full(n_a, -1)
    for a in range(n_a):
        best, arg = -math.inf, -1
        for g in range(n_g):
            if usable[g] and q[a, g] > best:  # strict: the first maximum wins ties
                best, arg = q[a, g], g
        best_gt[a] = arg
        if arg < 0 or best < low:
            out[a] = BACKGROUND
        elif best < high:
            out[a] = IGNORE
        else:
            out[a] = arg
    if allow_low_quality_matches:
        for g in range(n_g):
            if not usable[g] or n_a == 0:
                continue
            gbest = max(q[a, g] for a in range(n_a))
            if gbest <= 0:
                continue
            bound = gbest - tie_tolerance
            if tie_rule == "rounding":
                dtype = np.float32 if roundoff == 2.0**-24 else np.float64
                bound = min(bound, float(dtype(gbest) * dtype(1 - 40 * roundoff)))
            for a in range(n_a):
                if q[a, g] > 0 and q[a, g] >= bound:
                    out[a] = best_gt[a]
    return out


def match_anchors(anchors, gts, valid=None, crowd=None, high=0.5, low=0.4,
                  allow_low_quality_matches=True, crowd_ioa=0.5, tie_tolerance=0.0):
    n_g = len(gts)
    valid = np.ones(n_g, bool) if valid is None else np.asarray(valid, bool)
    crowd = np.zeros(n_g, bool) if crowd is None else np.asarray(crowd, bool)
    gts = np.asarray(gts, dtype=np.float64).reshape(n_g, 4)
    usable = valid & ~crowd
    out = match(iou(anchors, gts), high, low, allow_low_quality_matches, tie_tolerance, usable)
    overlap = ioa(anchors, gts)
    for a in range(len(anchors)):
        if out[a] >= 0:
            continue
        for g in range(n_g):
            if valid[g] and crowd[g] and overlap[a, g] > 0 and overlap[a, g] >= crowd_ioa:
                out[a] = IGNORE
    return out


def hard_negative_mining(loss, labels, neg_pos_ratio=3.0, min_negatives=0) -> np.ndarray:
    """One image: all positives plus the k highest-loss negatives (ties: lower index)."""
    loss = np.asarray(loss, dtype=np.float64)
    labels = np.asarray(labels)
    keep = labels >= 0
    n_pos = int(keep.sum())
    negatives = [i for i in range(len(labels)) if labels[i] == BACKGROUND]
    k = max(math.floor(neg_pos_ratio * n_pos), min_negatives)
    negatives.sort(key=lambda i: (-loss[i], i))
    for i in negatives[:k]:
        keep[i] = True
    return keep
