"""Focal loss and cross-entropy, sigmoid and softmax, with weights and reductions.

Every function here resolves the caller's array namespace once, validates its arguments,
and computes with that namespace only, so it runs unchanged on NumPy, JAX (``jit``,
``grad``, ``vmap``) and PyTorch (autograd, ``torch.compile``) and returns an array of the
caller's library, dtype and device. float16/bfloat16 inputs are computed and returned in
float32.

Structure. This module validates the arguments, picks the formula of
:mod:`focal_array._formulas` that the options call for (the loss's value and analytic
derivative, written once with ``xp``), has the backend's executor
(:mod:`focal_array._executors`) evaluate it, and reduces. The numerics — σ and 1 − σ from
one ``exp(−|x|)``, softplus without overflow or cancellation, the softmax margin that gives
``−log p_t`` and ``1 − p_t`` free of cancellation, the modulating factor's floored base —
are documented with the formulas.

References:
    Lin, Goyal, Girshick, He, Dollár. *Focal Loss for Dense Object Detection*. ICCV 2017,
    arXiv:1708.02002.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

from . import _validate as v
from ._formulas import (
    Formula,
    SigmoidFocal,
    SigmoidFocalProbs,
    SoftmaxFocal,
    SoftmaxFocalProbs,
    SoftmaxFocalSmoothed,
)
from ._loss_checks import (
    _check_logits,
    _check_normalizer,
    _check_options,
    _check_unit_targets,
    _check_weights,
)
from ._loss_reductions import _evaluate_reduced
from ._namespace import compute_dtype, device_of, namespace
from ._stable import one_hot_mask

__all__ = [
    "binary_cross_entropy",
    "one_hot",
    "sigmoid_focal_loss",
    "softmax_cross_entropy",
    "softmax_focal_loss",
]


Array = Any


# --------------------------------------------------------------------------- sigmoid


def _prepare_sigmoid(logits: Array, targets: Array, *, alpha: float | None, gamma: float,
                     weights: Any, reduction: str, normalizer: Any, from_logits: bool,
                     label_smoothing: float) -> tuple[Any, Array, Any, float, float]:
    """Resolve and validate the sigmoid losses' inputs: (xp, logits in the compute dtype,
    alpha, gamma, label_smoothing). Shared with :mod:`focal_array.gradients`."""
    xp = namespace(logits=logits, targets=targets, weights=weights,
                   normalizer=_array_or_none(normalizer))
    _check_logits(xp, logits, from_logits, "logits")
    v.check_bool_or_number_array(xp, targets, "targets")
    v.check_same_shape("logits", logits.shape, "targets", targets.shape,
                       hint="sigmoid targets are per class, e.g. one_hot(labels, C)")
    if alpha is not None:
        alpha = v.check_number("alpha", alpha, low=0.0, high=1.0)
    gamma, label_smoothing = _check_options(gamma=gamma, label_smoothing=label_smoothing,
                                            reduction=reduction)
    _check_weights(xp, weights, tuple(logits.shape), "the loss (= logits)")
    _check_normalizer(xp, normalizer, reduction)
    _check_unit_targets(xp, targets, "0/1 labels or soft targets")
    x = xp.astype(logits, compute_dtype(xp, logits.dtype), copy=False)
    return xp, x, alpha, gamma, label_smoothing


def _array_or_none(value: Any) -> Any:
    """``value`` if it is an array (to join namespace resolution), else None."""
    return value if v.is_array(value) else None


def sigmoid_formula(xp: Any, targets: Array, x: Array, *, alpha: float | None, gamma: float,
                    from_logits: bool, label_smoothing: float) -> tuple[Formula, Array]:
    """(formula, target) of the sigmoid losses: boolean 0/1 targets select each term,
    floating ones (label smoothing applied) blend them. Shared with
    :mod:`focal_array.gradients`."""
    if xp.isdtype(targets.dtype, "bool") and from_logits and not label_smoothing:
        return SigmoidFocal(alpha=alpha, gamma=gamma, hard=True), targets
    y = xp.astype(targets, x.dtype, copy=False)
    if label_smoothing:
        y = y * (1.0 - label_smoothing) + 0.5 * label_smoothing
    if not from_logits:
        return SigmoidFocalProbs(alpha=alpha, gamma=gamma), y
    return SigmoidFocal(alpha=alpha, gamma=gamma, hard=False), y


def _sigmoid_loss(logits: Array, targets: Array, *, alpha: float | None, gamma: float,
                  weights: Any, reduction: str, normalizer: Any, from_logits: bool,
                  label_smoothing: float) -> Array:
    xp, x, alpha, gamma, label_smoothing = _prepare_sigmoid(
        logits, targets, alpha=alpha, gamma=gamma, weights=weights, reduction=reduction,
        normalizer=normalizer, from_logits=from_logits, label_smoothing=label_smoothing)
    formula, y = sigmoid_formula(xp, targets, x, alpha=alpha, gamma=gamma,
                                 from_logits=from_logits, label_smoothing=label_smoothing)
    return _evaluate_reduced(formula, x, (y,), axis=-1, weights=weights, reduction=reduction,
                             normalizer=normalizer, valid=None, xp=xp)


def sigmoid_focal_loss(logits: Array, targets: Array, /, *, alpha: float | None = 0.25,
                       gamma: float = 2.0, weights: Array | None = None,
                       reduction: str = "none", normalizer: Any = None,
                       from_logits: bool = True, label_smoothing: float = 0.0) -> Array:
    r"""Sigmoid (one-vs-all) focal loss of Lin et al., as in RetinaNet and FCOS heads.

    .. math::

        p = \sigma(x), \quad
        p_t = \begin{cases} p & y = 1 \\ 1 - p & y = 0 \end{cases}, \quad
        \alpha_t = \begin{cases} \alpha & y = 1 \\ 1 - \alpha & y = 0 \end{cases}

        \mathrm{FL}(x, y) = -\alpha_t (1 - p_t)^\gamma \log p_t

    For soft targets :math:`y \in [0, 1]` the definition shared by torchvision and optax is
    used: :math:`p_t = p y + (1 - p)(1 - y)`, :math:`\alpha_t = \alpha y + (1 - \alpha)(1 - y)`
    and :math:`\mathrm{FL} = \alpha_t (1 - p_t)^\gamma \, \mathrm{BCE}(x, y)`, with
    :math:`\mathrm{BCE}(x, y) = y\,\mathrm{softplus}(-x) + (1 - y)\,\mathrm{softplus}(x)`.
    :math:`\gamma = 0` gives :func:`binary_cross_entropy` exactly. Results and gradients are
    finite for every finite logit and every :math:`\gamma \ge 0` (:math:`\gamma < 1` included).
    NaN in ``logits`` propagates to the result; it is never zeroed.

    Args:
        logits: ``(..., C)`` real floating; any shape. With ``from_logits=False``,
            probabilities P(class) in [0, 1] instead (clamped at the dtype's smallest normal
            number inside the logs, so a probability of exactly 0 or 1 on the wrong side gives a
            large finite loss, ≈ 87.3 in float32, rather than inf).
        targets: same shape as ``logits``; 0/1 labels (bool, integer or floating) or soft
            targets in [0, 1] (outside, or NaN: a ValueError where arrays are concrete).
            Use ``one_hot(labels, C)`` for class indices.
        alpha: weight of the positive term in [0, 1]; ``1 - alpha`` weighs negatives.
            ``None`` disables balancing.
        gamma: focusing parameter, ``>= 0``.
        weights: broadcasts to ``logits.shape``; multiplies the elementwise loss. Weight 0
            drops an element (but NaN × 0 is still NaN).
        reduction: ``"none"`` (elementwise, shape of ``logits``), ``"sum"`` (Σ w·ℓ) or
            ``"mean"``: Σ w·ℓ / Σ w (plain mean without weights), or Σ w·ℓ / max(normalizer,
            1) when ``normalizer`` is given. An all-zero ``weights`` gives 0 and a zero
            gradient, not NaN.
        normalizer: only with ``reduction="mean"``: a finite number or 0-d array ≥ 0
            (inf, NaN or < 0 is a ValueError, the array's checked where concrete), e.g. the
            number of positive anchors (RetinaNet), of assigned anchors, an EMA, or a count
            all-reduced across devices.
        from_logits: ``True`` for logits, ``False`` for probabilities.
        label_smoothing: ε in [0, 1); targets become ``y (1 − ε) + ε / 2``.

    Returns:
        Float array: shape of ``logits`` for ``"none"``, 0-d otherwise. dtype of ``logits``,
        except float16/bfloat16 which are computed and returned in float32.

    Examples:
        >>> import numpy as np
        >>> from focal_array import sigmoid_focal_loss
        >>> p = np.array([0.9, 0.2])          # P(person) of a positive and a negative anchor
        >>> y = np.array([1.0, 0.0])
        >>> sigmoid_focal_loss(p, y, from_logits=False).round(7)
        array([0.0002634, 0.0066943])

    References:
        Lin et al., *Focal Loss for Dense Object Detection*, ICCV 2017 (arXiv:1708.02002).
    """
    return _sigmoid_loss(logits, targets, alpha=alpha, gamma=gamma, weights=weights,
                         reduction=reduction, normalizer=normalizer, from_logits=from_logits,
                         label_smoothing=label_smoothing)


def binary_cross_entropy(logits: Array, targets: Array, /, *, alpha: float | None = None,
                         weights: Array | None = None, reduction: str = "none",
                         normalizer: Any = None, from_logits: bool = True,
                         label_smoothing: float = 0.0) -> Array:
    r"""Sigmoid binary cross-entropy, optionally α-balanced.

    .. math::

        \mathrm{BCE}(x, y) = -\alpha_t\,[\,y \log \sigma(x) + (1 - y) \log(1 - \sigma(x))\,]
        = \alpha_t\,[\,y\,\mathrm{softplus}(-x) + (1 - y)\,\mathrm{softplus}(x)\,]

    with :math:`\alpha_t = \alpha y + (1 - \alpha)(1 - y)`, or 1 when ``alpha`` is None.
    Equal to :func:`sigmoid_focal_loss` with ``gamma=0``. Exact to rounding for every finite
    logit (no overflow, no cancellation).

    Args:
        logits: real floating, any shape (probabilities with ``from_logits=False``).
        targets: same shape, 0/1 or soft targets in [0, 1].
        alpha: None (default, no balancing) or the positive weight in [0, 1].
        weights: as in :func:`sigmoid_focal_loss`.
        reduction: as in :func:`sigmoid_focal_loss`.
        normalizer: as in :func:`sigmoid_focal_loss`.
        from_logits: as in :func:`sigmoid_focal_loss`.
        label_smoothing: as in :func:`sigmoid_focal_loss`.

    Returns:
        As :func:`sigmoid_focal_loss`.

    Examples:
        >>> import numpy as np
        >>> from focal_array import binary_cross_entropy
        >>> binary_cross_entropy(np.array([0.9, 0.2]), np.array([1.0, 0.0]),
        ...                      from_logits=False).round(4)
        array([0.1054, 0.2231])
    """
    return _sigmoid_loss(logits, targets, alpha=alpha, gamma=0.0, weights=weights,
                         reduction=reduction, normalizer=normalizer, from_logits=from_logits,
                         label_smoothing=label_smoothing)


# --------------------------------------------------------------------------- softmax


def _class_alpha(xp: Any, alpha: Any, num_classes: int, like: Array) -> Array | None:
    """Per-class α as a (C,) array in ``like``'s dtype/device (None: no balancing).

    A scalar α weighs the foreground classes (labels ≥ 1) by α and background (label 0) by
    1 − α, as in the seed example.
    """
    if alpha is None:
        return None
    if v.is_number(alpha):
        a = v.check_number("alpha", alpha, low=0.0, high=1.0)
        values = [1.0 - a] + [a] * (num_classes - 1)
        return xp.asarray(values, dtype=like.dtype, device=device_of(like))
    if v.is_array(alpha):
        namespace(logits=like, alpha=alpha)
        if alpha.ndim == 0:
            raise TypeError("alpha as an array must be a per-class vector of shape (C,); "
                            "pass a Python float for a scalar alpha")
        vec = alpha
    elif isinstance(alpha, Sequence) and not isinstance(alpha, str):
        vals = [v.check_number(f"alpha[{i}]", a, low=0.0, high=1.0) for i, a in enumerate(alpha)]
        vec = xp.asarray(vals, dtype=like.dtype, device=device_of(like))
    else:
        raise TypeError(
            f"alpha must be None, a number in [0, 1] or a per-class vector, got {alpha!r}"
        )
    if tuple(vec.shape) != (num_classes,):
        raise ValueError(
            f"alpha as a per-class vector must have shape ({num_classes},) (the number of "
            f"classes along axis), got {tuple(vec.shape)}"
        )
    v.check_floating(xp, vec, "alpha")
    v.eager_check([vec], lambda: xp.any((vec < 0) | (vec > 1)),
                  lambda: "alpha values must be in [0, 1]")
    return xp.astype(vec, like.dtype)


def _prepare_softmax(logits: Array, labels: Array, *, alpha: Any, gamma: float, axis: int,
                     weights: Any, reduction: str, normalizer: Any, from_logits: bool,
                     label_smoothing: float) -> tuple:
    """Resolve and validate the softmax losses' inputs. Returns (xp, logits in the compute
    dtype, class axis, per-class alpha or None, gamma, label_smoothing, valid). Shared
    with :mod:`focal_array.gradients`."""
    xp = namespace(logits=logits, labels=labels, weights=weights,
                   normalizer=_array_or_none(normalizer))
    v.check_floating(xp, logits, "logits")
    if logits.ndim == 0:
        raise ValueError("logits must have at least one dimension (the class axis)")
    ax = v.normalize_axis(axis, logits.ndim)
    _check_logits(xp, logits, from_logits, "logits", class_axis=ax)
    v.check_integer(xp, labels, "labels")
    example_shape = tuple(s for i, s in enumerate(logits.shape) if i != ax)
    v.check_same_shape("logits without the class axis", example_shape, "labels",
                       labels.shape, hint="labels are class indices, one per example")
    gamma, label_smoothing = _check_options(gamma=gamma, label_smoothing=label_smoothing,
                                            reduction=reduction)
    _check_weights(xp, weights, example_shape, "the per-example loss (= labels)")
    _check_normalizer(xp, normalizer, reduction)
    num_classes = logits.shape[ax]
    v.eager_check(
        [labels],
        lambda: xp.any(labels >= num_classes),
        lambda: f"labels must be < num_classes = {num_classes} (negative labels are "
        f"ignored); found a label >= {num_classes}",
    )
    x = xp.astype(logits, compute_dtype(xp, logits.dtype), copy=False)
    alpha_vec = _class_alpha(xp, alpha, num_classes, x)
    return xp, x, ax, alpha_vec, gamma, label_smoothing, labels >= 0


def softmax_formula(alpha_vec: Array | None, gamma: float, from_logits: bool,
                    label_smoothing: float) -> Formula:
    """The formula of the softmax losses for these options. Shared with
    :mod:`focal_array.gradients`."""
    has_alpha = alpha_vec is not None
    if not from_logits:
        return SoftmaxFocalProbs(gamma=gamma, alpha=has_alpha, smoothing=label_smoothing)
    if label_smoothing:
        return SoftmaxFocalSmoothed(gamma=gamma, alpha=has_alpha, smoothing=label_smoothing)
    return SoftmaxFocal(gamma=gamma, alpha=has_alpha)


def _softmax_loss(logits: Array, labels: Array, *, alpha: Any, gamma: float, axis: int,
                  weights: Any, reduction: str, normalizer: Any, from_logits: bool,
                  label_smoothing: float) -> Array:
    xp, x, ax, alpha_vec, gamma, label_smoothing, valid = _prepare_softmax(
        logits, labels, alpha=alpha, gamma=gamma, axis=axis, weights=weights,
        reduction=reduction, normalizer=normalizer, from_logits=from_logits,
        label_smoothing=label_smoothing)
    formula = softmax_formula(alpha_vec, gamma, from_logits, label_smoothing)
    aux = (labels,) if alpha_vec is None else (labels, alpha_vec)
    # ignored examples are out of the problem: the formulas give them exactly zero
    return _evaluate_reduced(formula, x, aux, axis=ax, weights=weights, reduction=reduction,
                             normalizer=normalizer, valid=valid, xp=xp)


def softmax_focal_loss(logits: Array, labels: Array, /, *, alpha: Any = None,
                       gamma: float = 2.0, axis: int = -1, weights: Array | None = None,
                       reduction: str = "none", normalizer: Any = None,
                       from_logits: bool = True, label_smoothing: float = 0.0) -> Array:
    r"""Multi-class (softmax) focal loss, e.g. for an R-CNN head with a background class.

    .. math::

        p = \mathrm{softmax}(x), \quad p_t = p_{\text{label}}, \quad
        \mathrm{FL} = -\alpha_t (1 - p_t)^\gamma \log p_t

    :math:`\alpha_t` is 1 (``alpha=None``), :math:`\alpha` for labels ≥ 1 and
    :math:`1 - \alpha` for the background label 0 (scalar ``alpha``), or ``alpha[label]``
    (per-class vector). With label smoothing ε the target distribution is
    :math:`t = (1 - ε)\,\mathrm{onehot} + ε / C` and
    :math:`\mathrm{FL} = -\sum_j t_j \alpha_j (1 - p_j)^\gamma \log p_j`.
    :math:`\gamma = 0` gives :func:`softmax_cross_entropy` exactly. Negative labels are
    ignored: their loss is exactly 0 and they are not counted by ``"mean"``.

    Args:
        logits: ``(..., C, ...)`` real floating with the classes along ``axis`` (a
            probability vector along ``axis`` with ``from_logits=False``: values in
            [0, 1], each row summing to 1 within ``max(C·ε, 1e-5)``, else a ValueError
            where arrays are concrete). −inf masks a class (probability 0): the loss is
            that of the row without it; −inf on the label's class gives +inf (as
            PyTorch), as does any −inf class under label smoothing (it gets ε / C of
            the target); a row of all −inf gives 0. Gradients stay finite in each case
            and for every finite logit up to ±3.4e38; a loss past the dtype's largest
            number is +inf, never NaN.
        labels: integer class indices with the shape of ``logits`` minus ``axis``; values in
            [0, C), negative to ignore. Labels ≥ C raise a ValueError (checked where arrays
            are concrete: NumPy, PyTorch and eager JAX, not inside a trace).
        alpha: None, a number in [0, 1], or a per-class vector of C values in [0, 1] (a
            sequence or an array of the logits' library).
        gamma: focusing parameter, ``>= 0``.
        axis: the class axis of ``logits``.
        weights: broadcasts to the per-example loss shape (that of ``labels``).
        reduction: ``"none"`` (per example), ``"sum"`` or ``"mean"`` (over the examples
            with a label ≥ 0, weighted when ``weights`` is given, or divided by
            ``max(normalizer, 1)``; 0 with a zero gradient when nothing is counted).
        normalizer: as in :func:`sigmoid_focal_loss`.
        from_logits: ``True`` for logits, ``False`` for probabilities.
        label_smoothing: ε in [0, 1).

    Returns:
        Per-example loss with the shape of ``labels`` (``"none"``) or a 0-d array; dtype of
        ``logits`` (float32 for half-precision inputs).

    Examples:
        >>> import numpy as np
        >>> from focal_array import softmax_focal_loss
        >>> probs = np.array([[0.1, 0.9], [0.8, 0.2]])  # [P(background), P(person)]
        >>> softmax_focal_loss(probs, np.array([1, 0]), alpha=0.25,
        ...                    from_logits=False).round(7)
        array([0.0002634, 0.0066943])

    References:
        Lin et al., *Focal Loss for Dense Object Detection*, ICCV 2017 (arXiv:1708.02002).
    """
    return _softmax_loss(logits, labels, alpha=alpha, gamma=gamma, axis=axis, weights=weights,
                         reduction=reduction, normalizer=normalizer, from_logits=from_logits,
                         label_smoothing=label_smoothing)


def softmax_cross_entropy(logits: Array, labels: Array, /, *, alpha: Any = None,
                          axis: int = -1, weights: Array | None = None,
                          reduction: str = "none", normalizer: Any = None,
                          from_logits: bool = True, label_smoothing: float = 0.0) -> Array:
    r"""Softmax cross-entropy over integer labels, optionally class-balanced.

    .. math::

        \mathrm{CE} = -\alpha_t \log p_t = -\alpha_t \left(x_t - \log \sum_j e^{x_j}\right)

    Equal to :func:`softmax_focal_loss` with ``gamma=0``; with label smoothing ε,
    :math:`-\sum_j t_j \alpha_j \log p_j`. Negative labels are ignored (zero loss, not
    counted), as ``ignore_index`` does in PyTorch.

    Args:
        logits: as in :func:`softmax_focal_loss`.
        labels: as in :func:`softmax_focal_loss`.
        alpha: as in :func:`softmax_focal_loss`.
        axis: as in :func:`softmax_focal_loss`.
        weights: as in :func:`softmax_focal_loss`.
        reduction: as in :func:`softmax_focal_loss`.
        normalizer: as in :func:`softmax_focal_loss`.
        from_logits: as in :func:`softmax_focal_loss`.
        label_smoothing: as in :func:`softmax_focal_loss`.

    Returns:
        As :func:`softmax_focal_loss`.

    Examples:
        >>> import numpy as np
        >>> from focal_array import softmax_cross_entropy
        >>> probs = np.array([[0.1, 0.9], [0.8, 0.2]])
        >>> softmax_cross_entropy(probs, np.array([1, 0]), from_logits=False).round(4)
        array([0.1054, 0.2231])
    """
    return _softmax_loss(logits, labels, alpha=alpha, gamma=0.0, axis=axis, weights=weights,
                         reduction=reduction, normalizer=normalizer, from_logits=from_logits,
                         label_smoothing=label_smoothing)


def one_hot(labels: Array, num_classes: int, /, *, dtype: Any = None) -> Array:
    """One-hot encode integer labels along a new last axis; negative labels give all zeros.

    This is how matcher labels (gt class, ``BACKGROUND`` = −1, ``IGNORE`` = −2) become the
    per-class targets of the sigmoid losses: background and ignored anchors get all-zero
    rows (mask ignored ones out with ``weights``).

    Args:
        labels: integer array of any shape ``(...)``; values < ``num_classes``. Labels ≥
            ``num_classes`` raise a ValueError where arrays are concrete (not in a trace).
        num_classes: C ≥ 1.
        dtype: dtype of the result, a dtype of the labels' library; default float32.

    Returns:
        ``(..., C)`` array of 0 and 1 in ``dtype``, on the labels' device.

    Examples:
        >>> import numpy as np
        >>> from focal_array import one_hot
        >>> one_hot(np.array([2, -1, 0]), 3)
        array([[0., 0., 1.],
               [0., 0., 0.],
               [1., 0., 0.]], dtype=float32)
    """
    xp = namespace(labels=labels)
    v.check_integer(xp, labels, "labels")
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) \
            or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    num_classes = int(num_classes)
    v.eager_check(
        [labels],
        lambda: xp.any(labels >= num_classes),
        lambda: f"labels must be < num_classes = {num_classes}; found a label >= "
        f"{num_classes}",
    )
    dtype = xp.float32 if dtype is None else dtype
    return xp.astype(one_hot_mask(labels, num_classes, xp=xp), dtype)
