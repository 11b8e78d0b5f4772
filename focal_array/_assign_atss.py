"""ATSS: adaptive training sample selection (Zhang et al. 2020), as mmdetection assigns it.

Batched and static-shaped: per-level top-k by a stable sort, the candidates' IoU statistics
by fixed-order sums, the claim of every ``(gt, anchor)`` pair as a mask (no scatter, no
boolean indexing). Runs under ``jax.jit``/``vmap`` and ``torch.compile(fullgraph=True)``.

Every float the rule compares is the same on every backend and route: the IoU is the
matcher's (:mod:`._match_iou`, products pinned), the centre distance is
``sqrt(dx·dx + dy·dy)`` with pinned squares, and the threshold's sums run in one fixed
pairwise tree with the divisions done as products by the rounded reciprocal (XLA rewrites a
division by a constant into that product anyway, eager backends would not). So the integers
are identical everywhere.

Source followed: mmdetection ``mmdet/models/task_modules/assigners/atss_assigner.py``
(3.x, commit adc8ffa5; the same code since 2.x); line numbers below refer to that file.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

from ._assign_fcos import check_levels
from ._box_common import _batch_shape, _coords, finite_boxes, quiet
from ._match_iou import _gt_major_quality, _scaled
from ._matching import (
    BACKGROUND,
    _first_max_gt,
    _index_dtype,
    _int_constant,
    _prepare_match_inputs,
    _run,
    _select,
)
from ._namespace import (
    constant,
    device_of,
    is_jax,
    namespace,
    stop_gradient,
)
from ._namespace import pinned as _pinned
from ._typing import ArrayT, Integer

__all__ = ["INSIDE_EPS", "atss_assign"]

#: mmdetection's margin (line 231, ``min(l, t, r, b) > 0.01``): an anchor centre must lie
#: more than this many coordinate units inside every side of the gt, compared in the dtype.
INSIDE_EPS = 0.01


# --------------------------------------------------------------------------- checks


def _check_topk(topk: Any) -> int:
    if isinstance(topk, bool) or not isinstance(topk, numbers.Integral):
        raise TypeError(f"topk must be a Python int (static), got {type(topk).__name__}")
    if topk < 1:
        raise ValueError(f"topk must be >= 1, got {topk}")
    return int(topk)


# --------------------------------------------------------------------------- kernel


def _tree_sum(x: Any, xp: Any) -> Any:
    """Sum over the last axis in one fixed pairwise order (zero-padded to a power of two):
    the same float on every backend, whatever its reduction order."""
    n = x.shape[-1]
    width = 1 << max(n - 1, 0).bit_length()
    if width > n:
        pad = xp.zeros((*x.shape[:-1], width - n), dtype=x.dtype, device=device_of(x))
        x = xp.concat([x, pad], axis=-1)
    while width > 1:
        width //= 2
        x = x[..., :width] + x[..., width:]
    return x[..., 0]


def _threshold(cand: Any, xp: Any) -> Any:
    """``mean + std`` over the last axis, std unbiased (``n − 1``, torch.std's default,
    line 209); NaN for a single candidate, as torch.std gives there."""
    n = cand.shape[-1]
    mean = _pinned(_tree_sum(cand, xp) * constant(xp, 1.0 / n, cand), xp)
    dev = cand - mean[..., None]
    square = _pinned(dev * dev, xp)
    inv = 1.0 / (n - 1) if n > 1 else math.nan
    var = _tree_sum(square, xp) * constant(xp, inv, cand)
    return mean + xp.sqrt(var)


def _centres(boxes: Any, xp: Any) -> tuple[Any, Any]:
    """``((x1 + x2) / 2, (y1 + y2) / 2)`` (lines 25-30, exact halving)."""
    x1, y1, x2, y2 = _coords(boxes)
    half = constant(xp, 0.5, boxes)
    return (x1 + x2) * half, (y1 + y2) * half


def _atss_kernel(anchors: Any, gts: Any, valid: Any, *, levels: tuple[int, ...], topk: int,
                 xp: Any) -> Any:
    with quiet(xp):  # NumPy: an area or distance may overflow to inf, as handled
        return _atss_body(anchors, gts, valid, levels=levels, topk=topk, xp=xp)


def _nearest_k(d: Any, k: int, xp: Any) -> Any:
    """Indices of the ``k`` smallest entries along the last axis, ties to the lowest index:
    a stable argsort's first ``k``. On JAX ``lax.top_k`` of ``−d`` (equal values come lower
    index first, by its contract): XLA:CPU sorts each gt's whole row otherwise, ~80x
    slower at RetinaNet's P3 (8 × 50 × 150,300 distances: 15 s against 0.18 s).
    ``torch.topk`` leaves the order of ties unspecified, so PyTorch keeps the sort."""
    if is_jax(xp):
        import jax

        return jax.lax.top_k(-d, k)[1]
    return xp.argsort(d, axis=-1, stable=True)[..., :k]


def _chosen(d: Any, order: Any, xp: Any) -> Any:
    """The mask of the anchors in ``order`` (the ``k`` nearest, stable), without a scatter.

    Eager backends: ``(d, index) <= (d, index)`` of the k-th. JAX: ``index ∈ order`` as a
    fused any-reduction, the same set; XLA:CPU runs any gather from (or second use of) a
    ``top_k`` operand as a full sort, 1.3 s against 40 ms on RetinaNet's P3 per image.
    """
    k = order.shape[-1]
    index = xp.arange(d.shape[-1], dtype=order.dtype, device=device_of(order))
    if is_jax(xp):
        return xp.any(order[..., :, None] == index, axis=-2)
    last = order[..., k - 1:k]
    d_last = xp.take_along_axis(d, last, axis=-1)
    return (d < d_last) | ((d == d_last) & (index <= last))


def _atss_body(anchors: Any, gts: Any, valid: Any, *, levels: tuple[int, ...], topk: int,
               xp: Any) -> Any:
    anchors, gts = stop_gradient(xp, anchors), stop_gradient(xp, gts)
    zero = constant(xp, 0.0, gts)
    ok = finite_boxes(xp, gts)  # in a trace a non-finite gt counts as padding
    if valid is not None:
        ok = ok & valid
    # padding may hold anything (even NaN): an empty box at 0 before any math
    gts = xp.where(ok[..., None], gts, zero)
    n_gts, n_anchors = gts.shape[-2], anchors.shape[-2]
    if n_gts == 0 or n_anchors == 0:
        shape = (*_batch_shape("anchors", anchors.shape[:-2], "gt_boxes", gts.shape[:-2]),
                 n_anchors)
        return xp.full(shape, BACKGROUND, dtype=_index_dtype(xp, anchors),
                       device=device_of(anchors))
    # IoU (..., G, A), lines 138 and BboxOverlaps2D; scaled copies only for the IoU
    iou, _, scratch = _gt_major_quality(*_scaled(anchors, gts, xp), None, None, 0.5, xp)
    # centre distances (..., G, A), lines 25-34: sqrt(dx**2 + dy**2), squares pinned
    acx, acy = _centres(anchors, xp)
    gcx, gcy = _centres(gts, xp)
    acx, acy = acx[..., None, :], acy[..., None, :]
    dx, dy = acx - gcx[..., :, None], acy - gcy[..., :, None]
    dist = xp.sqrt(_pinned(dx * dx, xp) + _pinned(dy * dy, xp))
    # NaN only from non-finite boxes (a trace): sort them last, consistently with the mask
    dist = xp.where(xp.isnan(dist), constant(xp, math.inf, dist), dist)
    # per level, the k nearest anchors (lines 193-203); ties -> lowest anchor index (stable)
    cand_iou, cand_mask, start = [], [], 0
    for size in levels:
        k = min(topk, size)
        if k == 0:
            continue
        d = dist[..., start:start + size]
        order = _nearest_k(d, k, xp)
        cand_iou.append(xp.take_along_axis(iou[..., start:start + size], order, axis=-1))
        cand_mask.append(_chosen(d, order, xp))
        start += size
    threshold = _threshold(xp.concat(cand_iou, axis=-1), xp)  # lines 207-210
    candidate = xp.concat(cand_mask, axis=-1) if len(cand_mask) > 1 else cand_mask[0]
    # centre strictly inside the gt by more than INSIDE_EPS (lines 227-231)
    gx1, gy1, gx2, gy2 = (c[..., :, None] for c in _coords(gts))
    eps = constant(xp, INSIDE_EPS, gts)
    inside = ((acx - gx1) > eps) & ((acy - gy1) > eps) & ((gx2 - acx) > eps) & \
        ((gy2 - acy) > eps)
    positive = candidate & inside & (iou >= threshold[..., None]) & ok[..., None]  # l. 212
    # several gts: the highest IoU, ties -> lowest gt index (lines 237-245, first maximum)
    score = xp.where(positive, iou, constant(xp, -1.0, iou))
    best = xp.max(score, axis=-2)
    arg = _first_max_gt(score, best, scratch[0] if scratch else None, xp)
    return _select(best >= constant(xp, 0.0, best), arg,
                   _int_constant(xp, BACKGROUND, arg), xp)


# --------------------------------------------------------------------------- public


def atss_assign(anchors: ArrayT, gt_boxes: ArrayT, /, *, num_anchors_per_level: Sequence[int],
                gt_valid: ArrayT | None = None, topk: Integer = 9) -> ArrayT:
    """Assign anchors to ground truths by adaptive training sample selection (ATSS).

    For each real gt ``g``: on every pyramid level ``l`` the ``k_l = min(topk, A_l)``
    anchors whose centres are nearest (L2) to the gt's centre are its candidates ``C_g``
    (ties: lowest anchor index); with ``n = |C_g| = Σ_l k_l`` and the IoUs of its
    candidates ``u_c``,

    .. math::

        t_g = \\bar u + \\sqrt{\\tfrac{1}{n - 1} \\textstyle\\sum_{c \\in C_g} (u_c - \\bar u)^2},
        \\qquad \\bar u = \\tfrac{1}{n} \\textstyle\\sum_{c \\in C_g} u_c .

    Anchor ``a`` is a positive of ``g`` when ``a ∈ C_g``, ``IoU(a, g) >= t_g`` and its
    centre lies more than ``INSIDE_EPS = 0.01`` inside every side of ``g``; an anchor
    positive for several gts takes the one of highest IoU (ties: lowest gt index). Every
    other anchor is ``BACKGROUND``. There is no ignore band.

    This is mmdetection's ``ATSSAssigner`` (``alpha=None``; ``ignore_iof_thr`` /
    ``gt_bboxes_ignore`` and DDOD's cost are not supported) with 0-based indices: its
    unbiased ``torch.std``, its ``> 0.01`` margin, its ``>=`` threshold, its first-maximum
    ``max(dim=1)``; with a single candidate (``topk=1``, one level) the std is NaN and, as
    there, nothing is positive. Differences: ``torch.topk`` does not order ties (here the
    lowest index wins); IoU's union is clamped at the dtype's smallest normal instead of
    1e-6 (only boxes below 1e-6 in area differ); the mean and std sum in a fixed pairwise
    order and divide as products by ``1/n`` and ``1/(n − 1)`` (torch sums in its kernels'
    order, and its std is Welford's): the same floats on every backend, within a few ulps
    of torch's, which matters only for an IoU that exact to those ulps equals ``t_g``.

    Args:
        anchors: ``(..., A, 4)`` real floating ``xyxy`` anchors, all levels concatenated in
            level order (e.g. :func:`focal_array.anchors.retinanet_anchors`, one or nine
            per location).
        gt_boxes: ``(..., G, 4)`` ``xyxy`` ground truths, e.g. a padded ``(B, G, 4)``;
            batch dimensions broadcast with the anchors'.
        num_anchors_per_level: static sequence of Python ints ``A_l >= 0`` summing to
            ``A`` (a level of fewer than ``topk`` anchors contributes all of them).
        gt_valid: optional ``(..., G)`` boolean; False marks padding, which never matches,
            is not checked and does not count.
        topk: static positive int, candidates per level (ATSS: 9).

    Returns:
        ``(broadcast batch..., A)`` integer array of the library's index dtype (int64;
        int32 on JAX without x64): the matched gt index or ``BACKGROUND`` (-1). Zero valid
        gts: all ``BACKGROUND``.

    Raises:
        ValueError: ``topk < 1``, a level count below 0 or not an int, counts not
            summing to ``A``, last dimension not 4,
            batch shapes that do not broadcast, ``gt_valid`` of the wrong shape; on eager
            backends a non-finite or inverted real box, naming it. Inside a trace such a
            gt counts as padding.
        TypeError: non-floating boxes, non-boolean ``gt_valid``, ``topk`` not an int,
            ``num_anchors_per_level`` not a non-empty sequence, mixed libraries.

    References:
        S. Zhang, C. Chi, Y. Yao, Z. Lei, S. Z. Li, *Bridging the Gap Between Anchor-based
        and Anchor-free Detection via Adaptive Training Sample Selection*, CVPR 2020,
        arXiv:1912.02424. mmdetection, ``mmdet/models/task_modules/assigners/
        atss_assigner.py``.

    Examples:
        >>> import numpy as np
        >>> anchors = np.asarray([[0., 0., 8., 8.], [8., 0., 16., 8.], [16., 0., 24., 8.],
        ...                       [0., 0., 16., 16.], [16., 0., 32., 16.]])
        >>> gts = np.asarray([[[1., 1., 9., 9.], [15., 0., 31., 14.]]])
        >>> atss_assign(anchors, gts, num_anchors_per_level=[3, 2], topk=2)
        array([[ 0, -1, -1, -1,  1]])
    """
    xp = namespace(anchors=anchors, gt_boxes=gt_boxes, gt_valid=gt_valid)
    k = _check_topk(topk)
    anchors, gts, valid, _ = _prepare_match_inputs(anchors, gt_boxes, gt_valid, None, xp)
    levels = check_levels(num_anchors_per_level, anchors.shape[-2], allow_empty=True)
    return _run(_atss_kernel, xp, anchors, gts, valid, levels=levels, topk=k)


atss_assign.__module__ = "focal_array.assigners"
