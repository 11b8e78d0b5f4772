"""Numerically stable primitives written with ``xp`` only.

Every function takes a required keyword-only ``xp`` and arrays already in the compute
dtype. Nothing here overflows for finite input, and every derivative is finite.
"""

from __future__ import annotations

from typing import Any

from ._namespace import constant, device_of

__all__ = ["log_sigmoid", "one_hot_mask", "sigmoid_pair", "softplus"]


def softplus(x: Any, *, xp: Any) -> Any:
    """log(1 + e^x) = max(x, 0) + log1p(e^-|x|): exact to rounding, never overflows."""
    zero = constant(xp, 0.0, x)
    return xp.maximum(x, zero) + xp.log1p(xp.exp(-xp.abs(x)))


def log_sigmoid(x: Any, *, xp: Any) -> Any:
    """log σ(x) = −softplus(−x)."""
    return -softplus(-x, xp=xp)


def sigmoid_pair(x: Any, *, xp: Any) -> tuple[Any, Any]:
    """(σ(x), σ(−x)) = (p, 1 − p), each to a few ulps of relative accuracy.

    Both come from one e = exp(−|x|) ∈ (0, 1]: σ(|x|) = 1/(1 + e) and σ(−|x|) = e/(1 + e).
    Computing 1 − p as σ(−x), rather than by subtraction, keeps its relative accuracy when
    p is close to 1 — that is what the focal modulating factor (1 − p_t)^γ needs.
    """
    e = xp.exp(-xp.abs(x))
    big = 1.0 / (1.0 + e)
    small = e * big
    nonneg = x >= constant(xp, 0.0, x)
    return xp.where(nonneg, big, small), xp.where(nonneg, small, big)


def one_hot_mask(labels: Any, num_classes: int, *, axis: int = -1, xp: Any) -> Any:
    """Boolean mask, True at ``labels`` along a new ``axis``; negative labels give no True."""
    classes = xp.arange(num_classes, dtype=labels.dtype, device=device_of(labels))
    expanded = xp.expand_dims(labels, axis=-1)
    mask = expanded == classes
    if axis not in (-1, mask.ndim - 1):
        mask = xp.moveaxis(mask, -1, axis)
    return mask

