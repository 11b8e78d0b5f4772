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

Every term comes from :math:`e_\pm = e^{\min(\pm x, 0)}` — one of them is exactly 1, the
other :math:`e^{-|x|}` — without a select: :math:`\sigma(x) = e_+/(e_+ + e_-)` and
:math:`1 - \sigma(x) = e_-/(e_+ + e_-)` each to a few ulps, neither by subtraction;
:math:`\mathrm{softplus}(\pm x) = \max(\pm x, 0) + \log1p(e_+ e_-)` exact to rounding even
where it is ~1e-35. (XLA:CPU runs a select several times slower than min/max inside a
fused loop and will not fuse one into a reduction.) The modulating factor's base is floored
at the dtype's smallest normal number
(:func:`focal_array._stable.modulating`), so the derivative stays finite for every γ ≥ 0 at
every finite logit.

References:
    Lin, Goyal, Girshick, He, Dollár. *Focal Loss for Dense Object Detection*. ICCV 2017,
    arXiv:1708.02002.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from .._namespace import constant, device_of, stop_gradient
from .._stable import exp_pair, modulating, safe_log, sigmoid_softplus
from .base import Formula

__all__ = ["SigmoidFocal", "SigmoidFocalLabels", "SigmoidFocalProbs"]

Array = Any


def _hard_from_z(z: Array, sign: Array, at: Array | None, gamma: float, with_grad: bool,
                 xp: Any) -> tuple[Array, Array | None]:
    """ℓ = α_t q^γ B and dℓ/dx = sign · α_t q^γ (γ p_t B + q), for 0/1 targets via z."""
    q, r, bce = sigmoid_softplus(z, xp=xp)
    m = modulating(q, gamma, xp=xp)
    loss = bce if m is None else m * bce
    grad = None
    if with_grad:
        inner = q if m is None else m * (constant(xp, gamma, z) * r * bce + q)
        grad = sign * inner
    if at is not None:
        loss = at * loss
        grad = None if grad is None else at * grad
    return loss, grad


def _zero_one(xp: Any, y: Array, x: Array, alpha: float | None
              ) -> tuple[Array, Array, Array | None]:
    """(z, sign, α_t) of 0/1 targets y: sign = 1 − 2y, z = sign·x, α_t = αy + (1 − α)(1 − y),
    each exact; arithmetic rather than selects, which a compiler fuses into a reduction."""
    one = constant(xp, 1.0, x)
    sign = one - constant(xp, 2.0, x) * y  # −1 for positives, +1 for negatives
    at = None if alpha is None else \
        constant(xp, alpha, x) * y + constant(xp, 1.0 - alpha, x) * (one - y)
    return sign * x, sign, at


@dataclass(frozen=True)
class SigmoidFocal(Formula):
    """α_t (1 − p_t)^γ BCE(x, y) from logits; γ = 0 is the (α-balanced) BCE.

    ``hard=True``: targets known to be 0 or 1 (a boolean mask, or floating 0/1), every term
    a function of z = ±x; ``hard=False``: floating targets in [0, 1] in the logits' dtype,
    each term blended. Both are select-free (minimum/maximum and arithmetic), which XLA
    fuses into the loss's reduction where it would materialize selects.
    """

    alpha: float | None
    gamma: float
    hard: bool

    def terms(self, x: Array, y: Array, *, xp: Any, axis: int = -1, with_grad: bool
              ) -> tuple[Array, Array | None]:
        if self.hard:
            z, sign, at = _zero_one(xp, xp.astype(y, x.dtype, copy=False), x, self.alpha)
            return _hard_from_z(z, sign, at, self.gamma, with_grad, xp)
        return self._soft(x, y, xp=xp, with_grad=with_grad)

    def specialize(self, y: Array, *, xp: Any) -> SigmoidFocal:
        """The 0/1 form for floating targets that are all exactly 0 or 1 (one-hot targets,
        the common case): the blend then reduces to the selection, to rounding."""
        if self.hard or y.dtype == xp.bool or not bool(xp.all((y == 0) | (y == 1))):
            return self
        return SigmoidFocal(alpha=self.alpha, gamma=self.gamma, hard=True)

    def _soft(self, x: Array, y: Array, *, xp: Any, with_grad: bool
              ) -> tuple[Array, Array | None]:
        gamma = self.gamma
        zero, one = constant(xp, 0.0, x), constant(xp, 1.0, x)
        hard_neg = one - y
        ep, en = exp_pair(x, xp=xp)
        log1p_e = xp.log1p(ep * en)
        bce = y * xp.maximum(-x, zero) + hard_neg * xp.maximum(x, zero) + log1p_e
        loss, grad = bce, None
        p = s = zero  # replaced below whenever they are read
        if gamma or with_grad:
            inv = one / (ep + en)
            p, s = ep * inv, en * inv
        if with_grad:
            grad = hard_neg * p - y * s
        if gamma:
            q = y * s + hard_neg * p
            m = modulating(q, gamma, xp=xp)
            loss = m * bce
            if with_grad:
                tiny = constant(xp, xp.finfo(x.dtype).smallest_normal, x)
                qf = xp.maximum(q, tiny)
                # p s / q ≤ 1 (q ≥ min(p, s) ≥ p s), both scaled by 1/q (a constant to
                # autodiff): a quotient of two numbers ~e^−|x| has a derivative with their
                # square in it, which underflows (flushed to 0 by XLA) at |x| ≳ 44 in
                # float32 and made the second derivative NaN; scaled, it is ~1
                c = stop_gradient(xp, one / qf)
                ratio = (p * s * c) / (qf * c)
                w = constant(xp, gamma, x) * (one - constant(xp, 2.0, x) * y)
                grad = m * (w * ratio * bce + grad)
        if self.alpha is not None:
            at = constant(xp, self.alpha, x) * y + constant(xp, 1.0 - self.alpha, x) * hard_neg
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
        y = xp.maximum(constant(xp, 1.0, x) - xp.abs(diff), constant(xp, 0.0, x))
        z, sign, at = _zero_one(xp, y, x, self.alpha)
        loss, grad = _hard_from_z(z, sign, at, self.gamma, with_grad, xp)
        return xp.sum(loss, axis=axis), grad
