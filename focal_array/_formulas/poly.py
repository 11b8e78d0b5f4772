r"""Poly-1 focal losses (PolyLoss): the focal loss plus :math:`\epsilon (1 - p_t)^{\gamma+1}`.

With :math:`q = 1 - p_t` and the focal loss :math:`\alpha_t q^\gamma L`
(:math:`L = -\log p_t`, or the BCE for soft sigmoid targets), the Poly-1 form adds the
leading term of the focal loss's expansion in :math:`q` with a free coefficient; as in
the paper's code, that term is not α-weighted:

.. math::

    \ell = q^\gamma \left(\alpha_t L + \epsilon\, q\right).

**Sigmoid**, 0/1 targets (``hard``): every term is a function of :math:`z = \pm x`
(:math:`-x` for positives), :math:`q = \sigma(z)`, :math:`r = p_t = \sigma(-z)`,
:math:`L = \mathrm{softplus}(z)`, :math:`\mathrm{d}q/\mathrm{d}z = q r`:

.. math::

    \frac{\partial \ell}{\partial x} = \mp\, q^\gamma \left[\alpha_t (\gamma r L + q)
    + \epsilon (\gamma + 1)\, q r\right],

a sum of positive terms for :math:`\epsilon \ge 0`. Soft targets:
:math:`q = y s + (1 - y) p`, :math:`q' = (1 - 2y) p s`, and

.. math::

    \frac{\partial \ell}{\partial x} = q^\gamma \left[(1 - 2y)\, p s
    \left(\alpha_t \gamma \frac{L}{q} + \epsilon (\gamma + 1)\right)
    + \alpha_t (p - y)\right],

the ratio :math:`p s / q \le 1` formed as in :mod:`focal_array._formulas.sigmoid`.

**Softmax**, from the margin :math:`m` of
:class:`~focal_array._formulas.softmax.SoftmaxFocal` (formed as there, two-sum corrected):
:math:`L = \mathrm{softplus}(m)`, :math:`q = \sigma(m)`, :math:`p_t = \sigma(-m)`, each
accurate, one exponential per element. With :math:`\partial L / \partial x_j = q\,u_j`
and :math:`\partial q / \partial x_j = p_t q\,u_j` (:math:`u_t = -1`,
:math:`u_j = e^{x_j - R} / S` otherwise, as in ``SoftmaxFocal``),

.. math::

    \frac{\partial \ell}{\partial x_j} = q^\gamma\left[\alpha_t (\gamma p_t L + q)
    + \epsilon(\gamma + 1)\, q\, p_t\right] u_j,

a product of accurately computed factors (no division by :math:`q`).

ε may be negative (the paper searches ε ∈ [−1, ∞)); :math:`\ell \ge (\alpha_t + \epsilon)
q^{\gamma+1}`, so for ε < −α_t the loss can be negative, and where the two terms nearly
cancel its relative accuracy is that of a difference.

References:
    Leng et al. *PolyLoss: A Polynomial Expansion Perspective of Classification Loss
    Functions*. ICLR 2022, arXiv:2204.12511.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._namespace import constant, stop_gradient
from .._stable import modulating, sigmoid_softplus
from .base import Formula
from .sigmoid import _zero_one
from .softmax import _ignored_zero, _SoftmaxFormula, class_values, margin, margin_grad
from .variants import soft_parts

__all__ = ["SigmoidPoly1", "SoftmaxPoly1"]

Array = Any

def _poly_loss(nll: Array, q: Array, at: Array | None, mod: Array | None, eps: Array
               ) -> tuple[Array, Array]:
    """(α_t L, q^γ (α_t L + ε q)): the Poly-1 value from −log p_t = L, q = 1 − p_t, α_t
    (None: 1) and q^γ (None: γ = 0), shared by the sigmoid and softmax forms."""
    a_l = nll if at is None else at * nll
    inner = a_l + eps * q
    return a_l, inner if mod is None else mod * inner


@dataclass(frozen=True)
class SigmoidPoly1(Formula):
    """α_t (1 − p_t)^γ BCE + ε (1 − p_t)^(γ+1), sigmoid; ``hard``: 0/1 targets."""

    alpha: float | None
    gamma: float
    epsilon: float
    hard: bool

    def specialize(self, y: Array, *, xp: Any) -> SigmoidPoly1:
        """The 0/1 form where every target is exactly 0 or 1 (one-hot targets)."""
        if self.hard or y.dtype == xp.bool or not bool(xp.all((y == 0) | (y == 1))):
            return self
        return SigmoidPoly1(alpha=self.alpha, gamma=self.gamma, epsilon=self.epsilon,
                            hard=True)

    def terms(self, x: Array, y: Array, *, xp: Any, axis: int = -1, with_grad: bool
              ) -> tuple[Array, Array | None]:
        if self.hard:
            return self._hard(x, xp.astype(y, x.dtype, copy=False), xp=xp,
                              with_grad=with_grad)
        return self._soft(x, y, xp=xp, with_grad=with_grad)

    def _hard(self, x: Array, y: Array, *, xp: Any, with_grad: bool
              ) -> tuple[Array, Array | None]:
        gamma, eps = self.gamma, constant(xp, self.epsilon, x)
        z, sign, at = _zero_one(xp, y, x, self.alpha)
        q, r, bce = sigmoid_softplus(z, xp=xp)
        mod = modulating(q, gamma, xp=xp)
        _, loss = _poly_loss(bce, q, at, mod, eps)
        if not with_grad:
            return loss, None
        k = q if not gamma else constant(xp, gamma, x) * r * bce + q
        k = k if at is None else at * k
        k = k + eps * constant(xp, gamma + 1.0, x) * q * r
        return loss, sign * (k if mod is None else mod * k)

    def _soft(self, x: Array, y: Array, *, xp: Any, with_grad: bool
              ) -> tuple[Array, Array | None]:
        gamma, eps = self.gamma, constant(xp, self.epsilon, x)
        one = constant(xp, 1.0, x)
        p, s, bce, neg = soft_parts(x, y, xp=xp)
        q = y * s + neg * p
        at = None if self.alpha is None else \
            constant(xp, self.alpha, x) * y + constant(xp, 1.0 - self.alpha, x) * neg
        mod = modulating(q, gamma, xp=xp)
        a_l, loss = _poly_loss(bce, q, at, mod, eps)
        if not with_grad:
            return loss, None
        w = (one - constant(xp, 2.0, x) * y) * (p * s)  # q'
        d_bce = neg * p - y * s  # p − y
        if gamma:
            tiny = constant(xp, float(xp.finfo(x.dtype).smallest_normal), x)
            qf = xp.maximum(q, tiny)
            # p s / q ≤ 1, both scaled by 1/q (see SigmoidFocal): finite second derivatives
            c = stop_gradient(xp, one / qf)
            ratio = ((p * s) * c) / (qf * c)
            lead = constant(xp, gamma, x) * a_l * ratio * (one - constant(xp, 2.0, x) * y)
        else:
            lead = None
        k = d_bce if at is None else at * d_bce
        k = k + eps * constant(xp, gamma + 1.0, x) * w
        if lead is not None:
            k = k + lead
        return loss, k if mod is None else mod * k


@dataclass(frozen=True)
class SoftmaxPoly1(_SoftmaxFormula):
    """α_t (1 − p_t)^γ (−log p_t) + ε (1 − p_t)^(γ+1) from logits and integer labels.

    Auxiliary arrays as :class:`~focal_array._formulas.softmax.SoftmaxFocal`'s: the labels
    and, when ``alpha`` is set, the per-class α vector. Negative labels: loss and gradient 0.
    """

    epsilon: float

    def terms(self, x: Array, labels: Array, *alpha_vec: Array, xp: Any, axis: int = -1,
              with_grad: bool) -> tuple[Array, Array | None]:
        gamma = self.gamma
        zero = constant(xp, 0.0, x)
        # SoftmaxFocal's margin: L = softplus(m), q = σ(m), p_t = σ(−m), each accurate
        mg = margin(x, labels, axis=axis, xp=xp)
        q, nll = mg.q, mg.nll
        mod = modulating(q, gamma, xp=xp)
        at = xp.expand_dims(class_values(xp, alpha_vec[0], labels), axis=axis) if self.alpha \
            else None
        eps = constant(xp, self.epsilon, x)
        _, loss = _poly_loss(nll, q, at, mod, eps)
        grad = None
        if with_grad:
            # dℓ/dx_j = q^γ [α_t (γ p_t L + q) + ε (γ + 1) q p_t] · (−1 at t, e_j / S else)
            p_t = mg.p_t  # q = 0 where it is not 1 − q
            k = q
            if gamma:
                # p_t L → 0 as p_t → 0: an infinite margin gives 0 · inf otherwise
                k = constant(xp, gamma, x) * xp.where(p_t > zero, p_t * nll, zero) + k
            k = k if at is None else at * k
            k = k + eps * constant(xp, gamma + 1.0, x) * q * p_t
            f = k if mod is None else mod * k
            grad = margin_grad(x, labels, mg, f, axis=axis, xp=xp)
        return _ignored_zero(xp, xp.squeeze(loss, axis=axis), labels), grad
