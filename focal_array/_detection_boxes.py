"""Per-anchor box-regression losses of the detection loss, and the box codings they read.

Two codings of the regression outputs: ``"deltas"`` (Faster R-CNN ``[dx, dy, dw, dh]``,
:func:`focal_array.boxes.encode`) and ``"ltrb"`` (distances from the anchor's centre to
the four sides in units of the anchor's size: torchvision's FCOS ``BoxLinearCoder``, and
YOLOv8's distances in stride units when the anchors are stride-sized squares).
"""

from __future__ import annotations

import math
from typing import Any

from ._box_common import _safe_divide
from ._match_targets import decode_ltrb
from ._namespace import constant, stop_gradient
from .box_coder import decode

__all__ = ["BOX_CODINGS", "BOX_LOSSES", "box_loss_per_anchor", "decode_boxes", "paired_iou"]

#: ``box_loss=`` choices.
BOX_LOSSES = ("smooth_l1", "l1", "giou", "ciou")
#: ``box_coding=`` choices.
BOX_CODINGS = ("deltas", "ltrb")

_CIOU_EPS = 1e-7  # ultralytics' bbox_iou default


def decode_boxes(coding: str, anchors: Any, codes: Any, *, weights: tuple[float, ...],
                 xp: Any) -> Any:
    """``xyxy`` boxes from regression outputs in the given coding."""
    if coding == "ltrb":
        return decode_ltrb(anchors, codes, xp=xp)
    return decode(anchors, codes, weights=weights)


def box_loss_per_anchor(kind: str, coding: str, codes: Any, targets: Any, anchors: Any, *,
                        beta: float, weights: tuple[float, ...], xp: Any) -> Any:
    """Per-anchor box loss ``(B, A)`` before masking to positives."""
    if kind in ("giou", "ciou"):
        pred = decode_boxes(coding, anchors, codes, weights=weights, xp=xp)
        gt = decode_boxes(coding, anchors, targets, weights=weights, xp=xp)
        overlap = _paired_giou(pred, gt, xp=xp) if kind == "giou" else _paired_ciou(pred, gt,
                                                                                    xp=xp)
        return 1.0 - overlap
    diff = xp.abs(codes - targets)
    if kind == "l1" or beta == 0.0:
        return xp.sum(diff, axis=-1)
    quad = 0.5 * diff * diff / beta
    return xp.sum(xp.where(diff < constant(xp, beta, diff), quad, diff - 0.5 * beta), axis=-1)


def _inter_union(a: Any, b: Any, xp: Any) -> tuple[Any, Any]:
    zero = constant(xp, 0.0, a)
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    iw = xp.maximum(xp.minimum(a[..., 2], b[..., 2]) - xp.maximum(a[..., 0], b[..., 0]), zero)
    ih = xp.maximum(xp.minimum(a[..., 3], b[..., 3]) - xp.maximum(a[..., 1], b[..., 1]), zero)
    inter = iw * ih
    return inter, area_a + area_b - inter


def paired_iou(a: Any, b: Any, *, xp: Any) -> Any:
    """IoU of corresponding boxes ``(…, 4) × (…, 4) → (…)``; 0 for an empty union."""
    inter, union = _inter_union(a, b, xp)
    return _safe_divide(inter, union, xp)


def _paired_giou(a: Any, b: Any, *, xp: Any) -> Any:
    """GIoU of corresponding boxes; 0-area pairs give finite values."""
    inter, union = _inter_union(a, b, xp)
    cw = xp.maximum(a[..., 2], b[..., 2]) - xp.minimum(a[..., 0], b[..., 0])
    ch = xp.maximum(a[..., 3], b[..., 3]) - xp.minimum(a[..., 1], b[..., 1])
    hull = cw * ch
    return _safe_divide(inter, union, xp) - _safe_divide(hull - union, hull, xp)


def _paired_ciou(pred: Any, gt: Any, *, xp: Any) -> Any:
    """CIoU of corresponding boxes as YOLOv8's box loss computes it: ultralytics'
    ``bbox_iou(pred, target, xywh=False, CIoU=True)`` (eps 1e-7 on the heights, the union
    and the enclosing diagonal; the aspect term's weight α taken without gradient)."""
    eps = constant(xp, _CIOU_EPS, pred)
    zero = constant(xp, 0.0, pred)
    w1, h1 = pred[..., 2] - pred[..., 0], pred[..., 3] - pred[..., 1] + eps
    w2, h2 = gt[..., 2] - gt[..., 0], gt[..., 3] - gt[..., 1] + eps
    iw = xp.maximum(xp.minimum(pred[..., 2], gt[..., 2]) - xp.maximum(pred[..., 0], gt[..., 0]),
                    zero)
    ih = xp.maximum(xp.minimum(pred[..., 3], gt[..., 3]) - xp.maximum(pred[..., 1], gt[..., 1]),
                    zero)
    inter = iw * ih
    iou = inter / (w1 * h1 + w2 * h2 - inter + eps)
    cw = xp.maximum(pred[..., 2], gt[..., 2]) - xp.minimum(pred[..., 0], gt[..., 0])
    ch = xp.maximum(pred[..., 3], gt[..., 3]) - xp.minimum(pred[..., 1], gt[..., 1])
    c2 = cw * cw + ch * ch + eps
    dx = gt[..., 0] + gt[..., 2] - pred[..., 0] - pred[..., 2]
    dy = gt[..., 1] + gt[..., 3] - pred[..., 1] - pred[..., 3]
    rho2 = (dx * dx + dy * dy) / constant(xp, 4.0, pred)
    dv = xp.atan(w2 / h2) - xp.atan(w1 / h1)
    v = constant(xp, 4 / math.pi**2, pred) * (dv * dv)
    alpha = stop_gradient(xp, v / (v - iou + constant(xp, 1 + _CIOU_EPS, pred)))
    return iou - (rho2 / c2 + v * alpha)
