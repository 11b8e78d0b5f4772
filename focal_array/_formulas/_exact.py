r"""Error-free transformations: a rounded product or difference and its exact rounding error.

A loss of the form :math:`\mathrm{softplus}(z)` with :math:`z \ll 0` is :math:`\approx e^z`:
an absolute error :math:`\delta` in :math:`z` becomes a relative error :math:`\delta` in the
loss. A margin :math:`z = \gamma u` or :math:`u = t - b` rounded to half an ulp is off by
up to :math:`|z|\,2^{-24}` (4.8e-6 at :math:`z = -80` in float32), more than the 2e-6 the
losses promise; these helpers recover that error exactly, so the formula can apply it to
first order (as :mod:`focal_array._formulas.softmax` does for the softmax margin).

Products use Dekker's algorithm on Veltkamp splits (each half has at most half the
significand's bits, so every partial product is exact). A compiler that contracts
``a·b + c`` into a fused multiply-add would break the split and the rounded product; both
are passed through :func:`focal_array._namespace.pinned`, which stops that where a
compiler fuses (JAX, ``torch.compile``) and is the identity elsewhere. The partial products
are exact, so contracting them changes nothing.
"""

from __future__ import annotations

import math
from typing import Any

from .._namespace import constant, pinned

__all__ = [
    "constant_parts",
    "significand_bits",
    "split",
    "two_prod",
    "two_prod_constant",
]

Array = Any


def significand_bits(xp: Any, dtype: Any) -> int:
    """Bits of the significand of a floating dtype: 24 for float32, 53 for float64."""
    return 1 - round(math.log2(float(xp.finfo(dtype).eps)))


def _round_to_bits(value: float, bits: int) -> float:
    """``value`` rounded (to nearest, ties to even) to ``bits`` significant bits."""
    if value == 0.0 or not math.isfinite(value):
        return value
    mant, exp = math.frexp(value)
    return math.ldexp(round(mant * 2.0**bits), exp - bits)


def constant_parts(value: float, bits: int) -> tuple[float, float, float, float]:
    """(v, hi, lo, rest) of a Python float for a dtype of ``bits`` significand bits.

    ``v`` is ``value`` rounded to the dtype, ``v = hi + lo`` exactly with ``hi`` of
    ``⌈bits/2⌉`` bits and ``lo`` of the others (so ``hi·a`` and ``lo·a`` are exact for an
    ``a`` split at runtime), and ``rest = value − v`` (to float64 rounding).
    """
    v = _round_to_bits(float(value), bits)
    hi = _round_to_bits(v, (bits + 1) // 2)
    return v, hi, v - hi, float(value) - v


def split(a: Array, *, xp: Any) -> tuple[Array, Array]:
    """Veltkamp's split: ``a = hi + lo`` exactly, each with at most half the significand.

    ``|a|`` must stay below the dtype's largest number over ``2^⌈bits/2⌉ + 1`` (callers
    clamp).
    """
    bits = significand_bits(xp, a.dtype)
    c = pinned(constant(xp, 2.0 ** ((bits + 1) // 2) + 1.0, a) * a, xp)
    hi = c - pinned(c - a, xp)
    return hi, a - hi


def two_prod_constant(a: Array, value: float, *, xp: Any) -> tuple[Array, Array]:
    """(round(v·a), v·a − round(v·a)) for a Python float ``value`` rounded to ``v``."""
    v, hi, lo, _ = constant_parts(value, significand_bits(xp, a.dtype))
    prod = pinned(constant(xp, v, a) * a, xp)
    a_hi, a_lo = split(a, xp=xp)
    c_hi, c_lo = constant(xp, hi, a), constant(xp, lo, a)
    err = ((c_hi * a_hi - prod) + c_hi * a_lo + c_lo * a_hi) + c_lo * a_lo
    return prod, err


def two_prod(a: Array, b: Array, *, xp: Any) -> tuple[Array, Array]:
    """(round(a·b), a·b − round(a·b)) of two arrays (Dekker)."""
    prod = pinned(a * b, xp)
    a_hi, a_lo = split(a, xp=xp)
    b_hi, b_lo = split(b, xp=xp)
    err = ((a_hi * b_hi - prod) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo
    return prod, err
