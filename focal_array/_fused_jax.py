r"""Fast path of the sigmoid focal loss on JAX: select-free terms and a custom JVP.

Two things make the generic ``xp`` formula slower than a hand-fused one under ``jax.jit``
on CPU, and this module removes both:

- **select.** The generic formula picks branches with ``where`` (so that autodiff sees one
  smooth branch at x = 0). XLA:CPU evaluates ``select`` several times slower than
  ``max``/``min`` inside a fused loop. Here every term is built from ``min``/``max``
  instead, with the same rounding as the generic formula:

  .. math::

      e_+ = e^{\min(x, 0)},\quad e_- = e^{\min(-x, 0)},\quad
      p = \frac{e_+}{e_+ + e_-},\quad s = 1 - p = \frac{e_-}{e_+ + e_-},

      \mathrm{softplus}(\pm x) = \max(\pm x, 0) + \log1p(\min(e_+, e_-)).

  One of :math:`e_\pm` is exactly 1 and the other is :math:`e^{-|x|}`, so these are the
  numbers the generic formula computes from :math:`e^{-|x|}`, bit for bit. For 0/1
  targets the loss is a function of :math:`z = (1 - 2y)\,x` alone
  (:math:`q = 1 - p_t = \sigma(z)`, :math:`\mathrm{BCE} = \mathrm{softplus}(z)`), and
  the boolean mask enters as a multiplication, not a select.
- **autodiff of the terms.** Differentiating ``max``/``min`` brings selects back and keeps
  many intermediates alive. The loss is a ``jax.custom_jvp`` whose tangent is the analytic
  gradient of :mod:`focal_array.gradients` (one product, fused with the forward), so
  ``jax.grad`` under ``jit`` evaluates value and gradient in one pass.

The rule is written with differentiable ``jnp`` operations, so ``jit``, ``vmap``,
``jvp``/``jacfwd`` and higher-order ``grad`` work; JAX splits the derivative of
``max``/``min`` evenly at a tie, and the symmetric forms above then give the exact
derivatives at x = 0. A tangent on floating targets (soft targets that are themselves
differentiated, e.g. a teacher's probabilities) is pushed through the generic formula of
:mod:`focal_array.losses`, so no derivative is dropped.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

__all__ = ["sigmoid_focal", "sigmoid_focal_labels", "sigmoid_focal_value_and_grad"]

Array = Any


def _modulating(q: Array, gamma: float, c: Any) -> Array:
    """(1 − p_t)^γ as :func:`focal_array.losses._modulating` computes it (select-free)."""
    if gamma == 1.0:
        return q
    if gamma == 2.0:
        return q * q
    return jnp.power(jnp.maximum(q, c(jnp.finfo(q.dtype).smallest_normal)), c(gamma))


def _sigmoid_softplus(z: Array, c: Any, *, differentiable: bool
                      ) -> tuple[Array, Array, Array, Array]:
    """(σ(z), σ(−z), softplus(z), softplus(−z)), without a select.

    e^−|z| is min(e₊, e₋) (one of them is 1) where the result is never differentiated by
    autodiff: XLA would rewrite the product e₊·e₋ as a third exp. The product is kept where
    autodiff differentiates these terms: at |z| below float rounding both factors are 1,
    and min's derivative, split at the tie, would be half the true one.
    """
    zero = c(0.0)
    ep = jnp.exp(jnp.minimum(z, zero))
    en = jnp.exp(jnp.minimum(-z, zero))
    inv = c(1.0) / (ep + en)
    # (e₊ · c(1)) · e₋: on the gradient's side c(1) is opaque to XLA, which then keeps the
    # product rather than making it a third exp
    log1p_e = jnp.log1p(ep * c(1.0) * en if differentiable else jnp.minimum(ep, en))
    return ep * inv, en * inv, jnp.maximum(z, zero) + log1p_e, jnp.maximum(-z, zero) + log1p_e


def _plain(value: float) -> float:
    return value


def _hard_terms(x: Array, positive: Array, alpha: float | None, gamma: float,
                with_grad: bool, c: Any) -> tuple[Array, Array | None]:
    """ℓ (and dℓ/dx) for a boolean mask of positives."""
    # XLA rewrites float(mask) · constant into selects, which its fused CPU reductions do
    # not take (it then materializes several full-size arrays); the barrier keeps one
    # float copy of the mask instead
    y = jax.lax.optimization_barrier(positive.astype(x.dtype))
    return _01_terms(x, y, alpha, gamma, with_grad, c)


def _01_terms(x: Array, y: Array, alpha: float | None, gamma: float, with_grad: bool,
              c: Any) -> tuple[Array, Array | None]:
    """ℓ (and dℓ/dx) for floating targets known to be exactly 0 or 1, through
    z = (1 − 2y) x: q = σ(z), p_t = σ(−z), BCE = softplus(z)."""
    if not with_grad:  # the 0/1 blend: the very numbers of 0/1 floating targets
        return _soft_loss(x, y, c(1.0) - y, alpha, gamma, c), None
    sign = c(1.0) - c(2.0) * y  # −1 for positives, +1 for negatives
    # q = 1 − p_t, r = p_t, bce = softplus(z)
    q, r, bce, _ = _sigmoid_softplus(sign * x, c, differentiable=True)
    if gamma:
        m = _modulating(q, gamma, c)
        loss = m * bce
        dz = m * (c(gamma) * r * bce + q)
    else:
        loss, dz = bce, q
    if alpha is not None:
        at = c(alpha) * y + c(1.0 - alpha) * (c(1.0) - y)  # exactly α or 1 − α
        loss = at * loss
        dz = at * dz
    return loss, sign * dz


def _soft_terms(x: Array, y: Array, alpha: float | None, gamma: float,
                with_grad: bool, c: Any) -> tuple[Array, Array | None]:
    """ℓ (and dℓ/dx) for targets y ∈ [0, 1], the formula of :mod:`focal_array.gradients`."""
    hard_neg = c(1.0) - y
    if not with_grad:
        return _soft_loss(x, y, hard_neg, alpha, gamma, c), None
    p, s, sp_pos, sp_neg = _sigmoid_softplus(x, c, differentiable=True)
    bce = y * sp_neg + hard_neg * sp_pos
    dbce = (hard_neg * p - y * s) if with_grad else None
    grad = None
    if gamma:
        q = y * s + hard_neg * p
        m = _modulating(q, gamma, c)
        loss = m * bce
        if with_grad:
            ratio = (p * s) / jnp.maximum(q, c(jnp.finfo(x.dtype).smallest_normal))
            grad = m * (c(gamma) * (c(1.0) - c(2.0) * y) * ratio * bce + dbce)
    else:
        loss, grad = bce, dbce
    if alpha is not None:
        at = c(alpha) * y + c(1.0 - alpha) * hard_neg
        loss = at * loss
        grad = None if grad is None else at * grad
    return loss, grad


def _soft_loss(x: Array, y: Array, hard_neg: Array, alpha: float | None, gamma: float,
               c: Any) -> Array:
    """The loss alone, blended before dividing: one division and no σ pair (at y ∈ {0, 1}
    the same numbers as :func:`_soft_terms`' form; between, the same to rounding)."""
    zero = c(0.0)
    ep = jnp.exp(jnp.minimum(x, zero))
    en = jnp.exp(jnp.minimum(-x, zero))
    log1p_e = jnp.log1p(jnp.minimum(ep, en))  # log1p(e^−|x|): see _sigmoid_softplus
    bce = y * jnp.maximum(-x, zero) + hard_neg * jnp.maximum(x, zero) + log1p_e
    loss = bce
    if gamma:
        loss = _modulating((y * en + hard_neg * ep) / (ep + en), gamma, c) * loss
    if alpha is not None:
        loss = (c(alpha) * y + c(1.0 - alpha) * hard_neg) * loss
    return loss


def _terms(x: Array, y: Array, alpha: float | None, gamma: float, with_grad: bool,
           c: Any = _plain) -> tuple[Array, Array | None]:
    """(ℓ, dℓ/dx or None); ``c`` makes the formula's constants (see :func:`_apart`).

    With ``with_grad=False`` the loss is in a form autodiff must not differentiate (only
    :func:`_loss`, whose derivative is its custom rule, uses it); with ``with_grad=True``
    both outputs are differentiable, for higher-order derivatives."""
    if y.dtype == jnp.bool_:
        return _hard_terms(x, y, alpha, gamma, with_grad, c)
    return _soft_terms(x, y, alpha, gamma, with_grad, c)


def _apart(*arrays: Array) -> tuple[tuple[Array, ...], Any]:
    """Copies of ``arrays`` and a maker of constants, for the gradient's side of a rule.

    Shared with the loss's reduction, its inputs, broadcast constants and intermediates
    would be materialized by XLA:CPU at full size between the two loops; behind an
    optimization barrier (constants as multiples of a barrier-opaque 1) the loss reduces
    in one fused loop and the gradient is one more.
    """
    *copies, unit = jax.lax.optimization_barrier((*arrays, jnp.ones((), arrays[0].dtype)))

    def c(value: float) -> Array:
        return unit * value

    return tuple(copies), c


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def _loss(x: Array, y: Array, alpha: float | None, gamma: float) -> Array:
    return _terms(x, y, alpha, gamma, with_grad=False)[0]


def _loss_jvp(alpha: float | None, gamma: float, primals: tuple, tangents: tuple
              ) -> tuple[Array, Array]:
    x, y = primals
    x_dot, y_dot = tangents
    loss = _loss(x, y, alpha, gamma)  # its own rule again, should this rule be differentiated
    (xb,), c = _apart(x)
    grad = _terms(xb, y, alpha, gamma, with_grad=True, c=c)[1]
    out_dot = jnp.zeros_like(loss) if type(x_dot) is SymbolicZero else grad * x_dot
    if type(y_dot) is not SymbolicZero:
        from .losses import _sigmoid_elementwise

        def generic(t: Array) -> Array:
            return _sigmoid_elementwise(x, t, alpha=alpha, gamma=gamma, from_logits=True,
                                        xp=jnp)

        out_dot = out_dot + jax.jvp(generic, (y,), (y_dot,))[1]
    return loss, out_dot


_loss.defjvp(_loss_jvp, symbolic_zeros=True)


def _one_hot(labels: Array, num_classes: int, dtype: Any, c: Any) -> Array:
    """max(1 − |label − k|, 0): the one-hot of integer labels (none for a label outside
    [0, C)) as arithmetic, which XLA:CPU fuses into the loss's reduction (a compare and
    a select it would materialize at full size)."""
    diff = labels.astype(dtype)[..., None] - jnp.arange(num_classes, dtype=dtype)
    return jnp.maximum(c(1.0) - jnp.abs(diff), c(0.0))


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def _labels_loss(x: Array, labels: Array, alpha: float | None, gamma: float) -> Array:
    y = _one_hot(labels, x.shape[-1], x.dtype, _plain)
    return _01_terms(x, y, alpha, gamma, False, _plain)[0]


def _labels_loss_jvp(alpha: float | None, gamma: float, primals: tuple, tangents: tuple
                     ) -> tuple[Array, Array]:
    x, labels = primals
    loss = _labels_loss(x, labels, alpha, gamma)
    if type(tangents[0]) is SymbolicZero:
        return loss, jnp.zeros_like(loss)
    # the one-hot is rebuilt from the labels on the gradient's side too
    (xb, lb), c = _apart(x, labels)
    y = _one_hot(lb, x.shape[-1], x.dtype, c)
    return loss, _01_terms(xb, y, alpha, gamma, True, c)[1] * tangents[0]


_labels_loss.defjvp(_labels_loss_jvp, symbolic_zeros=True)


def sigmoid_focal_labels(x: Array, labels: Array, *, alpha: float | None, gamma: float
                         ) -> Array:
    """Elementwise sigmoid focal loss of (..., C) logits against integer class labels
    (...): the targets are the labels' one-hot (none for labels outside [0, C)), never
    formed as a tensor. Custom JVP, as :func:`sigmoid_focal`."""
    return _labels_loss(x, labels, alpha, gamma)


def sigmoid_focal(x: Array, y: Array, *, alpha: float | None, gamma: float) -> Array:
    """Elementwise sigmoid focal loss (see :mod:`focal_array._fused`), custom JVP."""
    return _loss(x, y, alpha, gamma)


def sigmoid_focal_value_and_grad(x: Array, y: Array, *, alpha: float | None,
                                 gamma: float) -> tuple[Array, Array]:
    """Elementwise (ℓ, dℓ/dx), select-free; differentiable by JAX's autodiff."""
    return _terms(x, y, alpha, gamma, with_grad=True)
