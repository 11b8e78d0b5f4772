"""Numerically stable primitives written with ``xp`` only.

Every function takes a required keyword-only ``xp`` and arrays already in the compute
dtype. Nothing here overflows for finite input, and every derivative is finite.

The sigmoid primitives are written without ``select`` (``where``): XLA:CPU runs one
several times slower than ``min``/``max`` inside a fused loop and will not fuse it into a
reduction. JAX and PyTorch split ``min``/``max``'s derivative evenly at a tie, so the
symmetric forms below differentiate exactly at x = 0 (σ'(0) = 1/4).
"""

from __future__ import annotations

from typing import Any

from ._namespace import constant, device_of

__all__ = ["exp_pair", "modulating", "one_hot_mask", "safe_log", "sigmoid_softplus"]


def exp_pair(x: Any, *, xp: Any) -> tuple[Any, Any]:
    """(e₊, e₋) = (e^min(x, 0), e^min(−x, 0)): one is exactly 1, the other e^−|x| ∈ (0, 1]."""
    zero = constant(xp, 0.0, x)
    return xp.exp(xp.minimum(x, zero)), xp.exp(xp.minimum(-x, zero))


def sigmoid_softplus(z: Any, *, xp: Any) -> tuple[Any, Any, Any]:
    """(σ(z), σ(−z), softplus(z)), select-free, none formed by subtraction.

    σ(z) = e₊/(e₊ + e₋) and σ(−z) = e₋/(e₊ + e₋) are the numbers σ(|z|) = 1/(1 + e) and
    σ(−|z|) = e/(1 + e) of e = e^−|z|, bit for bit, each to a few ulps of relative
    accuracy; softplus(z) = max(z, 0) + log1p(e₊·e₋) is exact to rounding and never
    overflows, and keeps full relative accuracy at z ≪ 0 (≈ e^z), which
    ``softplus(−z) + z`` would not. The product (rather than min(e₊, e₋)) keeps autodiff's
    derivative right where |z| is below rounding and both factors read 1.
    """
    ep, en = exp_pair(z, xp=xp)
    inv = constant(xp, 1.0, z) / (ep + en)
    sp = xp.maximum(z, constant(xp, 0.0, z)) + xp.log1p(ep * en)
    return ep * inv, en * inv, sp


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
