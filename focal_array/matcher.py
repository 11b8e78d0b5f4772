"""Anchor matching: IoU matcher with an ignore band, target assignment, hard negative mining.

Written against the Array API with static shapes only, so every function runs on NumPy,
array_api_strict, JAX (``jit``/``vmap``) and PyTorch (``torch.compile(fullgraph=True)``).
Leading batch dimensions broadcast: shared ``(A, 4)`` anchors with ``(B, G, 4)`` ground
truths is one call, as is a padded batch ``(B, A, 4)`` with ``(B, G, 4)``.

Per-anchor results use two negative codes: :data:`BACKGROUND` (``-1``, a negative anchor)
and :data:`IGNORE` (``-2``, left out of the loss); a value ``>= 0`` is the matched
ground-truth index (:func:`match`, :func:`match_anchors`) or class (:func:`assign_targets`).

The option checks, the IoU and the match rule live in :mod:`focal_array._matching`:
:func:`match_anchors` builds its IoU gt-major, ``(..., G, A)``, one coordinate at a time
(no corner tensors), in about three float matrices of that shape updated in place where
the backend has mutable arrays — never int64 copies of it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

from ._match_targets import targets_from_matched
from ._matching import BACKGROUND as _BACKGROUND
from ._matching import IGNORE as _IGNORE
from ._matching import (
    TIE_BOUND_ULPS,
    TIE_RULES,
    _check_mask,
    _check_options,
    _check_tie_rule,
    _match_anchors_impl,
    _match_core,
    _prepare_match_inputs,
    _run,
)
from ._namespace import compute_dtype, constant, device_of, is_tracing, namespace
from ._typing import ArrayT, Integer, Number, TieRule
from ._validate import (
    check_floating,
    check_integer,
    check_number,
    check_same_shape,
    eager_check,
    first_true_index,
)
from .box_coder import _check_weights

__all__ = [
    "BACKGROUND",
    "IGNORE",
    "TIE_BOUND_ULPS",
    "TIE_RULES",
    "assign_targets",
    "hard_negative_mining",
    "match",
    "match_anchors",
]

#: Per-anchor code of a negative (background) anchor: best IoU below ``low``.
BACKGROUND = _BACKGROUND
#: Per-anchor code of an ignored anchor: best IoU in ``[low, high)``, or inside a crowd box.
IGNORE = _IGNORE


def _check_labels(xp: Any, labels: Any, valid: Any, num_classes: Integer | None) -> None:
    """Eagerly: every real gt's label is >= 0 and (when given) < num_classes."""
    if math.prod(labels.shape) == 0:
        return
    zero = xp.asarray(0, dtype=labels.dtype, device=device_of(labels))
    bad = labels < zero
    if num_classes is not None:
        bad = bad | (labels >= xp.asarray(num_classes, dtype=labels.dtype,
                                          device=device_of(labels)))
    if valid is not None:
        bad = bad & valid

    def message() -> str:
        index = first_true_index(xp, bad)
        value = int(labels[index])
        where = ", ".join(map(str, index))
        if value < 0:
            return (f"gt_labels[{where}] = {value} is negative; class labels of real "
                    "ground-truth boxes must be >= 0 (mark padding with gt_valid)")
        return f"gt_labels[{where}] = {value} is not below num_classes={num_classes}"

    def any_bad() -> Any:
        anything = xp.any(bad)
        return False if is_tracing(anything) else anything  # concrete input inside a trace

    arrays = [labels] if valid is None else [labels, valid]
    eager_check(arrays, any_bad, message)



# --------------------------------------------------------------------------- public


def match(quality: ArrayT, /, *, high: Number = 0.5, low: Number = 0.4,
          allow_low_quality_matches: bool = True, tie_tolerance: Number = 0.0,
          tie_rule: TieRule = "equal", gt_valid: ArrayT | None = None) -> ArrayT:
    """Match anchors to ground truths from a precomputed quality (IoU) matrix.

    For anchor ``a`` with best quality ``q* = max_g q[a, g]`` at ``g* = argmax_g q[a, g]``
    (ties → lowest ``g``):

    .. math::

        m_a = \\begin{cases} g^* & q^* \\ge \\text{high} \\\\
              \\text{IGNORE} = -2 & \\text{low} \\le q^* < \\text{high} \\\\
              \\text{BACKGROUND} = -1 & q^* < \\text{low} \\end{cases}

    With ``allow_low_quality_matches`` (torchvision's rule), every gt ``g`` whose best
    quality over anchors ``b_g = max_a q[a, g]`` is ``> 0`` also makes positive each anchor
    with ``q[a, g] >= b_g - tie_tolerance`` (and ``q[a, g] > 0``); such an anchor takes its
    own best gt ``g*``. A gt that overlaps no anchor (``b_g = 0``) claims nothing.

    What counts as a tie is ``tie_rule``: ``"equal"`` (default) claims the anchors whose
    quality *equals* ``b_g`` (torchvision's ``==``); ``"rounding"`` claims those within the
    rounding-error bound of the IoU formula, ``q[a, g] >= b_g · (1 − 40u)`` with ``u`` the
    dtype's unit roundoff (``2**-24`` in float32): every pair of IoUs that are equal in exact
    arithmetic is claimed, and also near-ties that differ in exact arithmetic (on COCO-like
    data about 2.2 times as many anchors; see the matching guide).

    Args:
        quality: ``(..., A, G)`` real floating matrix, usually IoU in [0, 1].
        high: positive threshold (``IoU >= high``), in [0, 1]. RetinaNet 0.5, RPN 0.7.
        low: background threshold (``IoU < low``), in [0, high]. RetinaNet 0.4, RPN 0.3.
        allow_low_quality_matches: apply the low-quality rule above.
        tie_tolerance: absolute tolerance (>= 0) widening the low-quality ties; 0 = none.
        tie_rule: ``"equal"`` or ``"rounding"``, as above.
        gt_valid: optional ``(..., G)`` boolean; False columns (padding) never match.

    Returns:
        ``(..., A)`` integer array of the library's default index dtype (int64; int32 on
        JAX without x64): matched gt index, ``BACKGROUND`` or ``IGNORE``. With no (valid)
        gts every anchor is ``BACKGROUND``.

    A NaN quality has no meaning (it would otherwise win or lose by the backend's NaN
    ordering): on eager backends a NaN in a real gt's column is an error naming its
    position; inside a trace, where data cannot be read, a NaN counts as ``-inf``, like a
    padded gt: it never wins an anchor, never claims one and is below every threshold.
    ``±inf`` are allowed (``-inf``: never matches; ``+inf``: always wins).

    Raises:
        ValueError: thresholds outside [0, 1] or ``low > high``, quality not 2-D or more,
            gt_valid of the wrong shape; on eager backends a NaN in a column that
            ``gt_valid`` does not mark as padding (naming ``quality[..., a, g]``).
        TypeError: non-floating quality, non-boolean gt_valid, mixed libraries.

    Examples:
        >>> import numpy as np
        >>> iou = np.asarray([[0.6, 0.1], [0.45, 0.2], [0.1, 0.3], [0.0, 0.0]])
        >>> match(iou, allow_low_quality_matches=False)
        array([ 0, -2, -1, -1])
        >>> match(iou)  # gt 1's best anchor (IoU 0.3) is claimed as a low-quality match
        array([ 0, -2,  1, -1])
    """
    xp = namespace(quality=quality, gt_valid=gt_valid)
    high, low, tol = _check_options(high, low, tie_tolerance)
    rule = _check_tie_rule(tie_rule)
    check_floating(xp, quality, "quality")
    if quality.ndim < 2:
        raise ValueError(f"quality must have shape (..., A, G), got {tuple(quality.shape)}")
    q = _prepare_quality(xp, quality)
    valid = _check_mask(xp, gt_valid, "gt_valid", q.shape[:-2] + q.shape[-1:],
                        "quality.shape[:-2] + quality.shape[-1:]")
    checked = _check_quality(xp, q, valid)
    return _run(_match_quality_impl, xp, q, valid, high=high, low=low,
                allow_low_quality=allow_low_quality_matches, tol=tol, rule=rule,
                sanitize=not checked)


def _match_quality_impl(q: Any, valid: Any, *, high: float, low: float,
                        allow_low_quality: bool, tol: float, rule: str, sanitize: bool,
                        xp: Any) -> Any:
    if sanitize:
        # unchecked (a trace): a NaN quality is no overlap at all, as a padded gt's -inf,
        # so it never wins an anchor, never claims one and is below every threshold
        q = xp.where(xp.isnan(q), constant(xp, -math.inf, q), q)
    if valid is not None:
        q = xp.where(valid[..., None, :], q, constant(xp, -math.inf, q))
    return _match_core(q, high=high, low=low, allow_low_quality=allow_low_quality, tol=tol,
                       rule=rule, xp=xp)


def _check_quality(xp: Any, q: Any, valid: Any) -> bool:
    """Eagerly raise ValueError naming the first NaN of a real gt's column (padding columns
    may hold anything). True when the check ran, False inside a trace (then the kernel
    turns NaN into -inf itself)."""
    if math.prod(q.shape) == 0:
        return True
    if is_tracing(q) or (valid is not None and is_tracing(valid)):
        return False
    nan = xp.isnan(q)
    if valid is not None:
        nan = nan & valid[..., None, :]
    anything = xp.any(nan)
    if is_tracing(anything):  # concrete arrays closed over inside jax.jit
        return False
    if bool(anything):
        where = ", ".join(map(str, first_true_index(xp, nan)))
        raise ValueError(
            f"quality[{where}] is NaN; a quality must be a number (IoU in [0, 1]): use "
            "-inf for a pair that must never match, or gt_valid=False for a padded gt")
    return True


def _prepare_quality(xp: Any, quality: Any) -> Any:
    dtype = compute_dtype(xp, quality.dtype)
    return quality if dtype == quality.dtype else xp.astype(quality, dtype)


def match_anchors(anchors: ArrayT, gt_boxes: ArrayT, /, *, gt_valid: ArrayT | None = None,
                  gt_crowd: ArrayT | None = None, high: Number = 0.5, low: Number = 0.4,
                  allow_low_quality_matches: bool = True, crowd_ioa: Number = 0.5,
                  tie_tolerance: Number = 0.0, tie_rule: TieRule = "equal") -> ArrayT:
    """Match anchors to ground-truth boxes by IoU, with padding and crowd regions.

    The IoU matrix of anchors × real, non-crowd gts goes through :func:`match`'s rule
    (``>= high`` positive, ``< low`` BACKGROUND, between IGNORE, low-quality matches).
    Then every anchor that is not positive and lies mostly inside a crowd box,
    ``max_{crowd g} |a ∩ g| / |a| >= crowd_ioa``, becomes IGNORE.

    Args:
        anchors: ``(..., A, 4)`` real floating ``xyxy`` anchors, e.g. shared ``(A, 4)``.
        gt_boxes: ``(..., G, 4)`` ``xyxy`` ground truths, e.g. a padded ``(B, G, 4)``;
            batch dimensions broadcast with the anchors'.
        gt_valid: optional ``(..., G)`` boolean (``gt_boxes.shape[:-1]``); False marks
            padding, which never matches and is not checked. Zero valid gts → all
            BACKGROUND.
        gt_crowd: optional ``(..., G)`` boolean ``iscrowd`` flags: crowd gts are never
            matched; they only turn overlapping non-positive anchors into IGNORE.
        high, low, allow_low_quality_matches, tie_tolerance, tie_rule: as in
            :func:`match`.
        crowd_ioa: IoA threshold in (0, 1] for the crowd rule.

    Every backend and route (NumPy, array_api_strict, JAX eager/jit/vmap/sharded, any batch
    shape, PyTorch eager/compiled) computes each IoU as the same float: the IoU is
    torchvision's sequence of IEEE operations with its products kept out of fused
    multiply-adds, so the integer matches are identical everywhere. When a gt coordinate
    exceeds ``2**61`` in magnitude (float32; ``2**509`` in float64) all boxes are matched
    in coordinates scaled by an exact power of two (the same matches), so identical huge
    boxes still have IoU 1; an anchor whose area overflows against smaller gts has IoU 0
    (its exact IoU is below 1/256). Inside a trace, where the box checks are skipped, a
    non-finite gt counts as padding and a non-finite anchor has IoU 0 with every gt.

    Returns:
        ``(broadcast batch..., A)`` integer array (default index dtype): matched gt index,
        ``BACKGROUND`` (-1) or ``IGNORE`` (-2).

    Raises:
        ValueError: last dimension not 4, batch shapes that do not broadcast, bad
            thresholds, masks of the wrong shape; on eager backends a non-finite or
            inverted box (x2 < x1 or y2 < y1), naming its index.
        TypeError: non-floating boxes, non-boolean masks, arrays from different libraries.

    Examples:
        >>> import numpy as np
        >>> anchors = np.asarray([[0., 0., 10., 10.], [0., 0., 10., 5.], [20., 20., 30., 30.]])
        >>> gts = np.asarray([[[0., 0., 10., 10.]], [[0., 0., 0., 0.]]])  # 2 images
        >>> match_anchors(anchors, gts, gt_valid=np.asarray([[True], [False]]))
        array([[ 0,  0, -1],
               [-1, -1, -1]])
    """
    xp = namespace(anchors=anchors, gt_boxes=gt_boxes, gt_valid=gt_valid, gt_crowd=gt_crowd)
    high, low, tol = _check_options(high, low, tie_tolerance)
    rule = _check_tie_rule(tie_rule)
    crowd_ioa = check_number("crowd_ioa", crowd_ioa, low=0.0, high=1.0, low_open=True)
    anchors, gts, valid, crowd = _prepare_match_inputs(anchors, gt_boxes, gt_valid, gt_crowd,
                                                       xp)
    return _run(_match_anchors_impl, xp, anchors, gts, valid, crowd, high=high, low=low,
                allow_low_quality=allow_low_quality_matches, crowd_ioa=crowd_ioa, tol=tol,
                rule=rule)


def assign_targets(anchors: ArrayT, gt_boxes: ArrayT, gt_labels: ArrayT, /, *,
                   gt_valid: ArrayT | None = None, gt_crowd: ArrayT | None = None,
                   high: Number = 0.5, low: Number = 0.4,
                   allow_low_quality_matches: bool = True, crowd_ioa: Number = 0.5,
                   tie_tolerance: Number = 0.0, tie_rule: TieRule = "equal",
                   weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
                   num_classes: Integer | None = None) -> tuple[ArrayT, ArrayT, ArrayT]:
    """Per-anchor classification and box-regression targets from matched ground truths.

    ``matched = match_anchors(...)``; then for each anchor

    .. math::

        \\text{label}_a = \\begin{cases} \\text{gt\\_labels}[m_a] & m_a \\ge 0 \\\\
              m_a \\ (\\text{BACKGROUND or IGNORE}) & \\text{otherwise} \\end{cases}
        \\qquad
        t_a = \\begin{cases} \\mathrm{encode}(a, \\text{gt\\_boxes}[m_a]) & m_a \\ge 0 \\\\
              0 & \\text{otherwise} \\end{cases}

    Feed ``one_hot(labels, C)`` to the sigmoid focal loss with
    ``weights = labels != IGNORE``, or ``labels + 1`` (background class 0, IGNORE → -1
    ignored) to the softmax loss.

    Args:
        anchors: ``(..., A, 4)`` ``xyxy`` anchors.
        gt_boxes: ``(..., G, 4)`` ``xyxy`` ground truths (batch dims broadcast).
        gt_labels: ``(..., G)`` integer classes (``gt_boxes.shape[:-1]``), ``>= 0`` for
            real gts (padding may hold anything).
        gt_valid: as in :func:`match_anchors`.
        gt_crowd: as in :func:`match_anchors`.
        high: as in :func:`match_anchors`.
        low: as in :func:`match_anchors`.
        allow_low_quality_matches: as in :func:`match_anchors`.
        crowd_ioa: as in :func:`match_anchors`.
        tie_tolerance, tie_rule: as in :func:`match_anchors`.
        weights: box-coder weights, as in :func:`focal_array.boxes.encode`.
        num_classes: when given, real gts' labels must be below it (checked eagerly).

    Returns:
        ``(labels, box_targets, matched)``: ``(batch..., A)`` labels in ``gt_labels``'
        dtype (the index dtype if that is unsigned); ``(batch..., A, 4)`` deltas in the
        boxes' dtype (float32 for half), zero where not positive; ``(batch..., A)``
        matched gt indices as :func:`match_anchors` returns them.

    Raises:
        ValueError, TypeError: as :func:`match_anchors`; non-integer ``gt_labels``;
            on eager backends a real gt's label < 0 or >= ``num_classes``.

    Examples:
        >>> import numpy as np
        >>> anchors = np.asarray([[0., 0., 10., 10.], [20., 20., 30., 30.]])
        >>> labels, targets, matched = assign_targets(
        ...     anchors, np.asarray([[1., 0., 11., 10.]]), np.asarray([7]))
        >>> labels, matched
        (array([ 7, -1]), array([ 0, -1]))
    """
    xp = namespace(anchors=anchors, gt_boxes=gt_boxes, gt_labels=gt_labels, gt_valid=gt_valid,
                   gt_crowd=gt_crowd)
    high, low, tol = _check_options(high, low, tie_tolerance)
    rule = _check_tie_rule(tie_rule)
    crowd_ioa = check_number("crowd_ioa", crowd_ioa, low=0.0, high=1.0, low_open=True)
    coder_weights = _check_weights(weights)
    if num_classes is not None and (isinstance(num_classes, bool)
                                    or not isinstance(num_classes, numbers.Integral)
                                    or num_classes < 1):
        raise ValueError(f"num_classes must be a positive integer or None, got {num_classes!r}")
    check_integer(xp, gt_labels, "gt_labels")
    anchors, gts, valid, crowd = _prepare_match_inputs(anchors, gt_boxes, gt_valid, gt_crowd,
                                                       xp)
    check_same_shape("gt_boxes.shape[:-1]", gts.shape[:-1], "gt_labels", gt_labels.shape)
    _check_labels(xp, gt_labels, valid, num_classes)

    return _run(_assign_impl, xp, anchors, gts, gt_labels, valid, crowd, high=high, low=low,
                allow_low_quality=allow_low_quality_matches, crowd_ioa=crowd_ioa, tol=tol,
                rule=rule, weights=coder_weights)


def _assign_impl(anchors: Any, gts: Any, gt_labels: Any, valid: Any, crowd: Any, *,
                 high: float, low: float, allow_low_quality: bool, crowd_ioa: float,
                 tol: float, rule: str, weights: tuple[float, ...],
                 xp: Any) -> tuple[Any, Any, Any]:
    matched = _match_anchors_impl(anchors, gts, valid, crowd, high=high, low=low,
                                  allow_low_quality=allow_low_quality, crowd_ioa=crowd_ioa,
                                  tol=tol, rule=rule, xp=xp)
    t = targets_from_matched(anchors, gts, gt_labels, matched, weights=weights, xp=xp)
    return t.labels, t.deltas, matched


def hard_negative_mining(loss: ArrayT, labels: ArrayT, /, *, neg_pos_ratio: Number = 3.0,
                         min_negatives: Integer = 0) -> ArrayT:
    """Select all positives and the hardest negatives per image (SSD's 3:1 rule).

    Per image (the last axis holds its anchors): ``P`` = number of positives
    (``labels >= 0``), ``N`` = number of negatives (``labels == BACKGROUND``); keep the

    .. math::

        k = \\min\\bigl(N, \\max(\\lfloor \\text{neg\\_pos\\_ratio} \\cdot P \\rfloor,
        \\text{min\\_negatives})\\bigr)

    negatives with the highest ``loss`` (ties → lowest anchor index). IGNORE anchors are
    never selected. Sort-based with static shapes: jittable.

    Labels below ``IGNORE`` (-3, -7, ...) are no code of the matcher's: on eager backends
    they are an error naming the value and position, and so is a NaN loss at a negative
    anchor (its rank would depend on the backend's NaN ordering). Inside a trace, where
    data cannot be read, such labels are ignored like IGNORE and a NaN loss ranks below
    every number (chosen last).

    Args:
        loss: ``(..., A)`` real floating per-anchor loss (e.g. the background loss).
        labels: ``(..., A)`` integer labels or matched indices: ``>= 0`` positive,
            ``BACKGROUND`` (-1) negative, ``IGNORE`` (-2) ignored.
        neg_pos_ratio: negatives kept per positive (>= 0); SSD uses 3.
        min_negatives: negatives kept per image even without positives (>= 0), as in
            the TensorFlow Object Detection API's ``min_negatives_per_image``.

    Returns:
        ``(..., A)`` boolean mask of the anchors to train on (positives | chosen negatives).

    Raises:
        ValueError: shapes differ, or bad options; on eager backends a label < -2 or a
            NaN loss at a negative anchor (naming its index). TypeError: wrong dtypes,
            mixed libraries.

    Examples:
        >>> import numpy as np
        >>> loss = np.asarray([0.1, 0.9, 0.5, 0.7, 0.2, 0.3])
        >>> labels = np.asarray([3, -1, -1, -2, -1, -1])
        >>> hard_negative_mining(loss, labels, neg_pos_ratio=2.0)
        array([ True,  True,  True, False, False, False])
    """
    xp = namespace(loss=loss, labels=labels)
    ratio = check_number("neg_pos_ratio", neg_pos_ratio, low=0.0)
    if isinstance(min_negatives, bool) or not isinstance(min_negatives, numbers.Integral) \
            or min_negatives < 0:
        raise ValueError(f"min_negatives must be a non-negative integer, got {min_negatives!r}")
    check_floating(xp, loss, "loss")
    check_integer(xp, labels, "labels")
    if loss.ndim < 1:
        raise ValueError("loss must have shape (..., A) with anchors on the last axis")
    check_same_shape("loss", loss.shape, "labels", labels.shape)
    if loss.shape[-1] == 0:
        return xp.zeros(loss.shape, dtype=xp.bool, device=device_of(loss))
    _check_mining_inputs(xp, loss, labels)
    return _run(_mine_impl, xp, loss, labels, ratio=ratio, min_negatives=int(min_negatives))


def _check_mining_inputs(xp: Any, loss: Any, labels: Any) -> None:
    """Eagerly: every label is >= IGNORE, and no negative anchor's loss is NaN."""
    if xp.isdtype(labels.dtype, "unsigned integer"):
        return  # no negative codes at all: every anchor is a positive
    code = lambda v: xp.asarray(v, dtype=labels.dtype, device=device_of(labels))  # noqa: E731
    found: list[tuple[int, ...]] = []

    def first(mask: Any) -> Any:
        anything = xp.any(mask)
        if is_tracing(anything):  # concrete arrays closed over inside jax.jit
            return False
        if bool(anything):
            found.append(first_true_index(xp, mask))
        return anything

    def label_message() -> str:
        index = found[-1]
        where = ", ".join(map(str, index))
        return (f"labels[{where}] = {int(labels[index])} is not a label code: labels must "
                "be >= 0 (positive), BACKGROUND (-1) or IGNORE (-2)")

    def loss_message() -> str:
        where = ", ".join(map(str, found[-1]))
        return (f"loss[{where}] is NaN at a negative anchor (labels[{where}] = -1); hard "
                "negative mining ranks the negatives by their loss")

    eager_check([labels], lambda: first(labels < code(IGNORE)), label_message)
    eager_check([loss, labels],
                lambda: first(xp.isnan(loss) & (labels == code(BACKGROUND))), loss_message)


def _mine_impl(loss: Any, labels: Any, *, ratio: float, min_negatives: int, xp: Any) -> Any:
    zero = xp.asarray(0, dtype=labels.dtype, device=device_of(labels))
    positive = labels >= zero
    negative = labels == xp.asarray(BACKGROUND, dtype=labels.dtype, device=device_of(labels))
    # a NaN loss (possible only inside a trace, unchecked) ranks below every number
    score = xp.where(negative & ~xp.isnan(loss), loss, constant(xp, -math.inf, loss))
    order = xp.argsort(score, axis=-1, descending=True, stable=True)
    rank = xp.argsort(order, axis=-1)  # inverse permutation: each anchor's place in order
    fdtype = xp.float32 if loss.dtype != xp.float64 else xp.float64
    n_pos = xp.sum(xp.astype(positive, fdtype), axis=-1, keepdims=True)
    k = xp.floor(n_pos * xp.asarray(ratio, dtype=fdtype, device=device_of(loss)))
    k = xp.maximum(k, xp.asarray(float(min_negatives), dtype=fdtype, device=device_of(loss)))
    keep = negative & (xp.astype(rank, fdtype) < k)
    return positive | keep
