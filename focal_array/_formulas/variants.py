r"""Elementwise sigmoid variants of the focal loss: QFL, VFL and FL*, value and derivative.

Notation (as in :mod:`focal_array._formulas.sigmoid`): logits :math:`x`, targets
:math:`y \in [0, 1]`, :math:`p = \sigma(x)`, :math:`s = 1 - p = \sigma(-x)` and
:math:`B = \mathrm{BCE}(x, y) = y\,\mathrm{softplus}(-x) + (1 - y)\,\mathrm{softplus}(x)`,
with :math:`B' = p - y` and :math:`p' = p s`. :math:`p`, :math:`s` and :math:`B` come from
:math:`e_\pm = e^{\min(\pm x, 0)}` (:func:`focal_array._stable.exp_pair`): each to a few
ulps, none by subtraction, select-free.

**Quality focal loss** (GFL): :math:`\ell = B\,|d|^\beta` with :math:`d = y - p`, formed as
:math:`d = y s - (1 - y) p` (each product accurate; the rounding error is
:math:`\lesssim 4\epsilon\,(y s + (1 - y) p) \le 8\epsilon \min(p, s)` near
:math:`y = p`, half that of ``y - p`` as :math:`p \to 1`). Near :math:`y = \sigma(x)` the
difference is ill-conditioned for any formula in the dtype: the relative error of
:math:`|d|^\beta` is :math:`\beta` times that of :math:`d`, which grows as
:math:`\epsilon\,p s / |d|`. The derivative (the whole formula differentiated, nothing
detached) is

.. math::

    \frac{\partial \ell}{\partial x} = -|d|^\beta\left(d + \beta B\, p s\,
    \frac{\mathrm{sign}(d)}{\max(|d|, \text{tiny})}\right),

a sum of two terms of the same sign. For :math:`\beta < 1` the exact derivative is
infinite at :math:`d = 0`; the division's floor at the smallest normal number keeps it
finite (and 0 at :math:`d = 0` exactly), and :math:`|d|^\beta` is continued linearly to 0
below that number, so the loss is exactly 0 at :math:`d = 0`.

**Varifocal loss**: :math:`\ell = w B` with :math:`w = y` where :math:`y > 0` and
:math:`w = \alpha p^\gamma` where :math:`y = 0`, written :math:`w = y + n \alpha p^\gamma`
with :math:`n = 1 - \lceil y \rceil` (exactly 1 at :math:`y = 0`, 0 on :math:`(0, 1]`):
arithmetic, not a select. The weight is part of the formula, its derivative included
(as mmdetection and ultralytics compute it, without detaching):

.. math::

    \frac{\partial \ell}{\partial x} = w\,(p - y) + n\,\alpha\gamma\,p^\gamma s\,B,

for :math:`y = 0` the positive :math:`\alpha p^\gamma (p + \gamma s B)`.

**FL\*** (focal loss appendix): with :math:`\sigma_y = 1 - 2y` (:math:`\mp 1` for 0/1
targets; linear in soft targets, as fvcore) and the margin
:math:`z = -(\gamma x_t + \beta) = \gamma u`, :math:`u = \sigma_y x - \beta/\gamma`:

.. math::

    \ell = \alpha_t\,\frac{\mathrm{softplus}(z)}{\gamma}
         = \alpha_t\left(\max(u, 0) + \frac{\log(1 + e^{-|z|})}{\gamma}\right), \qquad
    \frac{\partial \ell}{\partial x} = \alpha_t\,\sigma_y\,\sigma(z).

The rounding errors of :math:`u` and :math:`z` (and of γ and β/γ in the dtype) are
recovered exactly (:mod:`focal_array._formulas._exact`) and applied to first order to
:math:`e^{-|z|}` and :math:`\sigma(z)`: where :math:`z \ll 0` the loss is
:math:`\approx e^z/\gamma`, and an absolute error in :math:`z` is a relative one in the loss.
Where they are known to be exact (0/1 targets, γ a power of two, β = 0: the defaults) no
correction is computed.

References:
    Li et al. *Generalized Focal Loss*. NeurIPS 2020, arXiv:2006.04388.
    Zhang, Wang, Dayoub, Sünderhauf. *VarifocalNet*. CVPR 2021, arXiv:2008.13367.
    Lin et al. *Focal Loss for Dense Object Detection*, appendix A. arXiv:1708.02002.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .._namespace import constant, pinned, stop_gradient
from .._stable import exp_pair, modulating
from ._exact import constant_parts, significand_bits, two_prod, two_prod_constant
from .base import Formula
from .softmax import _two_sum

__all__ = ["QualityFocal", "SigmoidFocalStar", "Varifocal"]

Array = Any

#: Inputs of the runtime splits are clamped to ±2^64: far below overflow of the split's
#: 2^27 + 1 scaling in float32 and float64, far above any margin whose e^−|z| is nonzero.
_SPLIT_LIMIT = 2.0**64


def soft_parts(x: Array, y: Array, *, xp: Any) -> tuple[Array, Array, Array, Array]:
    """(p, s, B, 1 − y): σ(x), σ(−x) and BCE(x, y) for targets y in x's dtype."""
    zero, one = constant(xp, 0.0, x), constant(xp, 1.0, x)
    neg = one - y
    ep, en = exp_pair(x, xp=xp)
    inv = one / (ep + en)
    bce = y * xp.maximum(-x, zero) + neg * xp.maximum(x, zero) + xp.log1p(ep * en)
    return ep * inv, en * inv, bce, neg


def _tiny(xp: Any, like: Array) -> Array:
    return constant(xp, float(xp.finfo(like.dtype).smallest_normal), like)


def _power(a: Array, beta: float, *, xp: Any) -> Array | None:
    """a^β for a ≥ 0 (None for β = 0), with a derivative finite everywhere.

    β ∉ {1, 2}: the base is floored at the smallest normal number (pow's derivative is
    infinite at 0 for β < 1); for β < 1 the floor's value tiny^β is itself far above that
    number, so below it the power is continued linearly, tiny^β · a / tiny, to exactly 0.
    """
    if beta == 0.0 or beta == 1.0 or beta == 2.0:
        return modulating(a, beta, xp=xp)
    tiny = _tiny(xp, a)
    m = xp.pow(xp.maximum(a, tiny), constant(xp, beta, a))
    if beta < 1.0:
        ramp = xp.minimum(a * constant(xp, 1.0 / float(xp.finfo(a.dtype).smallest_normal), a),
                          constant(xp, 1.0, a))
        m = m * ramp
    return m


@dataclass(frozen=True)
class QualityFocal(Formula):
    """BCE(x, y) · |y − σ(x)|^β from logits and soft targets; β = 0 is the BCE."""

    beta: float

    def terms(self, x: Array, y: Array, *, xp: Any, axis: int = -1, with_grad: bool
              ) -> tuple[Array, Array | None]:
        p, s, bce, neg = soft_parts(x, y, xp=xp)
        d = y * s - neg * p  # y − σ(x)
        m = _power(xp.abs(d), self.beta, xp=xp)
        loss = bce if m is None else m * bce
        if not with_grad:
            return loss, None
        if m is None:
            return loss, -d
        # p s / |d| as (min(p, s) / |d|) · max(p, s): no intermediate underflows (p s
        # does, at |x| ≳ 44 in float32) or overflows (s / |d| does, at y = 0, x ≪ 0)
        c = xp.sign(d) / xp.maximum(xp.abs(d), _tiny(xp, d))
        ratio = (xp.minimum(p, s) * c) * xp.maximum(p, s)
        return loss, -(m * (d + constant(xp, self.beta, x) * bce * ratio))


@dataclass(frozen=True)
class Varifocal(Formula):
    """w · BCE(x, y) with w = y for y > 0 and α σ(x)^γ for y = 0; derivative through w."""

    alpha: float
    gamma: float

    def terms(self, x: Array, y: Array, *, xp: Any, axis: int = -1, with_grad: bool
              ) -> tuple[Array, Array | None]:
        one = constant(xp, 1.0, x)
        p, s, bce, comp = soft_parts(x, y, xp=xp)
        neg = one - xp.ceil(y)  # 1 at y = 0, 0 on (0, 1]: arithmetic, fusible
        mod = modulating(p, self.gamma, xp=xp)
        an = constant(xp, self.alpha, x) * neg
        a_mod = an if mod is None else an * mod  # α p^γ at negatives, 0 elsewhere
        w = y + a_mod
        loss = w * bce
        if not with_grad:
            return loss, None
        grad = w * (comp * p - y * s)  # w (p − y), each product accurate
        if self.gamma:
            grad = grad + constant(xp, self.gamma, x) * a_mod * s * bce
        return loss, grad


@dataclass(frozen=True)
class SigmoidFocalStar(Formula):
    """FL* = α_t softplus(−(γ x_t + β)) / γ, x_t = (2y − 1) x; ``hard``: 0/1 targets."""

    alpha: float | None
    gamma: float
    beta: float
    hard: bool

    def specialize(self, y: Array, *, xp: Any) -> SigmoidFocalStar:
        """The 0/1 form (no rounding in x_t) where every target is exactly 0 or 1."""
        if self.hard or y.dtype == xp.bool or not bool(xp.all((y == 0) | (y == 1))):
            return self
        return SigmoidFocalStar(alpha=self.alpha, gamma=self.gamma, beta=self.beta, hard=True)

    def _margin(self, x: Array, y: Array, *, xp: Any) -> tuple[Array, Array, Array, Any]:
        """(σ_y, u, z, err_z): z ≈ γ u rounded, err_z its error (None where exact)."""
        one, two = constant(xp, 1.0, x), constant(xp, 2.0, x)
        lim = constant(xp, _SPLIT_LIMIT, x)
        bits = significand_bits(xp, x.dtype)
        if self.hard:
            sign = one - two * y  # ±1: σ_y x exact
            t, err_u = sign * x, None
        else:
            sign, s_err = _two_sum(one, -(two * y))  # 1 − 2y and its rounding error
            _, t_err = two_prod(sign, xp.minimum(xp.maximum(x, -lim), lim), xp=xp)
            # the product itself, unclamped (the same number where |x| ≤ 2^64), pinned:
            # contracted into the two-sum below, its rounding would not be t_err
            t = pinned(sign * x, xp)
            err_u = t_err + s_err * x
        b, _, _, b_rest = constant_parts(self.beta / self.gamma, bits)
        if b:
            t, e = _two_sum(t, constant(xp, -b, x))
            e = e - constant(xp, b_rest, x)
            err_u = e if err_u is None else err_u + e
        g, _, _, g_rest = constant_parts(self.gamma, bits)
        if math.frexp(g)[0] == 0.5:
            z, err_z = constant(xp, g, x) * t, None  # a power of two: exact
        else:
            z, err_z = two_prod_constant(xp.minimum(xp.maximum(t, -lim), lim), g, xp=xp)
            z = constant(xp, g, x) * t
        if g_rest:
            extra = constant(xp, g_rest, x) * t
            err_z = extra if err_z is None else err_z + extra
        if err_u is not None:
            extra = constant(xp, self.gamma, x) * err_u
            err_z = extra if err_z is None else err_z + extra
        if err_z is not None:
            # at most a few ulps of |z| where e^−|z| is not 0 (|z| < 745): clamped, a
            # garbage error of a clamped split (|z| ≫ 2^64) cannot flip the factors' sign;
            # a rounding correction, mathematically constant to autodiff too
            cap = constant(xp, 2.0**-10, x)
            err_z = stop_gradient(xp, xp.minimum(xp.maximum(err_z, -cap), cap))
        return sign, t, z, err_z

    def terms(self, x: Array, y: Array, *, xp: Any, axis: int = -1, with_grad: bool
              ) -> tuple[Array, Array | None]:
        y = xp.astype(y, x.dtype, copy=False)
        zero, one = constant(xp, 0.0, x), constant(xp, 1.0, x)
        sign, u, z, err = self._margin(x, y, xp=xp)
        ep, en = exp_pair(z, xp=xp)
        small = ep * en  # e^−|z|
        if err is not None:
            # |z + err| = |z| + sign(z)·err: e^−|z| and σ(z) to first order in err
            small = small * (one - xp.sign(z) * err)
            half = constant(xp, 0.5, x) * err
            ep, en = ep * (one + half), en * (one - half)
        loss = xp.maximum(u, zero) + xp.log1p(small) * constant(xp, 1.0 / self.gamma, x)
        grad = None
        if with_grad:
            grad = sign * (ep / (ep + en))
        if self.alpha is not None:
            at = constant(xp, self.alpha, x) * y + constant(xp, 1.0 - self.alpha, x) * (one - y)
            loss = at * loss
            grad = None if grad is None else at * grad
        return loss, grad
