"""Numerically stable primitives written with ``xp`` only.

Every function takes a required keyword-only ``xp`` and arrays already in the compute
dtype. Nothing here overflows for finite input, and every derivative is finite.

|x| and max(x, 0) are written as ``where(x >= 0, …)`` rather than ``abs``/``maximum``:
autodiff then differentiates one smooth branch at x = 0 (abs' and maximum' split or vanish
there), so the gradient at exactly 0 is the true one, σ'(0) = 1/4.
"""

from __future__ import annotations

from typing import Any

from ._namespace import constant, device_of

__all__ = ["exp_neg_abs", "modulating", "one_hot_mask", "safe_log", "sigmoid_pair", "softplus",
           "softplus_pair"]


def exp_neg_abs(x: Any, *, xp: Any) -> tuple[Any, Any]:
    """(x ≥ 0, e^−|x|): the one exponential the sigmoid losses need, e ∈ (0, 1]."""
    nonneg = x >= constant(xp, 0.0, x)
    return nonneg, xp.exp(-xp.where(nonneg, x, -x))


def softplus_pair(x: Any, *, xp: Any, nonneg: Any = None, e: Any = None) -> tuple[Any, Any]:
    """(softplus(x), softplus(−x)), sharing log1p(e^−|x|); neither formed by subtraction.

    softplus(x) = max(x, 0) + log1p(e^−|x|) is exact to rounding and never overflows; its
    value at x ≪ 0 (≈ e^x, down to float32's smallest normal and below) keeps full relative
    accuracy, which ``softplus(x) − x`` would not.
    """
    if e is None:
        nonneg, e = exp_neg_abs(x, xp=xp)
    zero = constant(xp, 0.0, x)
    log1p_e = xp.log1p(e)
    return xp.where(nonneg, x, zero) + log1p_e, xp.where(nonneg, zero, -x) + log1p_e


def softplus(x: Any, *, xp: Any) -> Any:
    """log(1 + e^x), stably."""
    return softplus_pair(x, xp=xp)[0]


def sigmoid_pair(x: Any, *, xp: Any, nonneg: Any = None, e: Any = None) -> tuple[Any, Any]:
    """(σ(x), σ(−x)) = (p, 1 − p), each to a few ulps of relative accuracy.

    Both come from one e = exp(−|x|) ∈ (0, 1]: σ(|x|) = 1/(1 + e) and σ(−|x|) = e/(1 + e).
    Computing 1 − p as σ(−x), rather than by subtraction, keeps its relative accuracy when
    p is close to 1 — that is what the focal modulating factor (1 − p_t)^γ needs. Pass
    ``nonneg`` and ``e`` (from :func:`exp_neg_abs`) when the caller already has them.
    """
    if e is None:
        nonneg, e = exp_neg_abs(x, xp=xp)
    big = 1.0 / (1.0 + e)
    small = e * big
    return xp.where(nonneg, big, small), xp.where(nonneg, small, big)


def one_hot_mask(labels: Any, num_classes: int, *, axis: int = -1, xp: Any) -> Any:
    """Boolean mask, True at ``labels`` along a new ``axis``; negative labels give no True."""
    classes = xp.arange(num_classes, dtype=labels.dtype, device=device_of(labels))
    mask = xp.expand_dims(labels, axis=-1) == classes
    if axis not in (-1, mask.ndim - 1):
        mask = xp.moveaxis(mask, -1, axis)
    return mask


def modulating(q: Any, gamma: float, *, xp: Any) -> Any:
    """(1 − p_t)^γ from an accurately computed ``q = 1 − p_t``; None for γ = 0.

    pow's derivative γ·q^(γ−1) is infinite at q = 0 for γ < 1; the base is floored at the
    dtype's smallest normal number, which keeps it finite, and where the floor acts the
    exact factor (and the loss and gradient it multiplies) is itself below that number.
    """
    if gamma == 0.0:
        return None
    if gamma == 1.0:
        return q
    if gamma == 2.0:
        return q * q
    tiny = constant(xp, xp.finfo(q.dtype).smallest_normal, q)
    return xp.pow(xp.maximum(q, tiny), constant(xp, gamma, q))


def safe_log(p: Any, *, xp: Any) -> Any:
    """log(max(p, tiny)): a probability of exactly 0 gives −log(tiny), not −inf."""
    return xp.log(xp.maximum(p, constant(xp, xp.finfo(p.dtype).smallest_normal, p)))
