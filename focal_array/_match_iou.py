"""The anchor–gt IoU behind :func:`focal_array.matcher.match_anchors`, in two layouts,
computed as the same float on every backend, compiler and batch shape.

Each IoU is torchvision's sequence of IEEE operations, ``w·h``, ``area_a + area_g −
inter``, ``inter / union``, each rounded once. Its products are *pinned*
(:func:`_pinned`): no compiler may contract them into the add that follows as a fused
multiply-add. XLA:CPU did, in some loop shapes and not others, which moved IoUs by 1-4 ulps
with the batch size, jit or eager, and the sharding, and with them the exact low-quality
ties. The max, min, subtractions and the division are correctly rounded everywhere, so
every backend holds the same float for every pair (only the sign of a zero may differ,
and the rule only compares), and so does :func:`~focal_array.boxes.box_iou`'s ``(A, G)``
layout of the same operations.

Memory: three float matrices of ``(..., G, A)``, updated in place where the backend has
mutable arrays (JAX stays functional and XLA fuses the chain).
"""

from __future__ import annotations

import math
from typing import Any

from ._box_common import binary_exponents, ordinary_range
from ._namespace import compiled as _compiled
from ._namespace import constant, device_of, is_numpy, is_strict, is_torch
from ._namespace import pinned as _pinned
from .boxes import _area, _batch_shape, _coordinate_rows, _coords, _safe_divide

# --------------------------------------------------------------------------- in place

_IN_PLACE = {"subtract": "__isub__", "multiply": "__imul__", "divide": "__itruediv__"}
_OUT_OF_PLACE = {"subtract": "__sub__", "multiply": "__mul__", "divide": "__truediv__"}


def _mutable(xp: Any) -> bool:
    return is_numpy(xp) or is_torch(xp) or is_strict(xp)


def _inplace(x: Any, op: str, y: Any, xp: Any) -> Any:
    """``x op= y`` on a fresh private temporary where the backend has mutable arrays
    (NumPy, PyTorch — eager or compiled —, array_api_strict); ``x op y`` elsewhere (JAX,
    where XLA fuses the chain anyway). Never called on a caller's array."""
    name = (_IN_PLACE if _mutable(xp) else _OUT_OF_PLACE)[op]
    return getattr(x, name)(y)


def _into(op: str, a: Any, b: Any, out: Any, xp: Any) -> Any:
    """``xp.<op>(a, b)`` written into ``out``, a private temporary of the broadcast shape
    and dtype, on NumPy and PyTorch; a new array elsewhere. Never a caller's array."""
    if is_numpy(xp):
        import numpy

        return getattr(numpy, op)(a, b, out=out)
    if is_torch(xp):
        import torch

        return getattr(torch, op)(a, b, out=out)
    return getattr(xp, op)(a, b)


def _clamp_min(x: Any, low: Any, xp: Any) -> Any:
    """``max(x, low)`` for a 0-d ``low``, in place on a private temporary where possible."""
    return _into("maximum", x, low, x, xp)


def _pair_extreme(op: str, g: Any, a: Any, out: Any, xp: Any) -> Any:
    """``xp.<op>(g, a)`` for a gt column ``(..., G, 1)`` and an anchor row ``(..., 1, A)``,
    into the private temporary ``out`` where possible.

    NumPy vectorizes ``minimum``/``maximum`` only when both operands run contiguously along
    the inner axis (against a broadcast column it is ~4x slower than ``subtract``): the
    column is first copied out to full rows, a cheap broadcast copy.
    """
    if is_numpy(xp):
        import numpy

        numpy.copyto(out, g)
        return getattr(numpy, op)(out, a, out=out)
    return _into(op, a, g, out, xp)


def _clamp_rows(x: Any, value: float, xp: Any) -> Any:
    """``max(x, value)`` of a private ``(..., G, A)`` temporary, in place where possible.

    On NumPy the bound is a full row of A (against a 0-d bound ``maximum`` is not
    vectorized, see :func:`_pair_extreme`).
    """
    if is_numpy(xp):
        import numpy

        row = numpy.full(x.shape[-1], value, dtype=x.dtype)
        return numpy.maximum(x, row, out=x)
    return _clamp_min(x, constant(xp, value, x), xp)


def _gt_major_quality(anchors: Any, gts: Any, ok: Any, crowd: Any, crowd_ioa: float,
                      xp: Any) -> tuple[Any, Any, tuple[Any, ...]]:
    """IoU ``(..., G, A)`` with excluded gts below 0, the per-anchor crowd flag (or None),
    and the free float temporaries of that shape (empty on JAX and array_api_strict)."""
    if is_torch(xp):  # integer matches only: no autograd through the out= writes below
        anchors, gts = anchors.detach(), gts.detach()
    rows = _coordinate_rows(xp, anchors)
    ax1, ay1, ax2, ay2 = (rows[k, ..., None, :] for k in range(4))
    gx1, gy1, gx2, gy2 = (c[..., :, None] for c in _coords(gts))
    shape = (*_batch_shape("anchors", anchors.shape[:-2], "gt_boxes", gts.shape[:-2]),
             gts.shape[-2], anchors.shape[-2])
    mutable = is_numpy(xp) or is_torch(xp)

    def fresh() -> Any:
        return xp.empty(shape, dtype=anchors.dtype, device=device_of(anchors)) \
            if mutable else None

    t, w, u = fresh(), fresh(), fresh()
    t = _pair_extreme("maximum", gx1, ax1, t, xp)
    w = _clamp_rows(_inplace(_pair_extreme("minimum", gx2, ax2, w, xp), "subtract", t, xp),
                    0.0, xp)
    t = _pair_extreme("maximum", gy1, ay1, t, xp)
    u = _clamp_rows(_inplace(_pair_extreme("minimum", gy2, ay2, u, xp), "subtract", t, xp),
                    0.0, xp)
    inter = _pinned(_inplace(w, "multiply", u, xp), xp)
    zero = constant(xp, 0.0, anchors)
    x1, y1, x2, y2 = (rows[k, ...] for k in range(4))  # boxes._area's operations
    area_a = _pinned(xp.maximum(x2 - x1, zero) * xp.maximum(y2 - y1, zero), xp)
    in_crowd = None
    # with no gts at all there is no crowd region (and max over an empty axis is undefined)
    if crowd is not None and shape[-2] > 0:
        # inter >= 0, so inter · 1 or 0 is the where() exactly, without a broadcast where
        crowd_f = xp.astype(crowd, inter.dtype)[..., :, None]
        crowd_inter = xp.max(_into("multiply", inter, crowd_f, t, xp), axis=-2)
        # compiled, a full-shape denominator (max(area_a, crowd_inter) is area_a: inter
        # <= area): XLA rewrites a division by a broadcast into a product with its
        # reciprocal, which rounds differently from the eager backends' division
        denominator = xp.maximum(area_a, crowd_inter) if _compiled(xp) else area_a
        ioa = _safe_divide(crowd_inter, denominator, xp)
        in_crowd = (ioa >= constant(xp, crowd_ioa, ioa)) & \
            (crowd_inter > constant(xp, 0.0, ioa))
    area_g = _pinned(_area(gts, xp), xp)
    union = _into("add", area_a[..., None, :], area_g[..., :, None], u, xp)
    union = _inplace(union, "subtract", inter, xp)
    # union == 0 only when inter == 0: then IoU = 0 / tiny = 0, never NaN
    union = _clamp_rows(union, xp.finfo(union.dtype).smallest_normal, xp)
    iou = _inplace(inter, "divide", union, xp)
    if ok is not None:
        # IoU - 2 < 0 for an excluded gt: it never wins a maximum over gts nor claims anchors
        # (the rule only ever compares it with >= 0 bounds), and a real gt's IoU is unchanged
        okf = xp.astype(ok, iou.dtype)[..., :, None]
        iou = _inplace(iou, "subtract", constant(xp, 2.0, okf) * (constant(xp, 1.0, okf) - okf),
                       xp)
    return iou, in_crowd, ((t, union) if mutable else ())


def _scaled(anchors: Any, gts: Any, xp: Any) -> tuple[Any, Any]:
    """Both box arrays times ``2**-s`` when a gt coordinate exceeds the dtype's ordinary
    range (:func:`~focal_array._box_common.ordinary_range`: ``2**61`` in float32,
    ``2**509`` in float64), else as given; ``s`` brings the dtype's largest coordinate
    into that range (67 in float32, 515 in float64).

    Areas are products of two sides: above the ordinary range they may overflow (float32:
    ~1.8e19) and the IoU of two identical huge boxes would be ``inf / inf``. IoU is
    scale-invariant, and scaling by a power of two is exact (every operation of the IoU
    then rounds exactly as unscaled), so the matches are those of the same boxes unscaled;
    sides far below the largest coordinate (float32: ``2**-60`` of it) may then underflow
    (they have no measurable IoU anyway). Only the gts decide: they are few, and a
    reduction over constant anchors would be constant-folded at every ``jit`` compilation
    (seconds at 200,000 anchors). An anchor whose area overflows with gts in the ordinary
    range gets IoU 0 (the exact IoU is below 1/256 then).

    In a trace, where the box checks are skipped, non-finite gts need no pass of their own:
    the pinned intersection and area of a NaN box are 0 and an infinite box has an infinite
    area, so either has IoU 0 with every anchor and claims nothing (as padding); the same
    holds for a non-finite anchor. They are only kept out of ``extent``.
    """
    if math.prod(gts.shape) == 0:
        return anchors, gts
    probe = gts
    if _compiled(xp):  # unchecked: a non-finite gt must not scale the others into underflow
        probe = xp.where(xp.isfinite(gts), gts, constant(xp, 0.0, gts))
    # max and -min: no |x| temporary; padding is already an empty box at 0
    extent = xp.maximum(xp.max(probe), -xp.min(probe))
    _, k_max, _ = binary_exponents(xp, gts.dtype)
    huge = ordinary_range(xp, gts.dtype)[1]
    factor = 2.0 ** (math.frexp(huge)[1] - 1 - (k_max + 1))  # exact power of two
    if is_numpy(xp) or is_strict(xp):  # host arrays: decide in Python, copy nothing
        if not bool(extent > huge):
            return anchors, gts
        scale = constant(xp, factor, anchors)
    else:
        scale = xp.where(extent > constant(xp, huge, extent),
                         constant(xp, factor, extent), constant(xp, 1.0, extent))
    return anchors * scale, gts * scale
