"""The matching core behind :mod:`focal_array.matcher`: option checks, the JAX dispatch
and the per-anchor match rule (the IoU it reads is built in :mod:`._match_iou`).

Two layouts, one rule. :func:`_match_core` reads a caller's ``(..., A, G)`` quality matrix
(:func:`~focal_array.matcher.match`). :func:`_match_anchors_impl` builds its own IoU
*gt-major*, ``(..., G, A)``, on every backend: COCO images have 3–7 gts against
57,600–200,700 anchors, and with the long anchor axis innermost every elementwise
operation and every reduction runs over contiguous rows of A (in the ``(A, G)`` layout
NumPy's and PyTorch's inner loops are only G long, which made matching several times
slower than its arithmetic; XLA's fused loop is about twice as fast gt-major too).

Each IoU is the same float on every backend and compiler (see :mod:`._match_iou`), and
the rule reads the matrix only through exact operations (max, first maximum, ``>=``, and
``best · (1 − 40u)`` for the ``"rounding"`` ties), so the integer matches are the same
everywhere. Beside the IoU: one or two bytes per pair for
NumPy's tie scores; never an int64 copy.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

from ._match_iou import (
    _gt_major_quality,
    _scaled,
)
from ._namespace import (
    constant,
    device_of,
    is_jax,
    is_numpy,
    is_strict,
    is_torch,
)
from ._validate import check_number, check_same_shape
from .boxes import _batch_shape, _common_dtype, _prepare, check_boxes

#: Per-anchor code of a negative (background) anchor: best IoU below ``low``.
BACKGROUND = -1
#: Per-anchor code of an ignored anchor: best IoU in ``[low, high)``, or inside a crowd box.
IGNORE = -2

#: The low-quality tie rules: ``"equal"`` (an anchor ties with its gt's best when their
#: IoUs are equal floats, torchvision's ``==``) and ``"rounding"`` (when they are within the
#: rounding-error bound of the IoU formula, ``TIE_BOUND_ULPS`` units of roundoff).
TIE_RULES = ("equal", "rounding")

#: Half-width of the ``"rounding"`` tie band in units of roundoff ``u`` (``2**-24`` in
#: float32): each computed IoU is within ``16u`` (relative) of the exact IoU of the
#: float boxes (7 roundings in ``inter``, 12 in ``union`` bounded by ``union >= (area_a +
#: area_g) / 2``, 1 in the division, to first order), so two IoUs that are equal in exact
#: arithmetic are within ``32u`` of each other; 40 leaves room for second-order terms and
#: the rounding of ``best · (1 − 40u)`` itself.
TIE_BOUND_ULPS = 40


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


def _check_tie_rule(tie_rule: Any) -> str:
    if not isinstance(tie_rule, str) or tie_rule not in TIE_RULES:
        raise ValueError(f"tie_rule must be one of {TIE_RULES}, got {tie_rule!r}")
    return tie_rule


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


def _claim_threshold(gt_best: Any, tol: float, rule: str, xp: Any) -> Any:
    """The quality at or above which a gt claims an anchor; +inf for a gt whose best
    quality is not positive (excluded, or overlapping no anchor).

    ``"equal"``: the best itself (minus ``tol``); ``"rounding"``: ``best · (1 − 40u)``
    (or ``best − tol`` where lower). ``1 − 40u`` is exact in the dtype, and the product is
    only compared, never added to, so its rounding is the same everywhere.
    """
    threshold = gt_best
    if rule == "rounding":
        unit = xp.finfo(gt_best.dtype).eps / 2
        threshold = gt_best * constant(xp, 1.0 - TIE_BOUND_ULPS * unit, gt_best)
    if tol > 0:
        threshold = xp.minimum(threshold, gt_best - constant(xp, tol, gt_best))
    if tol > 0 or rule == "rounding":
        tiny = constant(xp, xp.finfo(gt_best.dtype).smallest_normal, gt_best)
        threshold = xp.maximum(threshold, tiny)
    return xp.where(gt_best > constant(xp, 0.0, gt_best), threshold,
                    constant(xp, math.inf, gt_best))


def _match_core(q: Any, *, high: float, low: float, allow_low_quality: bool, tol: float,
                rule: str, xp: Any) -> Any:
    """Per-anchor match of a caller's quality matrix (..., A, G); excluded gts already < 0."""
    n_anchors, n_gts = q.shape[-2], q.shape[-1]
    if n_gts == 0:
        return xp.full(q.shape[:-1], BACKGROUND, dtype=_index_dtype(xp, q),
                       device=device_of(q))
    arg = xp.argmax(q, axis=-1)  # first maximum: ties go to the lowest gt index
    matched = _classify(xp.max(q, axis=-1), arg, high, low, xp)
    if allow_low_quality and n_anchors > 0:
        threshold = _claim_threshold(_max_over_anchors(q, xp), tol, rule, xp)  # (..., G)
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


def _match_gt_major(q: Any, scratch: tuple[Any, ...], *, high: float, low: float,
                    allow_low_quality: bool, tol: float, rule: str, xp: Any) -> Any:
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
        threshold = _claim_threshold(xp.max(q, axis=-1), tol, rule, xp)  # (..., G)
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


def _match_anchors_impl(anchors: Any, gts: Any, valid: Any, crowd: Any, **options: Any
                        ) -> Any:
    """Per-anchor matches of validated boxes (see :func:`_match_anchors_body`)."""
    xp = options["xp"]
    if is_numpy(xp) or is_strict(xp):
        import numpy

        # the area of an anchor far larger than every gt may overflow to inf: its IoU is
        # then 0, as documented, and not worth a warning
        with numpy.errstate(over="ignore"):
            return _match_anchors_body(anchors, gts, valid, crowd, **options)
    return _match_anchors_body(anchors, gts, valid, crowd, **options)


def _match_anchors_body(anchors: Any, gts: Any, valid: Any, crowd: Any, *, high: float,
                        low: float, allow_low_quality: bool, crowd_ioa: float, tol: float,
                        rule: str, xp: Any) -> Any:
    if valid is not None:
        # padding may hold anything (even NaN): make it an empty box before any math
        gts = xp.where(valid[..., None], gts, constant(xp, 0.0, gts))
        if crowd is not None:
            crowd = crowd & valid
    anchors, gts = _scaled(anchors, gts, xp)
    ok = valid
    if crowd is not None:
        ok = ~crowd if ok is None else ok & ~crowd
    iou, in_crowd, scratch = _gt_major_quality(anchors, gts, ok, crowd, crowd_ioa, xp)
    matched = _match_gt_major(iou, scratch, high=high, low=low,
                              allow_low_quality=allow_low_quality, tol=tol, rule=rule, xp=xp)
    if in_crowd is not None:
        not_positive = matched < _int_constant(xp, 0, matched)
        matched = _select(not_positive & in_crowd, _int_constant(xp, IGNORE, matched),
                          matched, xp)
    return matched
