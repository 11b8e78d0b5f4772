"""Shared pieces of the box modules: static preparation, the eager well-formedness check, the
plain pairwise primitives, and the exact power-of-two rescaling that keeps IoU, GIoU and IoA
finite for every finite box.

:mod:`focal_array.boxes` (IoU family) and :mod:`focal_array.box_coder` (encode/decode) both
build on this module; :mod:`focal_array._matching` reads the same primitives through
:mod:`focal_array.boxes`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from typing import Any

from ._namespace import (
    compute_dtype,
    constant,
    device_of,
    is_numpy,
    is_strict,
    is_torch,
    is_tracing,
)
from ._validate import check_floating, eager_check, first_true_index

# --------------------------------------------------------------------------- helpers


def _prepare(xp: Any, boxes: Any, name: str) -> Any:
    """Check a box array statically and return it in its compute dtype."""
    check_floating(xp, boxes, name)
    if boxes.ndim < 1 or boxes.shape[-1] != 4:
        raise ValueError(
            f"{name} must have shape (..., 4) with the last dimension holding 4 coordinates, "
            f"got shape {tuple(boxes.shape)}"
        )
    dtype = compute_dtype(xp, boxes.dtype)
    if dtype != boxes.dtype:
        boxes = xp.astype(boxes, dtype)
    return boxes


def _coords(boxes: Any) -> tuple[Any, Any, Any, Any]:
    return boxes[..., 0], boxes[..., 1], boxes[..., 2], boxes[..., 3]


def _common_dtype(xp: Any, a: Any, b: Any, name_a: str, name_b: str) -> tuple[Any, Any]:
    """Bring two float arrays to one dtype (the wider of the two)."""
    if a.dtype == b.dtype:
        return a, b
    dtype = xp.result_type(a.dtype, b.dtype)
    return xp.astype(a, dtype), xp.astype(b, dtype)


def _batch_shape(name_a: str, shape_a: Sequence[int], name_b: str,
                 shape_b: Sequence[int]) -> tuple[int, ...]:
    """Broadcast two leading batch shapes, or raise a ValueError naming both arguments."""
    a, b = tuple(shape_a), tuple(shape_b)
    n = max(len(a), len(b))
    a = (1,) * (n - len(a)) + a
    b = (1,) * (n - len(b)) + b
    out = []
    for da, db in zip(a, b, strict=True):
        if da != db and da != 1 and db != 1:
            raise ValueError(
                f"the batch dimensions of {name_a} {tuple(shape_a)} and {name_b} "
                f"{tuple(shape_b)} do not broadcast"
            )
        out.append(db if da == 1 else da)
    return tuple(out)


def _coordinate_rows(xp: Any, boxes: Any) -> Any:
    """``(4, ..., N)`` coordinate rows of ``(..., N, 4)`` boxes, each contiguous along N on
    NumPy and PyTorch: over strided columns their kernels run 3-7x slower."""
    if is_numpy(xp):
        import numpy

        return numpy.ascontiguousarray(numpy.moveaxis(boxes, -1, 0))
    if is_torch(xp):
        import torch

        return torch.stack(torch.unbind(boxes, dim=-1))
    return xp.moveaxis(boxes, -1, 0)


def quiet(xp: Any) -> Any:
    """A context in which NumPy (and array_api_strict, which runs on it) does not warn about
    overflow or invalid operations: for the formulas whose infs are expected and handled."""
    if is_numpy(xp) or is_strict(xp):
        import numpy

        return numpy.errstate(invalid="ignore", over="ignore", divide="ignore")
    return contextlib.nullcontext()


def _all_sides_finite_nonnegative(xp: Any, boxes: Any) -> bool:
    """Cheap screen (two reductions over the sides, not seven passes): boxes are well formed
    exactly when every side ``x2 - x1``, ``y2 - y1`` is finite and >= 0 (a non-finite
    coordinate makes a side inf or NaN, which min/max propagate); a side overflowing to
    inf only sends the boxes on to the exact scan."""
    with quiet(xp):  # inf - inf here is expected, not worth a warning
        rows = _coordinate_rows(xp, boxes)
        sides = rows[2:, ...] - rows[:2, ...]
        ok = (xp.min(sides) >= constant(xp, 0.0, sides)) & \
            (xp.max(sides) < constant(xp, math.inf, sides))
    return not is_tracing(ok) and bool(ok)


def _first_bad_box(xp: Any, boxes: Any, valid: Any) -> tuple[tuple[int, ...], str] | None:
    """Eagerly find the first box that is non-finite or has x2 < x1 or y2 < y1."""
    if valid is None and _all_sides_finite_nonnegative(xp, boxes):
        return None
    x1, y1, x2, y2 = _coords(boxes)
    nonfinite = ~xp.all(xp.isfinite(boxes), axis=-1)
    bad = nonfinite | (x2 < x1) | (y2 < y1)
    if valid is not None:
        bad = bad & valid
    anything = xp.any(bad)
    # a concrete array used inside a trace (e.g. anchors closed over by a jitted function)
    # still yields abstract results: the check is skipped then
    if is_tracing(anything) or not bool(anything):
        return None
    index = first_true_index(xp, bad)
    if bool(nonfinite[index]):
        reason = "a non-finite coordinate"
    elif bool(x2[index] < x1[index]):
        reason = "x2 < x1"
    else:
        reason = "y2 < y1"
    return index, reason


def check_boxes(xp: Any, boxes: Any, name: str, *, valid: Any = None) -> None:
    """On eager backends, raise ValueError naming the first malformed ``xyxy`` box.

    A box is malformed when a coordinate is not finite or ``x2 < x1`` or ``y2 < y1``.
    ``valid`` (boolean, ``boxes.shape[:-1]``) restricts the check to real boxes (padding
    may hold anything). Skipped inside a trace.
    """
    if math.prod(boxes.shape) == 0:
        return
    found: list[Any] = []

    def bad() -> Any:
        result = _first_bad_box(xp, boxes, valid)
        if result is None:
            return False
        found.append(result)
        return True

    def message() -> str:
        index, reason = found[0]
        values = [float(boxes[(*index, k)]) for k in range(4)]
        where = ", ".join(str(i) for i in index)
        return (
            f"{name}[{where}] = {values} has {reason}; boxes must be finite xyxy "
            "[x1, y1, x2, y2] with x1 <= x2 and y1 <= y2 (use convert() for xywh/cxcywh)"
        )

    arrays = [boxes] if valid is None else [boxes, valid]
    eager_check(arrays, bad, message)


def _pairwise(a: Any, b: Any) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """Coordinates shaped to broadcast to (..., N, M): a's along N, b's along M."""
    ca = tuple(c[..., :, None] for c in _coords(a))
    cb = tuple(c[..., None, :] for c in _coords(b))
    return ca, cb


def _area(boxes: Any, xp: Any) -> Any:
    """Area of xyxy boxes, a malformed (inverted) side counting as 0."""
    x1, y1, x2, y2 = _coords(boxes)
    zero = constant(xp, 0.0, boxes)
    return xp.maximum(x2 - x1, zero) * xp.maximum(y2 - y1, zero)


def _intersection(a: Any, b: Any, xp: Any) -> Any:
    """Pairwise intersection area (..., N, M), built per coordinate (no corner tensors)."""
    (ax1, ay1, ax2, ay2), (bx1, by1, bx2, by2) = _pairwise(a, b)
    zero = constant(xp, 0.0, a)
    w = xp.maximum(xp.minimum(ax2, bx2) - xp.maximum(ax1, bx1), zero)
    h = xp.maximum(xp.minimum(ay2, by2) - xp.maximum(ay1, by1), zero)
    return w * h


def _safe_divide(num: Any, den: Any, xp: Any) -> Any:
    """num / den where den > 0, else 0 — with finite gradients (double-where)."""
    zero = constant(xp, 0.0, den)
    one = constant(xp, 1.0, den)
    positive = den > zero
    return xp.where(positive, num / xp.where(positive, den, one), zero)


# --------------------------------------------------------------------------- rescaling
#
# IoU, GIoU and IoA are ratios of areas, so they do not change when the x axis is scaled by
# one positive factor and the y axis by another. Scaling by a power of two is exact in
# binary floating point (while the result stays in the normal range), so each pair can be
# moved, per axis, to where its coordinates have magnitude ~1: then no side, area, union or
# enclosing area can overflow, and no area of a box larger than ~2^-24 of the pair's extent
# leaves the normal range, for every finite box of the dtype. On boxes where the plain
# formulas neither overflow nor underflow (`ordinary`) each rescaled operation rounds
# exactly as the unscaled one, so the results are bit-identical to the plain formulas.


def binary_exponents(xp: Any, dtype: Any) -> tuple[int, int, int]:
    """``(k_min, k_max, p)`` of a real floating dtype: ``2**k`` is a normal number for
    ``k_min <= k <= k_max`` (float32: -126, 127), and ``p`` bits of precision (24)."""
    info = xp.finfo(dtype)
    k_min = math.frexp(float(info.smallest_normal))[1] - 1
    k_max = math.frexp(float(info.max))[1] - 1
    return k_min, k_max, 2 - math.frexp(float(info.eps))[1]


def ordinary_range(xp: Any, dtype: Any) -> tuple[float, float]:
    """``(lo, hi)``: on boxes whose non-zero coordinates all have magnitude in [lo, hi] the
    plain area formulas are exact up to rounding (float32: 2^-39 ≈ 1.8e-12 to 2^61 ≈ 2.3e18).

    Derivation: a side or intersection side ``c2 - c1 > 0`` of such coordinates is at least
    ``2^(log2 lo - p + 1)``, so every product of two is at least ``2^(2 log2 lo - 2p + 2)``
    ``>= 2^k_min`` (normal); every side is at most ``2 hi``, so an area is at most
    ``4 hi^2`` and a union ``8 hi^2 < 2^(k_max + 1)`` (finite).
    """
    k_min, k_max, p = binary_exponents(xp, dtype)
    return 2.0 ** (k_min // 2 + p), 2.0 ** ((k_max + 1) // 2 - 3)


def ordinary(xp: Any, *boxes: Any) -> bool:
    """Eagerly: every coordinate is 0 or in :func:`ordinary_range` (two reductions per array,
    over the boxes, not the pairs). False under a trace, where the data cannot be read."""
    for b in boxes:
        if math.prod(b.shape) == 0:
            continue
        lo, hi = ordinary_range(xp, b.dtype)
        mag = xp.abs(b)
        smallest = xp.min(xp.where(mag > constant(xp, 0.0, b), mag, constant(xp, math.inf, b)))
        ok = (xp.max(mag) <= constant(xp, hi, b)) & (smallest >= constant(xp, lo, b))
        if is_tracing(ok) or not bool(ok):
            return False
    return True


def axis_scale(xp: Any, lo: Any, hi: Any) -> Any:
    """Per box, the exact power of two ``2^k`` that brings ``max(|lo|, |hi|)`` (the box's
    extent from the origin along one axis) into [0.5, 4]: ``k = -floor(log2 m) - 1``,
    clipped so that ``2^k`` is a normal number (a subnormal factor would be flushed to 0
    by XLA). ``m`` = 0 (or subnormal) gets 1/2; NaN gets 1/2 as well.

    ``log2`` only picks ``k``: an ``m`` within a rounding of a power of two may get the
    neighbouring ``k``, which still lands in the interval. ``2^k`` itself comes from a
    table of exact powers of two (``pow`` is not exact on every backend).
    """
    k_min, k_max, _ = binary_exponents(xp, lo.dtype)
    m = xp.maximum(xp.abs(lo), xp.abs(hi))
    tiny = constant(xp, float(xp.finfo(lo.dtype).smallest_normal), m)
    m = xp.where(m >= tiny, m, constant(xp, 1.0, m))  # 0, subnormal, NaN -> 1
    k = xp.clip(-xp.floor(xp.log2(m)) - constant(xp, 1.0, m), float(k_min), float(k_max))
    table = xp.asarray([2.0 ** j for j in range(k_min, k_max + 1)], dtype=lo.dtype,
                       device=device_of(lo))
    index = xp.astype(xp.reshape(k, (-1,)) - constant(xp, float(k_min), k), xp.int32)
    return xp.reshape(xp.take(table, index, axis=0), k.shape)


def scaled_area(boxes: Any, sx: Any, sy: Any, xp: Any) -> Any:
    """:func:`_area` of ``boxes`` scaled by ``sx`` along x and ``sy`` along y."""
    x1, y1, x2, y2 = _coords(boxes)
    zero = constant(xp, 0.0, boxes)
    return xp.maximum(x2 * sx - x1 * sx, zero) * xp.maximum(y2 * sy - y1 * sy, zero)


def finite_boxes(xp: Any, boxes: Any) -> Any:
    """``(...)`` boolean: every coordinate of the box is finite."""
    return xp.all(xp.isfinite(boxes), axis=-1)
