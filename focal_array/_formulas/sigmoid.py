r"""The sigmoid (one-vs-all) focal loss and binary cross-entropy: value and derivative.

With :math:`p = \sigma(x)`, :math:`s = 1 - p = \sigma(-x)`, targets :math:`y \in [0, 1]`,
:math:`q = 1 - p_t = y s + (1 - y) p`, :math:`B = y\,\mathrm{softplus}(-x) + (1 - y)\,
\mathrm{softplus}(x)` and :math:`\alpha_t = \alpha y + (1 - \alpha)(1 - y)`:

.. math::

    \ell = \alpha_t\, q^\gamma B, \qquad
    \frac{\partial \ell}{\partial x}
    = \alpha_t \left[ \gamma\, q^\gamma (1 - 2y)\,\frac{p s}{q}\, B
      + q^\gamma \big((1 - y) p - y s\big) \right]

using :math:`\sigma' = p s`, :math:`B' = (1 - y) p - y s`, :math:`q' = (1 - 2y)\,p s`. For
0/1 targets everything is a function of :math:`z = \pm x` (:math:`-x` for positives):
:math:`q = \sigma(z)`, :math:`p_t = \sigma(-z)`, :math:`B = \mathrm{softplus}(z)` and
:math:`\partial \ell / \partial x = \mp \alpha_t q^\gamma (\gamma p_t B + q)`, a product of
positive factors, free of cancellation. The ratio :math:`p s / q \le 1` is formed instead
of :math:`q^{\gamma - 1}`, so γ < 1 needs no special case.

Every term comes from one :math:`e = e^{-|x|}` (:mod:`focal_array._stable`): σ and 1 − σ
each to a few ulps, neither by subtraction; softplus exact to rounding even where it is
~1e-35. The modulating factor's base is floored at the dtype's smallest normal number
(:func:`focal_array._stable.modulating`), so the derivative stays finite for every γ ≥ 0 at
every finite logit.

References:
    Lin, Goyal, Girshick, He, Dollár. *Focal Loss for Dense Object Detection*. ICCV 2017,
    arXiv:1708.02002.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from .._namespace import constant, device_of
from .._stable import exp_neg_abs, modulating, safe_log, sigmoid_pair, softplus_pair
from .base import Formula

__all__ = ["SigmoidFocal", "SigmoidFocalLabels", "SigmoidFocalProbs"]

Array = Any


def _pm(xp: Any, positive: Array, if_pos: float, if_neg: float, like: Array) -> Array:
    """``if_pos`` where ``positive`` else ``if_neg``, in ``like``'s dtype."""
    return xp.where(positive, constant(xp, if_pos, like), constant(xp, if_neg, like))


def _z_terms(z: Array, *, xp: Any) -> tuple[Array, Array, Array]:
    """(q, r, B) = (σ(z), σ(−z), softplus(z)) from one e^−|z|."""
    nonneg, e = exp_neg_abs(z, xp=xp)
    big = 1.0 / (1.0 + e)
    small = e * big
    zero = constant(xp, 0.0, z)
    bce = xp.where(nonneg, z, zero) + xp.log1p(e)
    return xp.where(nonneg, big, small), xp.where(nonneg, small, big), bce


def _hard_from_z(z: Array, sign: Array, at: Array | None, gamma: float, with_grad: bool,
                 xp: Any) -> tuple[Array, Array | None]:
    """ℓ = α_t q^γ B and dℓ/dx = sign · α_t q^γ (γ p_t B + q), for 0/1 targets via z."""
    q, r, bce = _z_terms(z, xp=xp)
    m = modulating(q, gamma, xp=xp)
    loss = bce if m is None else m * bce
    grad = None
    if with_grad:
        inner = q if m is None else m * (gamma * r * bce + q)
        grad = sign * inner
    if at is not None:
        loss = at * loss
        grad = None if grad is None else at * grad
    return loss, grad


@dataclass(frozen=True)
class SigmoidFocal(Formula):
    """α_t (1 − p_t)^γ BCE(x, y) from logits; γ = 0 is the (α-balanced) BCE.

    ``hard=True``: the target is a boolean mask (each term selected); ``hard=False``:
    floating targets in [0, 1] in the logits' dtype (each term blended).
    """

    alpha: float | None
    gamma: float
    hard: bool

    def terms(self, x: Array, y: Array, *, xp: Any, axis: int = -1, with_grad: bool
              ) -> tuple[Array, Array | None]:
        if self.hard:
            return self._hard(x, y, xp=xp, with_grad=with_grad)
        return self._soft(x, y, xp=xp, with_grad=with_grad)

    def _hard(self, x: Array, positive: Array, *, xp: Any, with_grad: bool
              ) -> tuple[Array, Array | None]:
        z = xp.where(positive, -x, x)
        sign = _pm(xp, positive, -1.0, 1.0, x) if with_grad else None
        at = None if self.alpha is None else _pm(xp, positive, self.alpha, 1.0 - self.alpha, x)
        return _hard_from_z(z, sign, at, self.gamma, with_grad, xp)

    def _soft(self, x: Array, y: Array, *, xp: Any, with_grad: bool
              ) -> tuple[Array, Array | None]:
        gamma = self.gamma
        hard_neg = 1.0 - y
        nonneg, e = exp_neg_abs(x, xp=xp)
        sp_pos, sp_neg = softplus_pair(x, nonneg=nonneg, e=e, xp=xp)
        bce = y * sp_neg + hard_neg * sp_pos
        loss, grad = bce, None
        need_sigma = gamma or with_grad
        p, s = sigmoid_pair(x, nonneg=nonneg, e=e, xp=xp) if need_sigma else (None, None)
        if with_grad:
            grad = hard_neg * p - y * s
        if gamma:
            q = y * s + hard_neg * p
            m = modulating(q, gamma, xp=xp)
            loss = m * bce
            if with_grad:
                tiny = constant(xp, xp.finfo(x.dtype).smallest_normal, x)
                ratio = (p * s) / xp.maximum(q, tiny)  # ≤ 1: q ≥ min(p, s) ≥ p s
                grad = m * (gamma * (1.0 - 2.0 * y) * ratio * bce + grad)
        if self.alpha is not None:
            at = self.alpha * y + (1.0 - self.alpha) * hard_neg
            loss = at * loss
            grad = None if grad is None else at * grad
        return loss, grad


@dataclass(frozen=True)
class SigmoidFocalProbs(Formula):
    """The sigmoid focal loss of probabilities P(class) (``from_logits=False``).

    ``B = −[y log p + (1 − y) log(1 − p)]`` with the logs' arguments floored at the
    smallest normal number (a probability of exactly 0 on the wrong side gives ≈ 87.3 in
    float32, not inf). No analytic derivative: the backends' autodiff differentiates it.
    """

    alpha: float | None
    gamma: float

    has_grad: ClassVar[bool] = False

    def terms(self, p: Array, y: Array, *, xp: Any, axis: int = -1, with_grad: bool
              ) -> tuple[Array, Array | None]:
        hard_neg = 1.0 - y
        one_minus_p = 1.0 - p
        loss = -(y * safe_log(p, xp=xp) + hard_neg * safe_log(one_minus_p, xp=xp))
        if self.gamma:
            loss = modulating(y * one_minus_p + hard_neg * p, self.gamma, xp=xp) * loss
        if self.alpha is not None:
            loss = (self.alpha * y + (1.0 - self.alpha) * hard_neg) * loss
        return loss, None


@dataclass(frozen=True)
class SigmoidFocalLabels(Formula):
    """Σ_k of the sigmoid focal loss of ``(…, C)`` logits against integer labels ``(…)``.

    The targets are the labels' one-hot (none for a label outside [0, C): background and
    ignored anchors), formed per element as ``y = max(1 − |label − k|, 0)``, exactly 0 or 1,
    and entering through ``z = (1 − 2y)·x`` and ``α_t = α y + (1 − α)(1 − y)``: arithmetic,
    not a compare and a select, so a compiler fuses it into the loss and no ``(…, C)`` mask
    or target is ever materialized. Row-wise over the class axis: the per-row (per-anchor)
    sum of the elementwise loss, with :class:`SigmoidFocal`'s numbers.
    """

    alpha: float | None
    gamma: float

    rowwise: ClassVar[bool] = True

    def terms(self, x: Array, labels: Array, *, xp: Any, axis: int = -1, with_grad: bool
              ) -> tuple[Array, Array | None]:
        num_classes = x.shape[axis]
        shape = [1] * x.ndim
        shape[axis] = num_classes
        classes = xp.reshape(xp.arange(num_classes, dtype=x.dtype, device=device_of(x)),
                             tuple(shape))
        diff = xp.expand_dims(xp.astype(labels, x.dtype), axis=axis) - classes
        one = constant(xp, 1.0, x)
        y = xp.maximum(one - xp.abs(diff), constant(xp, 0.0, x))
        sign = one - 2.0 * y  # −1 for the label's class, +1 elsewhere
        at = None if self.alpha is None else self.alpha * y + (1.0 - self.alpha) * (one - y)
        loss, grad = _hard_from_z(sign * x, sign, at, self.gamma, with_grad, xp)
        return xp.sum(loss, axis=axis), grad
