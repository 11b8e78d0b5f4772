"""TOOD's task-aligned assigner (TAL) as YOLOv8 uses it: batched, static-shaped, jittable.

The public function is re-exported by :mod:`focal_array.assigners`; its docstring lists
every choice where ultralytics and mmdetection differ.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Literal

from ._box_common import check_boxes
from ._matching import BACKGROUND, _check_mask, _index_dtype, _run
from ._namespace import (
    compute_dtype,
    constant,
    device_of,
    is_jax,
    is_numpy,
    is_torch,
    namespace,
    pinned,
    stop_gradient,
)
from ._typing import ArrayT, Integer, IouKind, Number
from ._validate import (
    check_choice,
    check_floating,
    check_integer,
    check_number,
    eager_check,
    first_true_index,
)
from .matcher import _check_labels

__all__ = ["task_aligned_assign"]

_IOU_KINDS = ("iou", "ciou")
_CONTESTED = ("selecting", "all")
_TOPK_FROM = ("candidates", "anchors")
_CIOU_EPS = 1e-7  # ultralytics' bbox_iou default


# --------------------------------------------------------------------------- geometry


def _corners(boxes: Any, axis: int) -> list[Any]:
    """The 4 coordinates of ``(..., N, 4)`` boxes, as ``(..., N, 1)`` (axis -1) or
    ``(..., 1, N)`` (axis -2) for a ``(..., G, A)`` pairing."""
    return [boxes[..., :, None, k] if axis == -1 else boxes[..., None, :, k] for k in range(4)]


def _iou(gts: Any, pred: Any, xp: Any) -> Any:
    """Exact IoU of every gt ``(..., G, 4)`` with every prediction ``(..., A, 4)``."""
    (gx1, gy1, gx2, gy2), (px1, py1, px2, py2) = _corners(gts, -1), _corners(pred, -2)
    zero = constant(xp, 0.0, gts)
    w = xp.maximum(xp.minimum(gx2, px2) - xp.maximum(gx1, px1), zero)
    h = xp.maximum(xp.minimum(gy2, py2) - xp.maximum(gy1, py1), zero)
    inter = pinned(w * h, xp)
    area_g = pinned(xp.maximum(gx2 - gx1, zero) * xp.maximum(gy2 - gy1, zero), xp)
    area_p = pinned(xp.maximum(px2 - px1, zero) * xp.maximum(py2 - py1, zero), xp)
    union = area_g + area_p - inter
    positive = union > zero
    return xp.where(positive, inter / xp.where(positive, union, constant(xp, 1.0, union)),
                    zero)


def _ciou(gts: Any, pred: Any, xp: Any) -> Any:
    """ultralytics' ``bbox_iou(gt, pred, xywh=False, CIoU=True).clamp_(0)``, pairwise."""
    (gx1, gy1, gx2, gy2), (px1, py1, px2, py2) = _corners(gts, -1), _corners(pred, -2)
    eps, zero = constant(xp, _CIOU_EPS, gts), constant(xp, 0.0, gts)
    w1, h1 = gx2 - gx1, gy2 - gy1 + eps
    w2, h2 = px2 - px1, py2 - py1 + eps
    inter = pinned(xp.maximum(xp.minimum(gx2, px2) - xp.maximum(gx1, px1), zero)
                   * xp.maximum(xp.minimum(gy2, py2) - xp.maximum(gy1, py1), zero), xp)
    union = pinned(w1 * h1, xp) + pinned(w2 * h2, xp) - inter + eps
    iou = inter / union
    cw = xp.maximum(gx2, px2) - xp.minimum(gx1, px1)
    ch = xp.maximum(gy2, py2) - xp.minimum(gy1, py1)
    c2 = pinned(cw * cw, xp) + pinned(ch * ch, xp) + eps
    dx, dy = px1 + px2 - gx1 - gx2, py1 + py2 - gy1 - gy2
    rho2 = (pinned(dx * dx, xp) + pinned(dy * dy, xp)) / constant(xp, 4.0, gts)
    dv = xp.atan(w2 / h2) - xp.atan(w1 / h1)
    v = constant(xp, 4 / math.pi**2, gts) * (dv * dv)
    alpha = v / (v - iou + constant(xp, 1 + _CIOU_EPS, gts))
    return xp.maximum(iou - (rho2 / c2 + pinned(v * alpha, xp)), zero)


# --------------------------------------------------------------------------- helpers


def _gather_rows(table: Any, index: Any, xp: Any) -> Any:
    """``table[..., index[..., j], :]``: rows of ``(..., G, K)`` by ``(..., J)`` indices in
    ``[0, G)`` → ``(..., J, K)``, as one flat ``take`` (static shapes, no host sync)."""
    batch, (g, k), j = index.shape[:-1], table.shape[-2:], index.shape[-1]
    n = math.prod(batch)
    offsets = xp.arange(n, dtype=index.dtype, device=device_of(index)) * g
    flat = xp.reshape(index, (n, j)) + offsets[:, None]
    rows = xp.take(xp.reshape(table, (n * g, k)), xp.reshape(flat, (n * j,)), axis=0)
    return xp.reshape(rows, (*batch, j, k))


def _kth_largest(key: Any, k: int, xp: Any) -> Any:
    """The ``k``-th largest value along the last axis, kept as a length-1 axis."""
    if is_torch(xp):
        import torch

        return torch.topk(key, k, dim=-1).values[..., k - 1:k]
    if is_numpy(xp):
        import numpy

        n = key.shape[-1]
        return numpy.partition(key, n - k, axis=-1)[..., n - k:n - k + 1]
    return xp.sort(key, axis=-1, descending=True)[..., k - 1:k]


def _top_k_mask(key: Any, k: int, xp: Any) -> Any:
    """Boolean mask of the ``k`` largest entries along the last axis, ties to the lowest
    index: every entry above the k-th value, then the first tied ones up to ``k``.

    JAX: ``lax.top_k``'s indices (equal values come lower index first, by its contract)
    as a fused any-reduction. Taking the k-th value from its output instead makes
    XLA:CPU sort every row (2.1 s against 21 ms for 8 × 50 × 21,950 alignments), as for
    ATSS's nearest anchors."""
    if is_jax(xp):
        import jax

        order = jax.lax.top_k(key, k)[1]
        index = xp.arange(key.shape[-1], dtype=order.dtype, device=device_of(order))
        return xp.any(order[..., :, None] == index, axis=-2)
    kth = _kth_largest(key, k, xp)
    above = key > kth
    tied = key == kth
    index = _index_dtype(xp, key)
    room = k - xp.sum(xp.astype(above, index), axis=-1, keepdims=True)
    rank = xp.cumulative_sum(xp.astype(tied, index), axis=-1)
    return above | (tied & (rank <= room))


# --------------------------------------------------------------------------- kernel


def _tal_kernel(scores: Any, pred: Any, points: Any, labels: Any, gts: Any, valid: Any, *,
                topk: int, alpha: float, beta: float, iou: str, contested: str,
                topk_from: str, positive_only: bool, center_eps: float, eps: float,
                xp: Any) -> tuple[Any, ...]:
    n_anchors, n_classes, n_gts = scores.shape[-2], scores.shape[-1], gts.shape[-2]
    zero = constant(xp, 0.0, scores)
    gts = xp.where(valid[..., None], gts, zero)  # padding may hold anything
    labels = xp.clip(xp.where(valid, labels, xp.zeros_like(labels)), 0, n_classes - 1)
    # candidates: the anchor point strictly inside the gt, (..., G, A)
    gx1, gy1, gx2, gy2 = _corners(gts, -1)
    px, py = points[:, 0], points[:, 1]
    inside = xp.minimum(xp.minimum(px - gx1, py - gy1), xp.minimum(gx2 - px, gy2 - py))
    cand = (inside > constant(xp, center_eps, scores)) & valid[..., :, None]
    overlap = (_ciou if iou == "ciou" else _iou)(gts, pred, xp)
    overlap = xp.where(cand, overlap, zero)
    index = _index_dtype(xp, scores)
    s = _gather_rows(xp.matrix_transpose(scores), xp.astype(labels, index), xp)  # (..., G, A)
    s = xp.where(cand, s, zero)
    t = xp.pow(s, constant(xp, alpha, s)) * xp.pow(overlap, constant(xp, beta, s))
    key = xp.where(cand, t, constant(xp, -1.0, t)) if topk_from == "candidates" else t
    pos = _top_k_mask(key, min(topk, n_anchors), xp) & cand
    if positive_only:
        pos = pos & (t > zero)
    # one gt per anchor
    n_sel = xp.sum(xp.astype(pos, index), axis=-2)
    if contested == "selecting":
        claim = xp.argmax(xp.where(pos, overlap, constant(xp, -1.0, overlap)), axis=-2)
    else:
        claim = xp.where(n_sel > 1, xp.argmax(overlap, axis=-2),
                         xp.argmax(xp.astype(pos, t.dtype), axis=-2))
    claim = xp.astype(claim, index)
    matched = xp.where(n_sel > 0, claim, xp.full_like(claim, BACKGROUND))
    # targets: t scaled per gt so that its largest equals the gt's largest overlap
    own = matched[..., None, :] == xp.arange(n_gts, dtype=index, device=device_of(claim))[:, None]
    t_own, q_own = xp.where(own, t, zero), xp.where(own, overlap, zero)
    best_t = xp.max(t_own, axis=-1, keepdims=True)
    best_q = xp.max(q_own, axis=-1, keepdims=True)
    norm = xp.max(t_own * best_q / (best_t + constant(xp, eps, t)), axis=-2)
    fg = matched >= 0
    safe = xp.where(fg, matched, xp.zeros_like(matched))
    label = _gather_rows(xp.astype(labels, index)[..., None], safe, xp)[..., 0]
    label = xp.where(fg, label, xp.full_like(label, BACKGROUND))
    classes = xp.arange(n_classes, dtype=index, device=device_of(label))
    target_scores = xp.where(label[..., None] == classes, norm[..., None], zero)
    boxes = xp.where(fg[..., None], _gather_rows(gts, safe, xp), zero)
    return (matched, label, target_scores, boxes, xp.max(t_own, axis=-2),
            xp.max(q_own, axis=-2))


# --------------------------------------------------------------------------- checks


def _check_shapes(scores: Any, pred: Any, points: Any, labels: Any, gts: Any) -> None:
    if scores.ndim < 2 or pred.ndim < 2 or gts.ndim < 2 or pred.shape[-1] != 4 \
            or gts.shape[-1] != 4 or points.ndim != 2 or points.shape[-1] != 2:
        raise ValueError(
            "expected scores (..., A, C), pred_boxes (..., A, 4), anchor_points (A, 2), "
            f"gt_labels (..., G), gt_boxes (..., G, 4); got {tuple(scores.shape)}, "
            f"{tuple(pred.shape)}, {tuple(points.shape)}, {tuple(labels.shape)}, "
            f"{tuple(gts.shape)}"
        )
    batch, n_anchors = tuple(scores.shape[:-2]), scores.shape[-2]
    for name, shape in (("pred_boxes", pred.shape[:-1]), ("gt_boxes", gts.shape[:-2]),
                        ("gt_labels", labels.shape[:-1]), ("anchor_points", points.shape[:1])):
        want = (*batch, n_anchors) if name == "pred_boxes" else (
            (n_anchors,) if name == "anchor_points" else batch)
        if tuple(shape) != want:
            raise ValueError(
                f"{name} has shape {tuple(shape)} where {want} was expected (scores are "
                f"{tuple(scores.shape)}: batch {batch}, {n_anchors} anchors)")
    if tuple(labels.shape) != tuple(gts.shape[:-1]):
        raise ValueError(f"gt_labels must have shape {tuple(gts.shape[:-1])} "
                         f"(gt_boxes.shape[:-1]), got {tuple(labels.shape)}")


def _check_scores(xp: Any, scores: Any) -> None:
    if math.prod(scores.shape) == 0:
        return
    bad = ~((scores >= constant(xp, 0.0, scores)) & (scores <= constant(xp, 1.0, scores)))

    def message() -> str:
        where = first_true_index(xp, bad)
        return (f"scores[{', '.join(map(str, where))}] = {float(scores[where])!r} is not a "
                "probability in [0, 1]; pass post-sigmoid class scores, not logits")

    eager_check([scores], lambda: xp.any(bad), message)


# --------------------------------------------------------------------------- public


def task_aligned_assign(scores: ArrayT, pred_boxes: ArrayT, anchor_points: ArrayT,
                        gt_labels: ArrayT, gt_boxes: ArrayT, /, *,
                        gt_valid: ArrayT | None = None, topk: Integer = 13,
                        alpha: Number = 1.0, beta: Number = 6.0, iou: IouKind = "iou",
                        contested: Literal["selecting", "all"] = "selecting",
                        topk_from: Literal["candidates", "anchors"] = "candidates",
                        positive_only: bool = False, center_eps: Number = 1e-9,
                        eps: Number = 1e-9) -> dict[str, ArrayT]:
    """Assign anchor points to ground truths by TOOD's task alignment (YOLOv8's TAL).

    For gt ``g`` of class ``c_g`` and anchor ``a`` with predicted box ``p_a``:

    .. math::

        t_{ga} = s_{a, c_g}^{\\alpha} \\cdot u_{ga}^{\\beta}, \\qquad
        u_{ga} = \\mathrm{IoU}(g, p_a) \\text{ (or CIoU clamped at 0)}

    over the candidates (anchor point strictly inside ``g``; 0 elsewhere). Each gt takes
    its ``topk`` candidates of largest ``t`` (ties to the lowest anchor index); an anchor
    taken by several gts goes to the one of highest ``u`` among them (``contested``). With
    ``P_g`` the anchors finally assigned to ``g``, a positive ``a ∈ P_g`` gets the target
    score ``t_{ga} · max_{P_g} u / (max_{P_g} t + eps)`` at class ``c_g``: its gt's
    best-aligned anchor gets the gt's best overlap. Every input is treated as a constant
    (stop_gradient): no gradient flows through the assignment.

    Follows ultralytics' ``TaskAlignedAssigner`` (``ultralytics/utils/tal.py``, read at commits
    002217d4 and 6794f38e; CIoU from ``bbox_iou`` in ``ultralytics/utils/metrics.py``) step by
    step, with its choices as options where it and mmdetection's ``TaskAlignedAssigner``
    (``mmdet/models/task_modules/assigners/task_aligned_assigner.py`` with the normalization
    in ``mmdet/models/dense_heads/tood_head.py``) or this library's defaults differ:

    * Candidates: anchor point strictly inside the gt, ``min(x - x1, y - y1, x2 - x, y2 - y) >
      center_eps``; ultralytics ``select_candidates_in_gts`` uses ``eps=1e-9`` (the default),
      mmdetection ``> 0.01`` on the prior's centre.
    * Top-k: ultralytics takes ``torch.topk`` over *all* anchors of an alignment that is 0
      outside the candidates, then drops non-candidates (``mask_topk * mask_in_gts``), so a gt
      with fewer than ``k`` positive-alignment candidates keeps those of its zero-alignment
      candidates that ``torch.topk`` happened to rank among the zeros (its tie order is
      unspecified): ``topk_from="anchors"`` is that rule with ties to the lowest anchor index.
      The default ``"candidates"`` ranks only the gt's candidates, so such a gt keeps up to ``k``
      of them. Both agree whenever ``k`` candidates have a positive alignment. mmdetection
      ranks all anchors by an alignment computed everywhere (not zeroed outside the gt), so
      its k slots can be taken by anchors outside the gt, and keeps only ``t > 0``
      (``positive_only=True``); ultralytics keeps zero-alignment candidates (they get target
      score 0). ``topk`` is capped at the number of anchors (mmdetection; ``torch.topk`` raises).
    * Contested anchors (positive for several gts): the default ``contested="selecting"`` gives
      the anchor to the gt of highest overlap *among the gts that selected it* (mmdetection's
      ``overlaps_inf``). Ultralytics' ``select_highest_overlaps`` takes ``overlaps.argmax(1)``
      over *all* gts (overlap 0 outside a gt's candidates and for padding), so the anchor may go
      to a gt that contains it but did not rank it in its top-k; and where every overlap is 0,
      to gt 0: ``contested="all"``. Ties go to the lowest gt index (``torch.argmax``'s first
      maximum).
    * Target scores: ``t · max IoU / (max t + eps)`` over each gt's final positives (after the
      contest), ``eps=1e-9`` (ultralytics); mmdetection's TOOD head uses ``10e-8`` = 1e-7. The
      "IoU" is the measure of ``iou``: with ``"ciou"`` the clamped CIoU, as in ultralytics.
    * Overlap: YOLOv8's ``iou_calculation`` is ``bbox_iou(gt, pred, xywh=False, CIoU=True)
      .clamp_(0)``: ``iou="ciou"`` (eps 1e-7 added to heights, the union and the enclosing
      diagonal, and to ``1`` in CIoU's alpha). ``iou="iou"`` (default, TOOD's paper and
      mmdetection's ``BboxOverlaps2D``) is the exact IoU, 0 for an empty union (mmdetection
      clamps the union at 1e-6, ultralytics' plain ``bbox_iou`` adds 1e-7).
    * Defaults: the class defaults of ultralytics' ``TaskAlignedAssigner`` and TOOD's paper
      (``topk=13, alpha=1, beta=6``). YOLOv8's loss (``v8DetectionLoss`` in
      ``ultralytics/utils/loss.py``) builds it with ``topk=10, alpha=0.5, beta=6.0``: that
      assigner exactly is ``topk=10, alpha=0.5, iou="ciou", contested="all",
      topk_from="anchors"``.
    * Background: ultralytics returns ``target_gt_idx`` 0 and gt 0's box/label for background
      anchors (masked later by ``fg_mask``); here ``matched`` and ``labels`` are BACKGROUND (-1),
      ``target_boxes`` and ``target_scores`` 0.

    Args:
        scores: ``(..., A, C)`` predicted class probabilities in [0, 1] (post-sigmoid).
        pred_boxes: ``(..., A, 4)`` predicted ``xyxy`` boxes (decoded, in pixels).
        anchor_points: ``(A, 2)`` anchor points ``(x, y)`` in the boxes' coordinates.
        gt_labels: ``(..., G)`` integer classes in ``[0, C)`` (padding: anything).
        gt_boxes: ``(..., G, 4)`` ``xyxy`` gt boxes, padded to ``G``.
        gt_valid: ``(..., G)`` boolean, False for padding (default: all real).
        topk: candidates per gt (13), capped at ``A``.
        alpha, beta: exponents of the score and of the overlap (1, 6).
        iou: ``"iou"`` (exact IoU) or ``"ciou"`` (YOLOv8's clamped CIoU, eps 1e-7).
        contested: ``"selecting"`` (highest overlap among the gts that selected the anchor)
            or ``"all"`` (ultralytics: argmax over all gts' overlaps).
        topk_from: ``"candidates"`` (rank a gt's candidates) or ``"anchors"`` (ultralytics:
            rank all anchors, alignment 0 outside the gt, then keep the candidates).
        positive_only: drop positives whose alignment is 0 (mmdetection).
        center_eps: an anchor point is inside when all 4 distances exceed it (1e-9).
        eps: added to each gt's largest alignment in the normalization (1e-9).

    Returns:
        A dict of arrays of the inputs' library: ``matched`` ``(..., A)`` gt index or
        BACKGROUND (-1), default integer dtype; ``labels`` ``(..., A)`` class or -1;
        ``target_scores`` ``(..., A, C)``, ``target_boxes`` ``(..., A, 4)`` (the matched gt's,
        0 for background), ``alignment`` ``(..., A)`` (``t`` to the matched gt) and
        ``overlaps`` ``(..., A)`` (``u`` to it), in the floating dtype (float32 for half).

    Raises:
        ValueError: inconsistent shapes, bad options, or (eagerly) a score outside [0, 1],
            a real gt's label outside ``[0, C)`` or a malformed real gt box.
        TypeError: wrong dtypes, or arrays from different libraries.

    Examples:
        >>> import numpy as np
        >>> points = np.asarray([[2.0, 2.0], [6.0, 2.0], [10.0, 2.0]])
        >>> pred = np.asarray([[[0.0, 0.0, 4.0, 4.0], [4.0, 0.0, 8.0, 4.0],
        ...                     [8.0, 0.0, 12.0, 4.0]]])
        >>> scores = np.asarray([[[0.9, 0.1], [0.5, 0.5], [0.2, 0.8]]])
        >>> out = task_aligned_assign(scores, pred, points, np.asarray([[0]]),
        ...                           np.asarray([[[0.0, 0.0, 8.0, 4.0]]]), topk=1, beta=1.0)
        >>> out["matched"], out["target_scores"][0, :, 0]
        (array([[ 0, -1, -1]]), array([0.5, 0. , 0. ]))

    References:
        Feng et al., "TOOD: Task-aligned One-stage Object Detection", ICCV 2021,
        arXiv:2108.07755. ultralytics ``TaskAlignedAssigner`` (``ultralytics/utils/tal.py``).
    """
    xp = namespace(scores=scores, pred_boxes=pred_boxes, anchor_points=anchor_points,
                   gt_labels=gt_labels, gt_boxes=gt_boxes, gt_valid=gt_valid)
    for name, a in (("scores", scores), ("pred_boxes", pred_boxes),
                    ("anchor_points", anchor_points), ("gt_boxes", gt_boxes)):
        check_floating(xp, a, name)
    check_integer(xp, gt_labels, "gt_labels")
    _check_shapes(scores, pred_boxes, anchor_points, gt_labels, gt_boxes)
    valid = _check_mask(xp, gt_valid, "gt_valid", gt_labels.shape, "gt_labels.shape")
    if isinstance(topk, bool) or not isinstance(topk, numbers.Integral) or topk < 1:
        raise ValueError(f"topk must be an integer >= 1, got {topk!r}")
    static = {
        "topk": int(topk), "alpha": check_number("alpha", alpha, low=0.0),
        "beta": check_number("beta", beta, low=0.0), "iou": check_choice("iou", iou, _IOU_KINDS),
        "contested": check_choice("contested", contested, _CONTESTED),
        "topk_from": check_choice("topk_from", topk_from, _TOPK_FROM),
        "positive_only": bool(positive_only),
        "center_eps": check_number("center_eps", center_eps, low=0.0),
        "eps": check_number("eps", eps, low=0.0, low_open=True),
    }
    dtype = compute_dtype(xp, xp.result_type(scores.dtype, pred_boxes.dtype,
                                             anchor_points.dtype, gt_boxes.dtype))
    arrays = [stop_gradient(xp, xp.astype(a, dtype))
              for a in (scores, pred_boxes, anchor_points, gt_boxes)]
    if valid is None:
        valid = xp.ones(gt_labels.shape, dtype=xp.bool, device=device_of(gt_labels))
    _check_scores(xp, arrays[0])
    _check_labels(xp, gt_labels, valid, scores.shape[-1])
    check_boxes(xp, arrays[3], "gt_boxes", valid=valid)
    s, p, pts, g = arrays
    batch, n_anchors, n_classes = s.shape[:-2], s.shape[-2], s.shape[-1]
    if n_anchors == 0 or gt_boxes.shape[-2] == 0:
        index = _index_dtype(xp, s)
        empty = xp.full((*batch, n_anchors), BACKGROUND, dtype=index, device=device_of(s))
        zeros = xp.zeros((*batch, n_anchors), dtype=dtype, device=device_of(s))
        parts = (empty, empty, xp.zeros((*batch, n_anchors, n_classes), dtype=dtype,
                                        device=device_of(s)),
                 xp.zeros((*batch, n_anchors, 4), dtype=dtype, device=device_of(s)),
                 zeros, zeros)
    else:
        parts = _run(_tal_kernel, xp, s, p, pts, gt_labels, g, valid, **static)
    keys = ("matched", "labels", "target_scores", "target_boxes", "alignment", "overlaps")
    return dict(zip(keys, parts, strict=True))


task_aligned_assign.__module__ = "focal_array.assigners"
