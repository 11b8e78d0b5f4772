"""The Faster R-CNN head loss's internals: the head's shape checks, proposal matching
(torchvision's ``Matcher(fg, bg, allow_low_quality_matches=False)`` on the matcher's own
pinned IoU, with a first-maximum that XLA:CPU runs faster than an ``argmax``), the
fixed-capacity row list of a drawn sample, and ``fastrcnn_loss``'s sums.

Used by :mod:`focal_array.rcnn`; see :func:`focal_array.rcnn.rcnn_head_loss`.
"""

from __future__ import annotations

from typing import Any

from . import _validate as v
from ._box_common import _coords, quiet
from ._detection_boxes import box_loss_per_anchor
from ._match_iou import _gt_major_quality, _scaled
from ._matching import (
    BACKGROUND,
    _check_thresholds,
    _classify,
    _first_max_gt,
    _index_dtype,
    _prepare_match_inputs,
    _run,
)
from ._namespace import (
    compute_dtype,
    constant,
    device_of,
    is_jax,
)
from ._typing import Number
from .box_coder import _encode_deltas
from .boxes import _batch_shape
from .losses import softmax_cross_entropy, softmax_focal_loss
from .matcher import _check_labels

Array = Any


def _check_head(xp: Any, class_logits: Any, box_deltas: Any, proposals: Any
                ) -> tuple[int, int, int]:
    v.check_floating(xp, class_logits, "class_logits")
    v.check_floating(xp, box_deltas, "box_deltas")
    v.check_floating(xp, proposals, "proposals")
    if class_logits.ndim != 3:
        raise ValueError("class_logits must have shape (B, N, C + 1), got "
                         f"{tuple(class_logits.shape)}")
    b, n, k = class_logits.shape
    if k < 2:
        raise ValueError("class_logits needs C + 1 >= 2 classes (index 0 = background), got "
                         f"{k}")
    shapes = ((b, n, k * 4), (b, n, k, 4), (b, n, 4))
    if tuple(box_deltas.shape) not in shapes:
        raise ValueError(
            f"box_deltas must have shape {shapes[0]} (torchvision's box_predictor), "
            f"{shapes[1]} or, class-agnostic, {shapes[2]}, to match class_logits "
            f"{tuple(class_logits.shape)}; got {tuple(box_deltas.shape)}")
    v.check_same_shape("(B, N, 4) from class_logits", (b, n, 4), "proposals", proposals.shape,
                       hint="pass the boxes the head scored, gts appended "
                            "(append_gt_proposals)")
    return b, n, k


def _class_deltas(deltas: Array, labels: Array, k: int, xp: Any) -> Array:
    """Each proposal's ``(B, N, 4)`` deltas of its label's class (class 0 where not
    foreground); class-agnostic deltas as they are."""
    b, n = deltas.shape[0], deltas.shape[1]
    if deltas.ndim == 3 and deltas.shape[-1] == 4:
        return deltas
    per_class = xp.reshape(deltas, (b, n, k, 4))
    cls = xp.where(labels >= xp.asarray(1, dtype=labels.dtype, device=device_of(labels)),
                   labels, xp.zeros_like(labels))
    index = xp.broadcast_to(cls[..., None, None], (b, n, 1, 4))
    return xp.take_along_axis(per_class, index, axis=-2)[..., 0, :]


def _match_proposals(proposals: Array, gt_boxes: Array, gt_labels: Array, gt_valid: Any,
                     proposal_valid: Any, *, high: Number, low: Number,
                     weights: tuple[float, ...], num_classes: int, xp: Any
                     ) -> tuple[Array, Array]:
    """``assign_targets(..., high, low, allow_low_quality_matches=False)``'s matches as
    R-CNN class targets (``gt_labels + 1`` foreground, 0 background, -1 ignored or
    invalid, in the index dtype) and its box targets, checked as ``assign_targets`` checks
    its inputs (eagerly: boxes, and real gts' labels in [0, num_classes))."""
    v.check_floating(xp, gt_boxes, "gt_boxes")
    high, low = _check_thresholds(high, low)
    v.check_integer(xp, gt_labels, "gt_labels")
    anchors, gts, valid, _ = _prepare_match_inputs(proposals, gt_boxes, gt_valid, None, xp)
    v.check_same_shape("gt_boxes.shape[:-1]", gts.shape[:-1], "gt_labels", gt_labels.shape)
    _check_labels(xp, gt_labels, valid, num_classes)
    return _run(_match_kernel, xp, anchors, gts, gt_labels, valid, proposal_valid, high=high,
                low=low, weights=weights)


def _first_max(q: Any, best: Any, scratch: tuple[Any, ...], xp: Any) -> Any:
    """The first gt index at the maximum of a gt-major ``(..., G, A)`` IoU (``argmax`` over
    the gts, ties to the lowest index, as ``torch.max``).

    On JAX as the smallest index whose IoU equals the column's maximum: XLA:CPU runs an
    ``argmax`` over an outer axis as a variadic (value, index) reduction, about 4x this
    plain integer ``min`` over the same matrix. A NaN column (areas overflowing the dtype)
    gets G - 1; its maximum is NaN, which matches nothing, so the index is never read.
    Elsewhere the matcher's own first-maximum.
    """
    if not is_jax(xp):
        return _first_max_gt(q, best, scratch[0] if scratch else None, xp)
    n = q.shape[-2]
    index = _index_dtype(xp, q)
    gt = xp.arange(n, dtype=index, device=device_of(q))[:, None]
    first = xp.min(xp.where(q == best[..., None, :], gt, xp.asarray(n, dtype=index)), axis=-2)
    return xp.minimum(first, xp.asarray(n - 1, dtype=index))


def _match_kernel(anchors: Any, gts: Any, gt_labels: Any, valid: Any, proposal_valid: Any, *,
                  high: float, low: float, weights: tuple[float, ...], xp: Any
                  ) -> tuple[Any, Any]:
    """``_assign_impl`` without low-quality matches or crowds: the matcher's own gt-major
    IoU (the same floats, so the same matches), its maximum and first maximum over the gts,
    the labels and the encoded box targets of the positives."""
    # an anchor's area may overflow to inf (IoU 0, as in match_anchors): no NumPy warning
    with quiet(xp):
        return _match_body(anchors, gts, gt_labels, valid, proposal_valid, high=high,
                           low=low, weights=weights, xp=xp)


def _match_body(anchors: Any, gts: Any, gt_labels: Any, valid: Any, proposal_valid: Any, *,
                high: float, low: float, weights: tuple[float, ...], xp: Any
                ) -> tuple[Any, Any]:
    batch = _batch_shape("anchors", anchors.shape[:-2], "gt_boxes", gts.shape[:-2])
    n_anchors, n_gts = anchors.shape[-2], gts.shape[-2]
    index = _index_dtype(xp, anchors)
    dev = device_of(anchors)
    c = lambda value: xp.asarray(value, dtype=index, device=dev)  # noqa: E731
    if n_gts == 0:
        labels = xp.zeros((*batch, n_anchors), dtype=index, device=dev)
        targets = xp.zeros((*batch, n_anchors, 4), dtype=anchors.dtype, device=dev)
    else:
        if valid is not None:  # as _match_anchors_body: padding becomes an empty box
            gts = xp.where(valid[..., None], gts, constant(xp, 0.0, gts))
        scaled_anchors, scaled_gts = _scaled(anchors, gts, xp)
        iou, _, scratch = _gt_major_quality(scaled_anchors, scaled_gts, valid, None, 0.5, xp)
        best = xp.max(iou, axis=-2)
        matched = _classify(best, _first_max(iou, best, scratch, xp), high, low, xp)
        matched = xp.astype(matched, index)
        positive = matched >= c(0)
        arg = xp.where(positive, matched, c(0))
        # gather per image along the gt axis (no flattening across images: a batch sharded
        # over devices stays sharded), as assign_targets
        boxes_b = xp.broadcast_to(gts, (*batch, n_gts, 4))
        labels_b = xp.astype(xp.broadcast_to(gt_labels, (*batch, n_gts)), index)
        matched_boxes = xp.take_along_axis(
            boxes_b, xp.broadcast_to(arg[..., None], (*batch, n_anchors, 4)), axis=-2)
        matched_labels = xp.take_along_axis(labels_b, arg, axis=-1)
        labels = xp.where(positive, matched_labels + c(1),
                          xp.where(matched == c(BACKGROUND), c(0), c(-1)))
        anchors_b = xp.broadcast_to(anchors, (*batch, n_anchors, 4))
        ax1, ay1, ax2, ay2 = _coords(anchors_b)
        gx1, gy1, gx2, gy2 = _coords(matched_boxes)
        usable = positive & (ax2 > ax1) & (ay2 > ay1) & (gx2 > gx1) & (gy2 > gy1)
        unit = xp.asarray([0.0, 0.0, 1.0, 1.0], dtype=anchors.dtype, device=dev)
        deltas = _encode_deltas(xp.where(usable[..., None], anchors_b, unit),
                                xp.where(usable[..., None], matched_boxes, unit),
                                weights, xp, saturate=True)
        targets = xp.where(positive[..., None], deltas, constant(xp, 0.0, anchors))
    if proposal_valid is not None:
        labels = xp.where(proposal_valid, labels, c(-1))
    return labels, targets


def _compact(mask: Array, capacity: int) -> tuple[Array, Array]:
    """JAX: the ``(B, capacity)`` ascending indices of a ``(B, N)`` mask's True entries
    (at most ``capacity`` per row) and their validity; unused slots index 0.

    Slot ``j`` holds the first proposal whose running count of True entries reaches
    ``j + 1``: a binary search of the (non-decreasing) running count, log2(N) gathers of
    ``capacity`` values per image, where a sort or scatter would touch all N.
    """
    import jax
    import jax.numpy as jnp

    count = jnp.cumsum(mask.astype(jnp.int32), axis=-1)
    slots = jnp.arange(1, capacity + 1, dtype=jnp.int32)
    find = jax.vmap(lambda row: jnp.searchsorted(row, slots, side="left"))
    rows = find(jnp.reshape(count, (-1, count.shape[-1]))).reshape(
        (*count.shape[:-1], capacity))
    valid = slots <= count[..., -1:]
    return jnp.where(valid, rows, 0).astype(jnp.int32), valid


def _class_deltas_at(deltas: Array, rows: Array, labels: Array, k: int, xp: Any) -> Array:
    """:func:`_class_deltas` of the proposals ``rows`` (``(B, S)``, their labels
    ``labels``): ``(B, S, 4)``, gathered straight from the class-specific deltas."""
    b, n = deltas.shape[0], deltas.shape[1]
    if deltas.ndim == 3 and deltas.shape[-1] == 4:
        return xp.take_along_axis(deltas, rows[..., None], axis=-2)
    cls = xp.where(labels >= xp.asarray(1, dtype=labels.dtype), labels,
                   xp.zeros_like(labels))
    flat = xp.reshape(deltas, (b, n * k, 4))
    where = xp.astype(rows, cls.dtype) * xp.asarray(k, dtype=cls.dtype) + cls
    return xp.take_along_axis(flat, where[..., None], axis=-2)


def _head_losses(class_logits: Array, box_deltas: Array, labels: Array, sampled: Array,
                 box_targets: Array, *, k: int, loss: str, alpha: Any, gamma: float,
                 beta: float, box_weight: float, xp: Any,
                 capacity: int | None = None) -> dict[str, Array]:
    """fastrcnn_loss's sums over a sample mask, normalized by the sampled count.

    ``capacity``: at most that many proposals are sampled per image (a drawn sample). On
    JAX the sums then run over the gathered sampled rows only (:func:`_compact`), which
    reads a quarter of the logits at torchvision's sizes and skips the softmax of the
    unsampled proposals; elsewhere, and for a caller's sample, over the mask.
    """
    dtype = compute_dtype(xp, class_logits.dtype)
    x = xp.astype(class_logits, dtype)
    minus_one = xp.asarray(-1, dtype=labels.dtype, device=device_of(labels))
    foreground = sampled & (labels >= xp.asarray(1, dtype=labels.dtype,
                                                 device=device_of(labels)))
    targets = xp.astype(box_targets, dtype)
    n = labels.shape[-1]
    if is_jax(xp) and capacity is not None and capacity < n:
        rows, slot_valid = _compact(sampled, capacity)
        x = xp.take_along_axis(x, rows[..., None], axis=-2)
        labels_s = xp.take_along_axis(labels, rows, axis=-1)
        in_loss = xp.where(slot_valid, labels_s, minus_one)
        fg_s = slot_valid & (labels_s >= xp.asarray(1, dtype=labels.dtype))
        deltas = _class_deltas_at(xp.astype(box_deltas, dtype), rows, labels_s, k, xp)
        targets = xp.take_along_axis(targets, rows[..., None], axis=-2)
    else:
        in_loss = xp.where(sampled, labels, minus_one)  # unsampled proposals are ignored
        fg_s = foreground
        deltas = _class_deltas(xp.astype(box_deltas, dtype), labels, k, xp)
    if loss == "softmax_focal":
        cls_sum = softmax_focal_loss(x, in_loss, alpha=alpha, gamma=gamma, reduction="sum")
    else:
        cls_sum = softmax_cross_entropy(x, in_loss, alpha=alpha, reduction="sum")
    per_box = box_loss_per_anchor("smooth_l1", "deltas", deltas, targets, None, beta=beta,
                                  weights=(1.0, 1.0, 1.0, 1.0), xp=xp)
    box_sum = xp.sum(xp.where(fg_s, per_box, constant(xp, 0.0, per_box)))

    num_sampled = xp.sum(xp.astype(sampled, dtype))
    num_fg = xp.sum(xp.astype(foreground, dtype))
    denom = xp.maximum(num_sampled, constant(xp, 1.0, num_sampled))
    cls_total = xp.astype(cls_sum, dtype) / denom
    box_total = box_sum / denom
    return {
        "classification": cls_total,
        "box_regression": box_total,
        "total": cls_total + constant(xp, box_weight, cls_total) * box_total,
        "num_foreground": num_fg,
        "num_sampled": num_sampled,
        "labels": labels,
        "sampled": sampled,
    }
