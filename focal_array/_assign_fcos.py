"""FCOS target assignment (Tian et al., 2019), batched and static-shaped.

:func:`fcos_assign` is torchvision's ``FCOS.compute_loss`` matching rule: a location is a
candidate for a ground truth when its centre lies inside the box, near the box's centre
(centre sampling) and at a distance from the box's sides that suits its pyramid level;
among the candidates the box of smallest area wins. :func:`centerness_targets` is the
target of FCOS's centerness branch. Both are written once against the Array API with
static shapes only: every backend (NumPy, array_api_strict, JAX under ``jit``/``vmap``,
PyTorch eager or ``torch.compile(fullgraph=True)``) gives the same integers.

The candidate tests are torchvision's float operations (in the boxes' dtype), so the
candidate sets are torchvision's bit for bit. The one deliberate difference is the
smallest-area choice: torchvision ranks candidates by ``float32(1e8 - area)``, which
rounds to multiples of 8 near 1e8 and so merges areas a few px² apart (the lower gt index
then wins, even when it is the larger box), and never matches a gt of area ``>= 1e8``
(its score is not positive). Here the areas themselves are compared.

References:
    Z. Tian, C. Shen, H. Chen, T. He, "FCOS: Fully Convolutional One-Stage Object
    Detection", ICCV 2019, arXiv:1904.01355. torchvision ``models/detection/fcos.py``
    (``FCOS.compute_loss``, ``FCOSHead.compute_loss``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

from ._box_common import _batch_shape, _common_dtype, _coords, _prepare, check_boxes, quiet
from ._matching import BACKGROUND, _check_mask, _index_dtype, _run
from ._namespace import constant, device_of, namespace, pinned, stop_gradient
from ._typing import ArrayT, Number
from ._validate import check_integer, check_number, check_same_shape

__all__ = ["centerness_targets", "fcos_assign"]


# --------------------------------------------------------------------------- checks


def check_levels(levels: Any, n_anchors: int, *, allow_empty: bool = False
                 ) -> tuple[int, ...]:
    """``num_anchors_per_level`` as a tuple of ints summing to ``n_anchors``: positive, or
    also 0 with ``allow_empty`` (a level without anchors). Shared by the assigners."""
    kind = "non-negative" if allow_empty else "positive"
    expected = (f"a non-empty sequence of {kind} integers (locations per pyramid level, "
                "e.g. [H_l * W_l for each level])")
    if isinstance(levels, (str, bytes)) or not isinstance(levels, Sequence) or not levels:
        raise TypeError(f"num_anchors_per_level must be {expected}, got {levels!r}")
    counts = []
    for i, n in enumerate(levels):
        if isinstance(n, bool) or not isinstance(n, numbers.Integral):
            raise TypeError(f"num_anchors_per_level[{i}] must be an integer (static), got "
                            f"{type(n).__name__} {n!r}; num_anchors_per_level must be "
                            f"{expected}")
        if n < 0 or (n == 0 and not allow_empty):
            raise ValueError(f"num_anchors_per_level[{i}] must be {kind}, got {n!r}; "
                             f"num_anchors_per_level must be {expected}")
        counts.append(int(n))
    if sum(counts) != n_anchors:
        raise ValueError(f"num_anchors_per_level {tuple(counts)} sums to {sum(counts)}, but "
                         f"anchors has {n_anchors} anchors (anchors.shape[-2]); expected "
                         "the per-level counts of the flat anchor array")
    return tuple(counts)


def _check_pair(xp: Any, anchors: Any, boxes: Any, names: tuple[str, str]
                ) -> tuple[Any, Any, tuple[int, ...]]:
    """Static checks of two ``(..., N, 4)`` box arrays; their common compute dtype and
    broadcast batch shape."""
    anchors = _prepare(xp, anchors, names[0])
    boxes = _prepare(xp, boxes, names[1])
    if anchors.ndim < 2 or boxes.ndim < 2:
        raise ValueError(f"{names[0]} and {names[1]} must have shape (..., N, 4), got "
                         f"{tuple(anchors.shape)} and {tuple(boxes.shape)}")
    batch = _batch_shape(names[0], anchors.shape[:-2], names[1], boxes.shape[:-2])
    anchors, boxes = _common_dtype(xp, anchors, boxes, *names)
    return anchors, boxes, batch


# --------------------------------------------------------------------------- kernels


def _fcos_assign_impl(anchors: Any, gts: Any, valid: Any, *, levels: tuple[int, ...],
                      radius: float, batch: tuple[int, ...], xp: Any) -> Any:
    """Matched gt per anchor of validated boxes."""
    with quiet(xp):  # huge areas overflowing to inf are expected and handled
        return _fcos_assign_body(anchors, gts, valid, levels=levels, radius=radius,
                                 batch=batch, xp=xp)


def _fcos_assign_body(anchors: Any, gts: Any, valid: Any, *, levels: tuple[int, ...],
                      radius: float, batch: tuple[int, ...], xp: Any) -> Any:
    """Candidates built gt-major, (..., G, A); the smallest-area candidate per anchor."""
    n_gts, n_anchors = gts.shape[-2], anchors.shape[-2]
    index = _index_dtype(xp, anchors)
    if n_gts == 0:
        return xp.full((*batch, n_anchors), BACKGROUND, dtype=index,
                       device=device_of(anchors))
    if valid is not None:  # padding may hold anything (even inf): an empty box at 0
        gts = xp.where(valid[..., None], gts, constant(xp, 0.0, gts))
    ax1, ay1, ax2, ay2 = (c[..., None, :] for c in _coords(anchors))  # (..., 1, A)
    gx1, gy1, gx2, gy2 = (c[..., :, None] for c in _coords(gts))  # (..., G, 1)
    two = constant(xp, 2.0, anchors)
    # torchvision's operations, in its order: centres (p + q) / 2, size = x2 - x1
    cx, cy = (ax1 + ax2) / two, (ay1 + ay2) / two
    size = ax2 - ax1
    gcx, gcy = (gx1 + gx2) / two, (gy1 + gy2) / two
    # centre sampling: Chebyshev distance to the gt's centre below radius · size (strict)
    reach = pinned(constant(xp, radius, size) * size, xp)
    near = xp.maximum(xp.abs(cx - gcx), xp.abs(cy - gcy)) < reach
    left, top, right, bottom = cx - gx1, cy - gy1, gx2 - cx, gy2 - cy
    inside = xp.minimum(xp.minimum(left, top), xp.minimum(right, bottom)) > \
        constant(xp, 0.0, anchors)
    far = xp.maximum(xp.maximum(left, top), xp.maximum(right, bottom))
    # scale range of each level: (4·size, 8·size), the first level from 0, the last to inf
    position = xp.arange(n_anchors, device=device_of(anchors))
    zero = constant(xp, 0.0, size)
    lower = xp.where(position < levels[0], zero, size * constant(xp, 4.0, size))
    upper = xp.where(position >= n_anchors - levels[-1], constant(xp, math.inf, size),
                     size * constant(xp, 8.0, size))
    candidate = near & inside & (far > lower) & (far < upper)
    if valid is not None:
        candidate = candidate & valid[..., :, None]
    # smallest area wins, compared exactly (no 1e8 - area offset); NaN/inf never candidates
    area = pinned((gx2 - gx1) * (gy2 - gy1), xp)  # (..., G, 1)
    key = xp.where(candidate, area, constant(xp, math.inf, area))
    best = xp.min(key, axis=-2)  # (..., A)
    hit = candidate & (key == best[..., None, :])
    # first hit: gt g scores G - g, the largest score is the lowest tied index; none -> 0
    weight = xp.arange(n_gts, 0, -1, dtype=index, device=device_of(anchors))[:, None]
    top_score = xp.max(xp.astype(hit, index) * weight, axis=-2)
    device = device_of(anchors)
    matched = xp.where(top_score > xp.asarray(0, dtype=index, device=device),
                       xp.asarray(n_gts, dtype=index, device=device) - top_score,
                       xp.asarray(BACKGROUND, dtype=index, device=device))
    return xp.broadcast_to(matched, (*batch, n_anchors))


def _ratio(a: Any, b: Any, xp: Any) -> Any:
    """``min(a, b) / max(a, b)`` where ``min > 0`` and ``max`` is finite, else 0."""
    low, high = xp.minimum(a, b), xp.maximum(a, b)
    ok = (low > constant(xp, 0.0, low)) & (high < constant(xp, math.inf, high))
    return xp.where(ok, low / xp.where(ok, high, constant(xp, 1.0, high)),
                    constant(xp, 0.0, low))


def _centerness_impl(anchors: Any, boxes: Any, matched: Any, *, xp: Any) -> Any:
    with quiet(xp):
        return _centerness_body(anchors, boxes, matched, xp=xp)


def _centerness_body(anchors: Any, boxes: Any, matched: Any, *, xp: Any) -> Any:
    if matched is not None and tuple(boxes.shape[:-1]) == tuple(matched.shape):
        # a background anchor's box may be anything (a gathered padding row): read zeros
        keep = matched >= xp.asarray(0, dtype=matched.dtype, device=device_of(matched))
        boxes = xp.where(keep[..., None], boxes, constant(xp, 0.0, boxes))
    ax1, ay1, ax2, ay2 = _coords(anchors)
    x1, y1, x2, y2 = _coords(boxes)
    two = constant(xp, 2.0, anchors)
    cx, cy = (ax1 + ax2) / two, (ay1 + ay2) / two
    c = xp.sqrt(_ratio(cx - x1, x2 - cx, xp) * _ratio(cy - y1, y2 - cy, xp))
    if matched is not None:
        c = xp.where(matched >= xp.asarray(0, dtype=matched.dtype, device=device_of(matched)),
                     c, constant(xp, 0.0, c))
    return c


# --------------------------------------------------------------------------- public


def fcos_assign(anchors: ArrayT, gt_boxes: ArrayT, /, *, num_anchors_per_level: Sequence[int],
                gt_valid: ArrayT | None = None, center_sampling_radius: Number = 1.5
                ) -> ArrayT:
    """Assign each FCOS location the ground truth it regresses, as torchvision's FCOS does.

    For location ``a`` with centre ``(x, y)`` and size ``s = x2 - x1`` of its anchor (one
    square anchor per location, side = the level's stride), and gt ``g`` with centre
    ``(c_x, c_y)`` and distances ``l = x - x1_g``, ``t = y - y1_g``, ``r = x2_g - x``,
    ``b = y2_g - y`` to its sides, ``a`` is a *candidate* for ``g`` when

    .. math::

        \\max(|x - c_x|, |y - c_y|) < \\rho\\, s, \\qquad \\min(l, t, r, b) > 0,
        \\qquad m_{lo}(a) < \\max(l, t, r, b) < m_{hi}(a),

    with ``ρ = center_sampling_radius``, ``m_lo = 4s`` (0 on the first level) and
    ``m_hi = 8s`` (``∞`` on the last level). Among its candidates ``a`` takes the gt of
    smallest area ``(x2_g − x1_g)(y2_g − y1_g)``, exact ties to the lowest gt index; with
    none it is ``BACKGROUND``.

    Differences from torchvision: the areas are compared as computed (in the boxes'
    dtype), where torchvision ranks by ``float32(1e8 − area)`` — near 1e8 float32 holds
    only multiples of 8, so areas a few px² apart tie there and the lower gt index wins
    even when it is the larger box, and a gt of area ``>= 1e8`` (e.g. 10⁴ × 10⁴ px) is
    never matched at all. Candidate tests are the same float operations as torchvision's,
    so everything else agrees integer for integer. torchvision sets every upper bound to
    ∞ when the last level has 0 locations (``[-0:]``); here each level must have at least
    one. Areas beyond the dtype's range (float32: sides near 1.8e19) are ``inf`` and tie.

    Args:
        anchors: ``(..., A, 4)`` real floating ``xyxy`` anchors, level-major (as
            torchvision's FCOS anchor generator or
            ``retinanet_anchors(size, sizes=strides, scales=(1,), aspect_ratios=(1,),
            offset=0.0)`` make them): shared ``(A, 4)`` or per image ``(B, A, 4)``.
        gt_boxes: ``(..., G, 4)`` ``xyxy`` ground truths, e.g. padded ``(B, G, 4)`` or one
            image's ``(G, 4)``; batch dimensions broadcast with the anchors'.
        num_anchors_per_level: static sequence of positive ints, locations per level in
            anchor order; must sum to ``A``.
        gt_valid: optional ``(..., G)`` boolean (``gt_boxes.shape[:-1]``); False marks
            padding, which never matches and may hold anything.
        center_sampling_radius: ``ρ > 0`` (torchvision's default 1.5).

    Returns:
        ``(broadcast batch..., A)`` integer array of the default index dtype (int64; int32
        on JAX without x64): the matched gt index per anchor, or ``BACKGROUND`` (-1).

    Raises:
        ValueError: boxes not ``(..., N, 4)``, batch shapes that do not broadcast, a
            ``gt_valid`` of the wrong shape, ``num_anchors_per_level`` not positive or
            not summing to ``A``, ``center_sampling_radius <= 0``; on eager backends a
            non-finite or inverted anchor or real gt (naming its index). Inside a trace
            the box checks are skipped and a non-finite gt or anchor never matches.
        TypeError: non-floating boxes, non-boolean ``gt_valid``, non-integer level
            counts, arrays from different libraries.

    Examples:
        >>> import numpy as np
        >>> anchors = np.asarray([[0., 0., 8., 8.], [8., 8., 16., 16.],  # stride 8
        ...                       [64., 48., 80., 64.]])                 # stride 16
        >>> gts = np.asarray([[0., 0., 140., 112.], [0., 0., 14., 14.], [4., 4., 24., 24.]])
        >>> fcos_assign(anchors, gts, num_anchors_per_level=[2, 1])  # anchor 1: gts 1, 2
        array([1, 1, 0])
        >>> fcos_assign(anchors, gts[None], num_anchors_per_level=[2, 1],
        ...             gt_valid=np.asarray([[True, False, True]]))
        array([[-1,  2,  0]])
    """
    xp = namespace(anchors=anchors, gt_boxes=gt_boxes, gt_valid=gt_valid)
    radius = check_number("center_sampling_radius", center_sampling_radius, low=0.0,
                          low_open=True)
    anchors, gts, batch = _check_pair(xp, anchors, gt_boxes, ("anchors", "gt_boxes"))
    levels = check_levels(num_anchors_per_level, anchors.shape[-2])
    valid = _check_mask(xp, gt_valid, "gt_valid", gts.shape[:-1], "gt_boxes.shape[:-1]")
    check_boxes(xp, anchors, "anchors")
    check_boxes(xp, gts, "gt_boxes", valid=valid)
    anchors, gts = stop_gradient(xp, anchors), stop_gradient(xp, gts)
    return _run(_fcos_assign_impl, xp, anchors, gts, valid, levels=levels, radius=radius,
                batch=batch)


def centerness_targets(anchors: ArrayT, boxes: ArrayT, /, *, matched: ArrayT | None = None
                       ) -> ArrayT:
    """FCOS centerness target of each location against the box it regresses.

    With ``(x, y)`` the anchor's centre and ``l = x − x1``, ``t = y − y1``,
    ``r = x2 − x``, ``b = y2 − y`` its distances to the sides of its matched box:

    .. math::

        c = \\sqrt{\\frac{\\min(l, r)}{\\max(l, r)} \\cdot \\frac{\\min(t, b)}{\\max(t, b)}}
        \\in [0, 1],

    1 at the box's centre, → 0 towards its sides. Each ratio is taken as 0 where its
    ``min <= 0`` (the centre on or outside that side, where torchvision's formula gives a
    negative ratio, NaN or ``0/0``), so ``c`` is never NaN; background anchors
    (``matched < 0`` when ``matched`` is given) get 0. No gradient flows (a target).

    torchvision (``FCOSHead.compute_loss``) takes the same ratios of its box coder's
    ``ltrb`` encoding, i.e. the distances divided by the anchor's width and height first;
    the ratios do not change, only by one rounding here (it is computed from the
    distances directly), and torchvision uses them on foreground anchors only.

    Args:
        anchors: ``(..., A, 4)`` real floating ``xyxy`` anchors (locations).
        boxes: ``(..., A, 4)`` ``xyxy`` box per anchor: its matched gt, e.g.
            ``take_along_axis(gt_boxes, max(fcos_assign(...), 0)[..., None], axis=-2)``;
            batch dimensions broadcast with the anchors'.
        matched: optional ``(broadcast batch..., A)`` integer matches
            (:func:`fcos_assign`'s result): where negative the target is 0 and the box
            (e.g. a gathered padding row) is not checked.

    Returns:
        ``(broadcast batch..., A)`` centerness in ``[0, 1]``, of the boxes' floating dtype
        (float16/bfloat16 computed and returned in float32).

    Raises:
        ValueError: shapes not ``(..., A, 4)`` / not broadcasting, ``matched`` of the wrong
            shape; on eager backends a non-finite or inverted anchor, or box of a matched
            anchor.
        TypeError: non-floating boxes, non-integer ``matched``, mixed libraries.

    Examples:
        >>> import numpy as np
        >>> anchors = np.asarray([[0., 0., 8., 8.], [8., 8., 16., 16.], [0., 0., 2., 2.]])
        >>> boxes = np.asarray([[0., 0., 14., 14.], [4., 4., 20., 20.], [4., 4., 8., 8.]])
        >>> centerness_targets(anchors, boxes)  # sqrt(4/10 · 4/10), 1, outside: 0
        array([0.4, 1. , 0. ])
        >>> centerness_targets(anchors, boxes, matched=np.asarray([0, -1, 2]))
        array([0.4, 0. , 0. ])
    """
    xp = namespace(anchors=anchors, boxes=boxes, matched=matched)
    anchors, boxes, batch = _check_pair(xp, anchors, boxes, ("anchors", "boxes"))
    if anchors.shape[-2] != boxes.shape[-2]:
        raise ValueError(f"boxes must have one box per anchor, shape (..., "
                         f"{anchors.shape[-2]}, 4) (anchors.shape[-2] = "
                         f"{anchors.shape[-2]}), got {tuple(boxes.shape)}")
    out_shape = (*batch, anchors.shape[-2])
    valid = None
    if matched is not None:
        check_integer(xp, matched, "matched")
        check_same_shape("the broadcast anchors and boxes (batch..., A)", out_shape,
                         "matched", matched.shape)
        if tuple(boxes.shape[:-1]) == out_shape:
            valid = matched >= xp.asarray(0, dtype=matched.dtype, device=device_of(matched))
    check_boxes(xp, anchors, "anchors")
    check_boxes(xp, boxes, "boxes", valid=valid)
    anchors, boxes = stop_gradient(xp, anchors), stop_gradient(xp, boxes)
    return _run(_centerness_impl, xp, anchors, boxes, matched)


for _f in (fcos_assign, centerness_targets):
    _f.__module__ = "focal_array.assigners"
del _f
