r"""Analytic gradients of the focal losses: the loss and its derivative in one call.

NumPy has no automatic differentiation; these functions give NumPy users (and anyone who
wants the gradient without a tape) the loss and :math:`\partial L / \partial x` computed
together from the same intermediates as the forward pass. The derivatives are those of the
formulas in :mod:`focal_array._formulas` (written once with ``xp``), evaluated by the
backend's executor, so they run unchanged on NumPy, JAX and PyTorch; they agree with
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

from ._executors import evaluate_with_grad
from ._loss_reductions import _mean_scale, _reduce
from ._softmax_inputs import prepare_softmax
from .losses import _prepare_sigmoid, sigmoid_formula, softmax_formula

__all__ = ["sigmoid_focal_loss_value_and_grad", "softmax_focal_loss_value_and_grad"]

Array = Any


def _grad_scale(xp: Any, *, weights: Any, reduction: str, normalizer: Any, valid: Any,
                loss_shape: tuple, like: Array, counts: Any = None
                ) -> tuple[Array | None, Array | None]:
    """(w, c): d L_reduced / d ℓ_i = w_i · c (either may be None for "1").

    Uses the same scale as :func:`focal_array._loss_reductions._reduce` (``_mean_scale``).
    """
    w = None if weights is None else xp.astype(weights, like.dtype)
    if reduction in ("none", "sum"):
        return w, None
    return w, _mean_scale(xp, w=w, normalizer=normalizer, valid=valid,
                          loss_shape=loss_shape, like=like, counts=counts)


def _apply_scale(grad: Array, w: Array | None, c: Array | None) -> Array:
    if w is not None:
        grad = grad * w
    if c is not None:
        grad = grad * c
    return grad


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
    formula, y = sigmoid_formula(xp, targets, x, alpha=alpha, gamma=gamma, from_logits=True,
                                 label_smoothing=label_smoothing)
    loss, grad = evaluate_with_grad(formula, x, y, xp=xp)
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
                                      normalizer: Any = None, label_smoothing: float = 0.0,
                                      class_weights: Any = None, ignore_index: Any = None
                                      ) -> tuple[Array, Array]:
    r"""Softmax focal loss and its gradient with respect to the logits, in one pass.

    The loss is exactly :func:`~focal_array.softmax_focal_loss` (``from_logits=True``;
    ``gamma=0`` gives :func:`~focal_array.softmax_cross_entropy`); the gradient is

    .. math::

        \frac{\partial \ell}{\partial x_j}
        = \alpha_t\, q^\gamma (\gamma\, p_t L + q) \cdot
          \begin{cases} -1 & j = t \\ e_j / \sum_{k \ne t} e_k & j \ne t \end{cases}

    with :math:`q = 1 - p_t`, :math:`L = -\log p_t` (derivation in
    :mod:`focal_array.gradients`); ``class_weights`` multiply it by :math:`w_t` and, for
    ``"mean"``, enter the denominator as in :func:`~focal_array.softmax_focal_loss`
    (:math:`\sum_i w_{t_i}`, PyTorch's ``F.cross_entropy`` rule). Ignored examples
    (negative labels, or equal to ``ignore_index``) have a zero gradient.

    Args:
        logits: ``(..., C, ...)`` real floating logits with the classes along ``axis``.
        labels: integer class indices, the shape of ``logits`` minus ``axis``; negative (or
            ``ignore_index``) to ignore. Probability targets raise ``NotImplementedError``.
        alpha, gamma, axis, weights, reduction, normalizer, class_weights, ignore_index: as
            in :func:`~focal_array.softmax_focal_loss`.
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
    inputs = prepare_softmax(
        logits, labels, alpha=alpha, gamma=gamma, axis=axis, weights=weights,
        reduction=reduction, normalizer=normalizer, from_logits=True, label_smoothing=0.0,
        class_weights=class_weights, ignore_index=ignore_index,
        function="softmax_focal_loss_value_and_grad")
    if inputs.soft:
        raise NotImplementedError(
            "softmax_focal_loss_value_and_grad takes integer class labels; for probability "
            "targets use jax.grad or torch.autograd of focal_array.softmax_focal_loss")
    xp, x, ax, valid = inputs.xp, inputs.x, inputs.axis, inputs.valid
    labels = inputs.targets
    formula = softmax_formula(inputs, True)
    aux = (labels,) if inputs.class_vec is None else (labels, inputs.class_vec)
    # the formula gives ignored rows (negative labels) loss and gradient exactly 0
    loss, grad = evaluate_with_grad(formula, x, *aux, xp=xp, axis=ax)
    w, c = _grad_scale(xp, weights=weights, reduction=reduction, normalizer=normalizer,
                       valid=valid, loss_shape=tuple(loss.shape), like=loss,
                       counts=inputs.counts)
    # per-row scale of the reduction
    row = _apply_scale(xp.ones_like(loss), w, c)
    grad = grad * xp.expand_dims(row, axis=ax)
    value = _reduce(loss, weights=weights, reduction=reduction, normalizer=normalizer,
                    valid=valid, xp=xp, counts=inputs.counts)
    return value, xp.astype(grad, logits.dtype, copy=False)
