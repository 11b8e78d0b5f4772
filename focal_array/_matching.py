"""The matching core behind :mod:`focal_array.matcher`: option checks, the JAX dispatch, the
anchor–gt IoU and the per-anchor match rule.

Two layouts, one rule. :func:`_match_core` reads an ``(..., A, G)`` quality matrix (a
caller's, for :func:`~focal_array.matcher.match`, and JAX's own IoU, see
:func:`_anchor_major_quality`). On the other backends :func:`_match_anchors_impl` builds
its IoU *gt-major*, ``(..., G, A)``: COCO images have 3–7 gts against 57,600–200,700
anchors, and with the long anchor axis innermost every elementwise operation and every
reduction runs over contiguous rows of A (in the ``(A, G)`` layout NumPy's and PyTorch's
inner loops are only G long, which made matching several times slower than its
arithmetic).

On those (unfused, eager) backends results do not depend on the layout: each IoU is the
same sequence of IEEE operations on the same two boxes (only the sign of a zero may
differ, and every later step compares), and the rule reads the matrix only through exact
operations (max, first maximum, >=).

Memory: three float matrices of ``(..., G, A)``, updated in place where the backend has
mutable arrays (JAX stays functional and XLA fuses the chain), plus one or two bytes per
pair for NumPy's tie scores; never an int64 copy.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

from ._namespace import (
    constant,
    device_of,
    is_jax,
    is_numpy,
    is_strict,
    is_torch,
)
from ._validate import check_number, check_same_shape
from .boxes import (
    _area,
    _batch_shape,
    _common_dtype,
    _coordinate_rows,
    _coords,
    _prepare,
    _safe_divide,
    check_boxes,
)

#: Per-anchor code of a negative (background) anchor: best IoU below ``low``.
BACKGROUND = -1
#: Per-anchor code of an ignored anchor: best IoU in ``[low, high)``, or inside a crowd box.
IGNORE = -2


# --------------------------------------------------------------------------- checks


def _check_thresholds(high: Any, low: Any) -> tuple[float, float]:
    high = check_number("high", high, low=0.0, high=1.0)
    low = check_number("low", low, low=0.0, high=1.0)
    if low > high:
        raise ValueError(
            f"low ({low}) must not exceed high ({high}): anchors with IoU >= high are "
            "positive, < low background, in between ignored"
        )
    return high, low


def _check_options(high: Any, low: Any, tie_tolerance: Any) -> tuple[float, float, float]:
    high, low = _check_thresholds(high, low)
    tol = check_number("tie_tolerance", tie_tolerance, low=0.0, high=1.0)
    return high, low, tol


def _check_mask(xp: Any, mask: Any, name: str, shape: Sequence[int], of: str) -> Any:
    if mask is None:
        return None
    if not xp.isdtype(mask.dtype, "bool"):
        raise TypeError(f"{name} must be a boolean array, got dtype {mask.dtype}")
    check_same_shape(of, tuple(shape), name, mask.shape)
    return mask


def _index_dtype(xp: Any, like: Any) -> Any:
    return xp.__array_namespace_info__().default_dtypes(device=device_of(like))["indexing"]


def _int_constant(xp: Any, value: int, like: Any) -> Any:
    return xp.asarray(value, dtype=like.dtype, device=device_of(like))


# --------------------------------------------------------------------------- dispatch


@functools.lru_cache(maxsize=128)
def _jax_compiled(kernel: Callable[..., Any], static: tuple[tuple[str, Any], ...]) -> Any:
    import jax

    return jax.jit(functools.partial(kernel, **dict(static)))


def _run(kernel: Callable[..., Any], xp: Any, *arrays: Any, **static: Any) -> Any:
    """Run a pure ``xp`` kernel on already validated arrays.

    On JAX the kernel runs as one ``jax.jit`` computation (options static): eager JAX would
    otherwise compile and dispatch each of its ~100 operations separately. Inside an outer
    ``jit``/``vmap`` trace the inner ``jit`` is simply inlined.
    """
    if is_jax(xp):
        return _jax_compiled(kernel, tuple(sorted({**static, "xp": xp}.items())))(*arrays)
    return kernel(*arrays, xp=xp, **static)


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


def _select(cond: Any, a: Any, b: Any, xp: Any) -> Any:
    """``xp.where(cond, a, b)`` for integer ``a``, ``b``; on PyTorch as ``b + cond·(a − b)``
    (exact in integers), which its CPU kernels run ~2x faster than ``torch.where``."""
    if is_torch(xp):
        return b + (a - b) * cond
    return xp.where(cond, a, b)


# --------------------------------------------------------------------------- (A, G) rule


def _max_over_anchors(q: Any, xp: Any) -> Any:
    """``xp.max(q, axis=-2)`` of a tall, narrow (..., A, G) matrix.

    PyTorch's CPU kernel reduces such an outer axis several times slower than blocks of it:
    there the rows are reduced in blocks of 512 first (the same maximum, exactly).
    """
    n = q.shape[-2]
    block = 512
    if not is_torch(xp) or n < 4 * block:
        return xp.max(q, axis=-2)
    m = n // block * block
    head = xp.reshape(q[..., :m, :], (*q.shape[:-2], m // block, block, q.shape[-1]))
    best = xp.max(xp.max(head, axis=-2), axis=-2)
    return best if m == n else xp.maximum(best, xp.max(q[..., m:, :], axis=-2))


def _classify(best: Any, arg: Any, high: float, low: float, xp: Any) -> Any:
    """Per anchor: its best gt where ``best >= high``, IGNORE in ``[low, high)``, else
    BACKGROUND."""
    return _select(
        best >= constant(xp, high, best),
        arg,
        _select(best >= constant(xp, low, best), _int_constant(xp, IGNORE, arg),
                _int_constant(xp, BACKGROUND, arg), xp),
        xp,
    )


def _claim_threshold(gt_best: Any, tol: float, xp: Any) -> Any:
    """The quality at or above which a gt claims an anchor; +inf for a gt whose best
    quality is not positive (excluded, or overlapping no anchor)."""
    if tol > 0:
        tiny = constant(xp, xp.finfo(gt_best.dtype).smallest_normal, gt_best)
        threshold = xp.maximum(gt_best - constant(xp, tol, gt_best), tiny)
    else:
        threshold = gt_best
    return xp.where(gt_best > constant(xp, 0.0, gt_best), threshold,
                    constant(xp, math.inf, gt_best))


def _match_core(q: Any, *, high: float, low: float, allow_low_quality: bool, tol: float,
                xp: Any) -> Any:
    """Per-anchor match of a caller's quality matrix (..., A, G); excluded gts already < 0."""
    n_anchors, n_gts = q.shape[-2], q.shape[-1]
    if n_gts == 0:
        return xp.full(q.shape[:-1], BACKGROUND, dtype=_index_dtype(xp, q),
                       device=device_of(q))
    arg = xp.argmax(q, axis=-1)  # first maximum: ties go to the lowest gt index
    matched = _classify(xp.max(q, axis=-1), arg, high, low, xp)
    if allow_low_quality and n_anchors > 0:
        threshold = _claim_threshold(_max_over_anchors(q, xp), tol, xp)  # (..., G)
        claimed = xp.any(q >= threshold[..., None, :], axis=-1)
        matched = xp.where(claimed, arg, matched)
    return matched


# --------------------------------------------------------------------------- (G, A) rule


def _first_max_gt(q: Any, best: Any, scratch: Any, xp: Any) -> Any:
    """``argmax`` over the gts of a gt-major ``(..., G, A)`` matrix (first maximum).

    NumPy and PyTorch take an argmax over an outer axis by transposing it innermost, which
    costs 10-60x a pass here. Instead each gt ``g`` tied at the maximum scores ``G - g``
    and a plain (vectorized) max over gts picks the lowest tied index. ``scratch`` is a
    free float temporary of ``q``'s shape (PyTorch compares fastest into a float output).
    """
    n = q.shape[-2]
    index = _index_dtype(xp, q)
    if is_numpy(xp) and n < 2**16:
        import numpy

        small = numpy.uint8 if n < 2**8 else numpy.uint16
        score = numpy.multiply(q == best[..., None, :],
                               numpy.arange(n, 0, -1, dtype=small)[:, None], dtype=small)
        top = numpy.max(score, axis=-2)
    elif is_torch(xp) and n < 2**24:  # float32 holds every score exactly
        import torch

        weight = torch.arange(n, 0, -1, dtype=scratch.dtype, device=scratch.device)
        torch.eq(q, best[..., None, :], out=scratch)
        top = scratch.mul_(weight[:, None]).amax(dim=-2)
    else:
        return xp.argmax(q, axis=-2)
    arg = xp.asarray(n, dtype=index, device=device_of(q)) - xp.astype(top, index)
    # no score at all only where a column is NaN (areas overflowing the dtype): stay in range
    return xp.minimum(arg, xp.asarray(n - 1, dtype=index, device=device_of(q)))


def _any_at_least(q: Any, threshold: Any, scratch: Any, xp: Any) -> Any:
    """Per anchor of a gt-major ``(..., G, A)`` matrix: ``q >= threshold`` for some gt
    (``threshold`` is ``(..., G)``)."""
    column = threshold[..., :, None]
    if is_torch(xp):  # a float comparison output and a float max beat bool ``any`` 20x
        import torch

        torch.ge(q, column, out=scratch)
        return scratch.amax(dim=-2) > constant(xp, 0.0, scratch)
    return xp.any(q >= column, axis=-2)


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
    inter = _inplace(w, "multiply", u, xp)
    zero = constant(xp, 0.0, anchors)
    x1, y1, x2, y2 = (rows[k, ...] for k in range(4))  # boxes._area's operations
    area_a = xp.maximum(x2 - x1, zero) * xp.maximum(y2 - y1, zero)
    in_crowd = None
    # with no gts at all there is no crowd region (and max over an empty axis is undefined)
    if crowd is not None and shape[-2] > 0:
        # inter >= 0, so inter · 1 or 0 is the where() exactly, without a broadcast where
        crowd_f = xp.astype(crowd, inter.dtype)[..., :, None]
        crowd_inter = xp.max(_into("multiply", inter, crowd_f, t, xp), axis=-2)
        ioa = _safe_divide(crowd_inter, area_a, xp)
        in_crowd = (ioa >= constant(xp, crowd_ioa, ioa)) & \
            (crowd_inter > constant(xp, 0.0, ioa))
    union = _into("add", area_a[..., None, :], _area(gts, xp)[..., :, None], u, xp)
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


def _anchor_major_quality(anchors: Any, gts: Any, ok: Any, crowd: Any, crowd_ioa: float,
                          xp: Any) -> tuple[Any, Any]:
    """IoU ``(..., A, G)`` with excluded gts at -1, and the per-anchor crowd flag (or None):
    JAX's layout.

    XLA fuses the whole chain into one loop nest, and which products it contracts into
    FMAs depends on the loop order: float32 IoUs computed gt-major differ from these in the
    last bit for ~1% of pairs, which moves exact low-quality ties. JAX keeps this layout
    (and these operations, in this order) so its matches stay those it always returned.
    """
    ax1, ay1, ax2, ay2 = (c[..., :, None] for c in _coords(anchors))
    gx1, gy1, gx2, gy2 = (c[..., None, :] for c in _coords(gts))
    zero = constant(xp, 0.0, anchors)
    w = xp.maximum(xp.minimum(ax2, gx2) - xp.maximum(ax1, gx1), zero)
    h = xp.maximum(xp.minimum(ay2, gy2) - xp.maximum(ay1, gy1), zero)
    inter = w * h
    area_a = _area(anchors, xp)
    in_crowd = None
    if crowd is not None and gts.shape[-2] > 0:
        crowd_inter = xp.max(xp.where(crowd[..., None, :], inter, zero), axis=-1)
        ioa = _safe_divide(crowd_inter, area_a, xp)
        in_crowd = (ioa >= constant(xp, crowd_ioa, ioa)) & (crowd_inter > zero)
    union = area_a[..., :, None] + _area(gts, xp)[..., None, :] - inter
    union = xp.maximum(union, constant(xp, xp.finfo(union.dtype).smallest_normal, union))
    iou = inter / union
    if ok is not None:
        okf = xp.astype(ok, iou.dtype)[..., None, :]
        iou = iou * okf - (constant(xp, 1.0, okf) - okf)
    return iou, in_crowd


def _match_gt_major(q: Any, scratch: tuple[Any, ...], *, high: float, low: float,
                    allow_low_quality: bool, tol: float, xp: Any) -> Any:
    """Per-anchor match of the library's own gt-major IoU ``(..., G, A)``."""
    n_gts, n_anchors = q.shape[-2], q.shape[-1]
    if n_gts == 0:
        return xp.full((*q.shape[:-2], n_anchors), BACKGROUND, dtype=_index_dtype(xp, q),
                       device=device_of(q))
    spare = scratch[0] if scratch else None
    best = xp.max(q, axis=-2)
    arg = _first_max_gt(q, best, spare, xp)  # ties go to the lowest gt index
    matched = _classify(best, arg, high, low, xp)
    if allow_low_quality and n_anchors > 0:
        threshold = _claim_threshold(xp.max(q, axis=-1), tol, xp)  # (..., G)
        matched = _select(_any_at_least(q, threshold, spare, xp), arg, matched, xp)
    return matched


# --------------------------------------------------------------------------- match_anchors


def _prepare_match_inputs(anchors: Any, gt_boxes: Any, gt_valid: Any, gt_crowd: Any,
                          xp: Any) -> tuple[Any, Any, Any, Any]:
    anchors = _prepare(xp, anchors, "anchors")
    gts = _prepare(xp, gt_boxes, "gt_boxes")
    if anchors.ndim < 2 or gts.ndim < 2:
        raise ValueError(
            "anchors and gt_boxes must have shape (..., A, 4) and (..., G, 4), got "
            f"{tuple(anchors.shape)} and {tuple(gts.shape)}"
        )
    _batch_shape("anchors", anchors.shape[:-2], "gt_boxes", gts.shape[:-2])
    anchors, gts = _common_dtype(xp, anchors, gts, "anchors", "gt_boxes")
    gt_shape = gts.shape[:-1]
    valid = _check_mask(xp, gt_valid, "gt_valid", gt_shape, "gt_boxes.shape[:-1]")
    crowd = _check_mask(xp, gt_crowd, "gt_crowd", gt_shape, "gt_boxes.shape[:-1]")
    check_boxes(xp, anchors, "anchors")
    check_boxes(xp, gts, "gt_boxes", valid=valid)
    return anchors, gts, valid, crowd


def _match_anchors_impl(anchors: Any, gts: Any, valid: Any, crowd: Any, *, high: float,
                        low: float, allow_low_quality: bool, crowd_ioa: float, tol: float,
                        xp: Any) -> Any:
    if valid is not None:
        # padding may hold anything (even NaN): make it an empty box before any math
        gts = xp.where(valid[..., None], gts, constant(xp, 0.0, gts))
        if crowd is not None:
            crowd = crowd & valid
    ok = valid
    if crowd is not None:
        ok = ~crowd if ok is None else ok & ~crowd
    rule = {"high": high, "low": low, "allow_low_quality": allow_low_quality, "tol": tol}
    if is_jax(xp):
        iou, in_crowd = _anchor_major_quality(anchors, gts, ok, crowd, crowd_ioa, xp)
        matched = _match_core(iou, **rule, xp=xp)
    else:
        iou, in_crowd, scratch = _gt_major_quality(anchors, gts, ok, crowd, crowd_ioa, xp)
        matched = _match_gt_major(iou, scratch, **rule, xp=xp)
    if in_crowd is not None:
        not_positive = matched < _int_constant(xp, 0, matched)
        matched = _select(not_positive & in_crowd, _int_constant(xp, IGNORE, matched),
                          matched, xp)
    return matched
