"""Per-anchor targets from a match: the gt's class, its box, and the box's encoding.

Shared by :func:`focal_array.matcher.assign_targets` (IoU matching) and the detection loss
(whichever assigner produced the match), so every assigner's targets are built by the same
gathers and the same well-posed encoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from ._box_common import _coords
from ._matching import _int_constant
from ._namespace import constant, device_of
from .box_coder import _encode_deltas

__all__ = ["MatchTargets", "encode_ltrb", "targets_from_matched"]


class MatchTargets(NamedTuple):
    labels: Any  #: (batch..., A) gt class where matched, else the match code
    deltas: Any  #: (batch..., A, 4) encoded matched box, 0 where not positive
    boxes: Any  #: (batch..., A, 4) matched gt box where positive, else the anchor itself
    positive: Any  #: (batch..., A) bool, matched >= 0


def targets_from_matched(anchors: Any, gts: Any, gt_labels: Any, matched: Any, *,
                         weights: Sequence[float] | None, xp: Any) -> MatchTargets:
    """Gather each positive anchor's gt (per image, along the gt axis) and encode it.

    ``weights=None`` skips the delta encoding (``deltas`` is then None).
    """
    label_dtype = gt_labels.dtype
    if xp.isdtype(label_dtype, "unsigned integer"):
        label_dtype = matched.dtype
    batch, n_anchors, n_gts = matched.shape[:-1], matched.shape[-1], gts.shape[-2]
    zero_f = constant(xp, 0.0, anchors)
    anchors_b = xp.broadcast_to(anchors, (*batch, n_anchors, 4))
    positive = matched >= _int_constant(xp, 0, matched)
    if n_gts == 0:
        deltas = None if weights is None else xp.zeros(
            (*batch, n_anchors, 4), dtype=anchors.dtype, device=device_of(anchors))
        return MatchTargets(xp.astype(matched, label_dtype), deltas, anchors_b, positive)

    index = xp.where(positive, matched, _int_constant(xp, 0, matched))
    # gather per image along the gt axis (no flattening across images, so a batch sharded
    # over devices stays sharded)
    boxes_b = xp.broadcast_to(gts, (*batch, n_gts, 4))
    labels_b = xp.broadcast_to(gt_labels, (*batch, n_gts))
    box_index = xp.broadcast_to(index[..., None], (*batch, n_anchors, 4))
    matched_boxes = xp.take_along_axis(boxes_b, box_index, axis=-2)
    matched_labels = xp.take_along_axis(labels_b, index, axis=-1)
    labels = xp.where(positive, xp.astype(matched_labels, label_dtype),
                      xp.astype(matched, label_dtype))
    # padding rows gathered for non-positive anchors may hold anything: the anchor stands in
    boxes = xp.where(positive[..., None], matched_boxes, anchors_b)
    if weights is None:
        return MatchTargets(labels, None, boxes, positive)

    # encode only well-posed pairs; others get unit boxes (deltas exactly 0), so no
    # division by zero or log(0) happens even for degenerate non-positive anchors
    ax1, ay1, ax2, ay2 = _coords(anchors_b)
    gx1, gy1, gx2, gy2 = _coords(matched_boxes)
    usable = positive & (ax2 > ax1) & (ay2 > ay1) & (gx2 > gx1) & (gy2 > gy1)
    unit = xp.asarray([0.0, 0.0, 1.0, 1.0], dtype=anchors.dtype, device=device_of(anchors))
    # saturated: a positive pair's exact delta beyond the dtype's range (a box ~1e38
    # times its anchor) is +-max, never inf
    deltas = _encode_deltas(xp.where(usable[..., None], anchors_b, unit),
                            xp.where(usable[..., None], matched_boxes, unit),
                            weights, xp, saturate=True)
    return MatchTargets(labels, xp.where(positive[..., None], deltas, zero_f), boxes,
                        positive)


def _centre_and_size(anchors: Any, xp: Any) -> tuple[Any, Any, Any, Any]:
    x1, y1, x2, y2 = _coords(anchors)
    half = constant(xp, 0.5, anchors)
    return half * x1 + half * x2, half * y1 + half * y2, x2 - x1, y2 - y1


def encode_ltrb(anchors: Any, boxes: Any, *, xp: Any) -> Any:
    """Distances from each anchor's centre to the box's left, top, right and bottom sides,
    in units of the anchor's width / height (torchvision's ``BoxLinearCoder`` with
    ``normalize_by_size=True``, FCOS); 0 where the anchor has no area."""
    cx, cy, w, h = _centre_and_size(anchors, xp)
    x1, y1, x2, y2 = _coords(boxes)
    zero, one = constant(xp, 0.0, anchors), constant(xp, 1.0, anchors)
    ok = (w > zero) & (h > zero)
    w, h = xp.where(ok, w, one), xp.where(ok, h, one)
    out = xp.stack(((cx - x1) / w, (cy - y1) / h, (x2 - cx) / w, (y2 - cy) / h), axis=-1)
    return xp.where(ok[..., None], out, zero)


def decode_ltrb(anchors: Any, codes: Any, *, xp: Any) -> Any:
    """Inverse of :func:`encode_ltrb`: ``xyxy`` boxes from scaled side distances."""
    cx, cy, w, h = _centre_and_size(anchors, xp)
    return xp.stack((cx - codes[..., 0] * w, cy - codes[..., 1] * h,
                     cx + codes[..., 2] * w, cy + codes[..., 3] * h), axis=-1)
