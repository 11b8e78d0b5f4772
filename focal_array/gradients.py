r"""Analytic gradients of the focal losses: the loss and its derivative in one call.

NumPy has no automatic differentiation; these functions give NumPy users (and anyone who
wants the gradient without a tape) the loss and :math:`\partial L / \partial x` computed
together from the same intermediates as the forward pass. They are written with ``xp``
only, so they run unchanged on NumPy, JAX and PyTorch; on JAX and PyTorch they agree with
``jax.grad`` / ``torch.autograd`` of :func:`~focal_array.sigmoid_focal_loss` and
:func:`~focal_array.softmax_focal_loss`.

Sigmoid focal loss. With :math:`p = \sigma(x)`, :math:`s = 1 - p = \sigma(-x)`,
:math:`q = 1 - p_t = y s + (1 - y) p`, :math:`B = y\,\mathrm{softplus}(-x) + (1 - y)\,
\mathrm{softplus}(x)` and :math:`\ell = \alpha_t q^\gamma B`, using
:math:`\sigma' = p s`, :math:`B' = (1 - y) p - y s` and :math:`q' = (1 - 2y)\,p s`:

.. math::

    \frac{\partial \ell}{\partial x}
    = \alpha_t \left[ \gamma\, q^\gamma \,(1 - 2y)\,\frac{p s}{q}\, B
      + q^\gamma \big((1 - y) p - y s\big) \right]

For 0/1 targets this is free of cancellation: :math:`y = 1` gives
:math:`-\alpha\, s^\gamma (\gamma p B + s)` and :math:`y = 0` gives
:math:`(1 - \alpha)\, p^\gamma (\gamma s B + p)`, sums of positive terms. The ratio
:math:`p s / q \le 1` (since :math:`q \ge \min(p, s) \ge p s`) is formed instead of
:math:`q^{\gamma - 1}`, so γ < 1 needs no special case: the factor :math:`q^\gamma` is the
forward's own (base floored at the dtype's smallest normal number, as in
:mod:`focal_array.losses`), and the gradient stays finite for every finite logit.

Softmax focal loss. With :math:`p = \mathrm{softmax}(x)`, label :math:`t`,
:math:`q = 1 - p_t`, :math:`L = -\log p_t` and :math:`\ell = \alpha_t q^\gamma L`, using
:math:`\partial \log p_t / \partial x_j = \delta_{tj} - p_j`:

.. math::

    \frac{\partial \ell}{\partial x_j}
    = \alpha_t\, (p_j - \delta_{tj})\, q^{\gamma - 1} (\gamma\, p_t L + q)
    = \alpha_t\, q^\gamma\, K \cdot
      \begin{cases} -1 & j = t \\ e_j / \sum_{k \ne t} e_k & j \ne t \end{cases},
    \qquad K = \gamma\, p_t L + q

(:math:`p_j / q = e_j / \sum_{k \ne t} e_k` with :math:`e = \exp(x - \max x)`), again a
product of accurately computed positive factors; the row sums to zero as it must.

Reductions. ``"none"`` returns the elementwise loss and the gradient of its **sum**;
``"sum"`` the gradient of :math:`\sum w \ell`; ``"mean"`` that divided by the same
denominator as the forward (:math:`\sum w`, the count, or :math:`\max(\text{normalizer},
1)`; a zero denominator gives a zero gradient). ``normalizer`` and ``weights`` are
constants: no gradient flows to them.
"""

from __future__ import annotations

from typing import Any

from . import _fused
from ._namespace import constant
from ._stable import exp_neg_abs, sigmoid_pair, softplus_pair
from .losses import (
    _expand_class_vector,
    _mean_scale,
    _modulating,
    _prepare_sigmoid,
    _prepare_softmax,
    _reduce,
    _softmax_label_terms,
)

__all__ = ["sigmoid_focal_loss_value_and_grad", "softmax_focal_loss_value_and_grad"]

Array = Any


def _grad_scale(xp: Any, *, weights: Any, reduction: str, normalizer: Any, valid: Any,
                loss_shape: tuple, like: Array) -> tuple[Array | None, Array | None]:
    """(w, c): d L_reduced / d ℓ_i = w_i · c (either may be None for "1").

    Uses the same scale as :func:`focal_array.losses._reduce` (``_mean_scale``).
    """
    w = None if weights is None else xp.astype(weights, like.dtype)
    if reduction in ("none", "sum"):
        return w, None
    return w, _mean_scale(xp, w=w, normalizer=normalizer, valid=valid,
                          loss_shape=loss_shape, like=like)


def _apply_scale(grad: Array, w: Array | None, c: Array | None) -> Array:
    if w is not None:
        grad = grad * w
    if c is not None:
        grad = grad * c
    return grad


def _sigmoid_hard_value_and_grad(x: Array, positive: Array, *, alpha: float | None,
                                 gamma: float, xp: Any) -> tuple[Array, Array]:
    """ℓ and dℓ/dx for boolean targets, terms selected by ``positive`` (compute dtype).

    y = 1: ℓ = α s^γ softplus(−x), dℓ/dx = −α s^γ (γ p B + s);
    y = 0: ℓ = (1 − α) p^γ softplus(x), dℓ/dx = (1 − α) p^γ (γ s B + p).
    Written as q = "own" probability of error, r = the other one: dℓ/dx = ±α_t q^γ (γ r B + q).
    """
    nonneg, e = exp_neg_abs(x, xp=xp)
    sp_pos, sp_neg = softplus_pair(x, nonneg=nonneg, e=e, xp=xp)
    p, s = sigmoid_pair(x, nonneg=nonneg, e=e, xp=xp)
    bce = xp.where(positive, sp_neg, sp_pos)
    q = xp.where(positive, s, p)  # 1 − p_t
    r = xp.where(positive, p, s)  # p_t
    one = constant(xp, 1.0, x)
    sign = xp.where(positive, -one, one)
    if gamma:
        m = _modulating(q, gamma, xp=xp)
        loss = m * bce
        grad = sign * m * (gamma * r * bce + q)
    else:
        loss = bce
        grad = sign * q
    if alpha is not None:
        at = xp.where(positive, constant(xp, alpha, x), constant(xp, 1.0 - alpha, x))
        loss = at * loss
        grad = at * grad
    return loss, grad


def _sigmoid_soft_value_and_grad(x: Array, y: Array, *, alpha: float | None, gamma: float,
                                 xp: Any) -> tuple[Array, Array]:
    """ℓ and dℓ/dx for targets y ∈ [0, 1] (the formula of the module docstring)."""
    hard_neg = 1.0 - y
    nonneg, e = exp_neg_abs(x, xp=xp)
    sp_pos, sp_neg = softplus_pair(x, nonneg=nonneg, e=e, xp=xp)
    p, s = sigmoid_pair(x, nonneg=nonneg, e=e, xp=xp)
    bce = y * sp_neg + hard_neg * sp_pos
    dbce = hard_neg * p - y * s
    if gamma:
        q = y * s + hard_neg * p
        m = _modulating(q, gamma, xp=xp)
        tiny = constant(xp, xp.finfo(x.dtype).smallest_normal, x)
        ratio = (p * s) / xp.maximum(q, tiny)  # ≤ 1: q ≥ min(p, s) ≥ p s
        loss = m * bce
        grad = m * (gamma * (1.0 - 2.0 * y) * ratio * bce + dbce)
    else:
        loss, grad = bce, dbce
    if alpha is not None:
        at = alpha * y + (1.0 - alpha) * hard_neg
        loss = at * loss
        grad = at * grad
    return loss, grad


def sigmoid_focal_loss_value_and_grad(logits: Array, targets: Array, /, *,
                                      alpha: float | None = 0.25, gamma: float = 2.0,
                                      weights: Array | None = None, reduction: str = "none",
                                      normalizer: Any = None, label_smoothing: float = 0.0
                                      ) -> tuple[Array, Array]:
    r"""Sigmoid focal loss and its gradient with respect to the logits, in one pass.

    The loss is exactly :func:`~focal_array.sigmoid_focal_loss` (``from_logits=True``); the
    gradient is

    .. math::

        \frac{\partial \ell}{\partial x}
        = \alpha_t \left[ \gamma\, q^\gamma (1 - 2y) \frac{p s}{q} B
          + q^\gamma \big((1 - y) p - y s\big) \right],

    with :math:`p = \sigma(x)`, :math:`s = \sigma(-x)`, :math:`q = 1 - p_t` and
    :math:`B` the binary cross-entropy (derivation in :mod:`focal_array.gradients`). For
    boolean targets the terms are selected rather than blended, and the gradient is
    :math:`\mp \alpha_t q^\gamma (\gamma p_t B + q)`, a product of positive factors.

    Args:
        logits: real floating logits, any shape.
        targets: same shape; bool, or 0/1 / soft targets in [0, 1].
        alpha, gamma, weights, reduction, normalizer, label_smoothing: as in
            :func:`~focal_array.sigmoid_focal_loss`.

    Returns:
        ``(loss, grad)``: ``loss`` as :func:`~focal_array.sigmoid_focal_loss` returns it;
        ``grad`` with the shape of ``logits``: the derivative of the reduced loss, or of
        ``sum(loss)`` for ``reduction="none"``. Both in the compute dtype (float32 for
        half-precision logits); ``grad`` is cast back to a half-precision logits' dtype.

    Example:
        >>> import numpy as np
        >>> from focal_array.gradients import sigmoid_focal_loss_value_and_grad
        >>> loss, grad = sigmoid_focal_loss_value_and_grad(
        ...     np.array([2.0, -1.0]), np.array([1.0, 0.0]), reduction="sum")
        >>> grad.round(6)
        array([-0.001218,  0.039436])
    """
    xp, x, alpha, gamma, label_smoothing = _prepare_sigmoid(
        logits, targets, alpha=alpha, gamma=gamma, weights=weights, reduction=reduction,
        normalizer=normalizer, from_logits=True, label_smoothing=label_smoothing)
    hard = xp.isdtype(targets.dtype, "bool") and not label_smoothing
    if hard:
        y = targets
    else:
        y = xp.astype(targets, x.dtype, copy=False)
        if label_smoothing:
            y = y * (1.0 - label_smoothing) + 0.5 * label_smoothing
    terms = _fused.sigmoid_focal_value_and_grad_elementwise(x, y, alpha=alpha, gamma=gamma,
                                                            xp=xp)
    if terms is not None:
        loss, grad = terms
    elif hard:
        loss, grad = _sigmoid_hard_value_and_grad(x, y, alpha=alpha, gamma=gamma, xp=xp)
    else:
        loss, grad = _sigmoid_soft_value_and_grad(x, y, alpha=alpha, gamma=gamma, xp=xp)
    w, c = _grad_scale(xp, weights=weights, reduction=reduction, normalizer=normalizer,
                       valid=None, loss_shape=tuple(loss.shape), like=loss)
    grad = _apply_scale(grad, w, c)
    if tuple(grad.shape) != tuple(logits.shape):  # weights broadcast beyond nothing: keep shape
        grad = xp.broadcast_to(grad, tuple(logits.shape))
    value = _reduce(loss, weights=weights, reduction=reduction, normalizer=normalizer,
                    valid=None, xp=xp)
    return value, xp.astype(grad, logits.dtype, copy=False)


def softmax_focal_loss_value_and_grad(logits: Array, labels: Array, /, *, alpha: Any = None,
                                      gamma: float = 2.0, axis: int = -1,
                                      weights: Array | None = None, reduction: str = "none",
                                      normalizer: Any = None, label_smoothing: float = 0.0
                                      ) -> tuple[Array, Array]:
    r"""Softmax focal loss and its gradient with respect to the logits, in one pass.

    The loss is exactly :func:`~focal_array.softmax_focal_loss` (``from_logits=True``;
    ``gamma=0`` gives :func:`~focal_array.softmax_cross_entropy`); the gradient is

    .. math::

        \frac{\partial \ell}{\partial x_j}
        = \alpha_t\, q^\gamma (\gamma\, p_t L + q) \cdot
          \begin{cases} -1 & j = t \\ e_j / \sum_{k \ne t} e_k & j \ne t \end{cases}

    with :math:`q = 1 - p_t`, :math:`L = -\log p_t` (derivation in
    :mod:`focal_array.gradients`). Ignored examples (negative labels) have a zero gradient.

    Args:
        logits: ``(..., C, ...)`` real floating logits with the classes along ``axis``.
        labels: integer class indices, the shape of ``logits`` minus ``axis``; negative to
            ignore.
        alpha, gamma, axis, weights, reduction, normalizer: as in
            :func:`~focal_array.softmax_focal_loss`.
        label_smoothing: must be 0. The smoothed loss sums a focal term per class, whose
            gradient needs its own cancellation-free derivation; it is not implemented
            yet (``NotImplementedError``) — use ``jax.grad``/``torch.autograd`` of
            :func:`~focal_array.softmax_focal_loss` there.

    Returns:
        ``(loss, grad)``: the loss as :func:`~focal_array.softmax_focal_loss` returns it and
        the gradient of the reduced loss (of ``sum(loss)`` for ``"none"``) with the shape
        of ``logits``.

    Example:
        >>> import numpy as np
        >>> from focal_array.gradients import softmax_focal_loss_value_and_grad
        >>> loss, grad = softmax_focal_loss_value_and_grad(
        ...     np.array([[0.0, 1.0, -1.0]]), np.array([1]), gamma=0.0)
        >>> grad.round(4)
        array([[ 0.2447, -0.3348,  0.09  ]])
    """
    if label_smoothing:
        raise NotImplementedError(
            "softmax_focal_loss_value_and_grad does not support label_smoothing yet; use "
            "jax.grad or torch.autograd of focal_array.softmax_focal_loss for smoothed labels"
        )
    xp, x, ax, alpha_vec, gamma, _, valid, mask = _prepare_softmax(
        logits, labels, alpha=alpha, gamma=gamma, axis=axis, weights=weights,
        reduction=reduction, normalizer=normalizer, from_logits=True, label_smoothing=0.0)
    zero = constant(xp, 0.0, x)
    one = constant(xp, 1.0, x)

    log_pt, q, (e, e_t, others) = _softmax_label_terms(x, mask, ax, xp=xp)
    total = e_t + others
    nll = -log_pt
    if gamma:
        m = _modulating(q, gamma, xp=xp)
        loss = m * nll
        k = m * (gamma * (e_t / total) * nll + q)
    else:
        loss = nll
        k = q
    if alpha_vec is not None:
        a = _expand_class_vector(alpha_vec, x.ndim, ax, xp=xp)
        at = xp.sum(xp.where(mask, a, zero), axis=ax)
        loss = at * loss
        k = at * k
    loss = xp.where(valid, loss, zero)
    w, c = _grad_scale(xp, weights=weights, reduction=reduction, normalizer=normalizer,
                       valid=valid, loss_shape=tuple(loss.shape), like=loss)
    k = xp.where(valid, _apply_scale(k, w, c), zero)
    k = xp.expand_dims(xp.broadcast_to(k, tuple(loss.shape)), axis=ax)
    # p_j / q = e_j / others for j ≠ t; others = 0 only where every other class underflowed
    others_k = xp.expand_dims(others, axis=ax)
    share = e / xp.where(others_k > zero, others_k, one)
    grad = k * xp.where(mask, -one, share)
    value = _reduce(loss, weights=weights, reduction=reduction, normalizer=normalizer,
                    valid=valid, xp=xp)
    return value, xp.astype(grad, logits.dtype, copy=False)
