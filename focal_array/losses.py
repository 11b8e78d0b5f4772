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
    SoftmaxFocalSoft,
)
from ._loss_checks import (
    _check_logits,
    _check_normalizer,
    _check_not_called_by_keras,
    _check_options,
    _check_sigmoid_order,
    _check_unit_targets,
    _check_weights,
)
from ._loss_reductions import _evaluate_reduced
from ._namespace import compute_dtype, namespace
from ._softmax_inputs import SoftmaxInputs, prepare_softmax
from ._stable import one_hot_mask
from ._typing import ArrayLike, ArrayT, Integer, Number, Reduction

__all__ = [
    "binary_cross_entropy",
    "one_hot",
    "sigmoid_focal_loss",
    "softmax_cross_entropy",
    "softmax_focal_loss",
]


Array = Any


# --------------------------------------------------------------------------- sigmoid


def _prepare_sigmoid(logits: Array, targets: Array, *, alpha: Number | None, gamma: Number,
                     weights: Any, reduction: str, normalizer: Any, from_logits: bool,
                     label_smoothing: Number, function: str = "sigmoid_focal_loss",
                     keras_class: str = "SigmoidFocalLoss",
                     ) -> tuple[Any, Array, float | None, float, float]:
    """Resolve and validate the sigmoid losses' inputs: (xp, logits in the compute dtype,
    alpha, gamma, label_smoothing). ``function`` and ``keras_class`` name the caller in the
    message of swapped arguments. Shared with :mod:`focal_array.gradients`."""
    xp = namespace(logits=logits, targets=targets, weights=weights,
                   normalizer=_array_or_none(normalizer))
    _check_sigmoid_order(xp, logits, targets, function, keras_class)
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
    _check_unit_targets(xp, targets, f"0/1 labels or soft targets; the order is "
                        f"{function}(logits, targets), not Keras' (y_true, y_pred): with "
                        f"Keras use focal_array.keras.{keras_class}")
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


def _sigmoid_loss(logits: Array, targets: Array, *, alpha: Number | None, gamma: Number,
                  weights: Any, reduction: str, normalizer: Any, from_logits: bool,
                  label_smoothing: Number, function: str, keras_class: str) -> Array:
    xp, x, a, g, eps = _prepare_sigmoid(
        logits, targets, alpha=alpha, gamma=gamma, weights=weights, reduction=reduction,
        normalizer=normalizer, from_logits=from_logits, label_smoothing=label_smoothing,
        function=function, keras_class=keras_class)
    formula, y = sigmoid_formula(xp, targets, x, alpha=a, gamma=g, from_logits=from_logits,
                                 label_smoothing=eps)
    return _evaluate_reduced(formula, x, (y,), axis=-1, weights=weights, reduction=reduction,
                             normalizer=normalizer, valid=None, xp=xp)


def sigmoid_focal_loss(logits: ArrayT, targets: ArrayLike, /, *,
                       alpha: Number | None = 0.25, gamma: Number = 2.0,
                       weights: ArrayLike | None = None, reduction: Reduction = "none",
                       normalizer: Number | ArrayLike | None = None,
                       from_logits: bool = True, label_smoothing: Number = 0.0) -> ArrayT:
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

    The model's output comes first. Keras calls a loss as ``loss(y_true, y_pred)``: for
    ``model.compile`` use :class:`focal_array.keras.SigmoidFocalLoss`; handing this
    function to Keras directly raises a TypeError, as do integer or boolean ``logits``
    with floating ``targets`` (the arguments look swapped).

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
    _check_not_called_by_keras("sigmoid_focal_loss", "SigmoidFocalLoss")
    return _sigmoid_loss(logits, targets, alpha=alpha, gamma=gamma, weights=weights,
                         reduction=reduction, normalizer=normalizer, from_logits=from_logits,
                         label_smoothing=label_smoothing, function="sigmoid_focal_loss",
                         keras_class="SigmoidFocalLoss")


def binary_cross_entropy(logits: ArrayT, targets: ArrayLike, /, *,
                         alpha: Number | None = None, weights: ArrayLike | None = None,
                         reduction: Reduction = "none",
                         normalizer: Number | ArrayLike | None = None,
                         from_logits: bool = True, label_smoothing: Number = 0.0) -> ArrayT:
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
    _check_not_called_by_keras("binary_cross_entropy", "BinaryCrossEntropy")
    return _sigmoid_loss(logits, targets, alpha=alpha, gamma=0.0, weights=weights,
                         reduction=reduction, normalizer=normalizer, from_logits=from_logits,
                         label_smoothing=label_smoothing, function="binary_cross_entropy",
                         keras_class="BinaryCrossEntropy")


# --------------------------------------------------------------------------- softmax


def softmax_formula(inputs: SoftmaxInputs, from_logits: bool) -> Formula:
    """The formula of the softmax losses for these inputs. Shared with
    :mod:`focal_array.gradients`."""
    has_vec = inputs.class_vec is not None
    g, eps = inputs.gamma, inputs.label_smoothing
    if inputs.soft:
        return SoftmaxFocalSoft(gamma=g, alpha=has_vec, smoothing=eps, from_logits=from_logits)
    if not from_logits:
        return SoftmaxFocalProbs(gamma=g, alpha=has_vec, smoothing=eps)
    if eps:
        return SoftmaxFocalSmoothed(gamma=g, alpha=has_vec, smoothing=eps)
    return SoftmaxFocal(gamma=g, alpha=has_vec)


def _softmax_loss(logits: ArrayT, labels: ArrayLike, *, alpha: Any, gamma: Number, axis: int,
                  weights: Any, reduction: str, normalizer: Any, from_logits: bool,
                  label_smoothing: Number, class_weights: Any, ignore_index: Any,
                  function: str, keras_class: str) -> ArrayT:
    inputs = prepare_softmax(
        logits, labels, alpha=alpha, gamma=gamma, axis=axis, weights=weights,
        reduction=reduction, normalizer=normalizer, from_logits=from_logits,
        label_smoothing=label_smoothing, class_weights=class_weights,
        ignore_index=ignore_index, function=function, keras_class=keras_class)
    formula = softmax_formula(inputs, from_logits)
    aux = (inputs.targets,) if inputs.class_vec is None else (inputs.targets, inputs.class_vec)
    # ignored examples are out of the problem: the formulas give them exactly zero
    return _evaluate_reduced(formula, inputs.x, aux, axis=inputs.axis, weights=weights,
                             reduction=reduction, normalizer=normalizer, valid=inputs.valid,
                             xp=inputs.xp, counts=inputs.counts)


def softmax_focal_loss(logits: ArrayT, labels: ArrayLike, /, *,
                       alpha: Number | Sequence[float] | ArrayLike | None = None,
                       gamma: Number = 2.0, axis: int = -1, weights: ArrayLike | None = None,
                       reduction: Reduction = "none",
                       normalizer: Number | ArrayLike | None = None,
                       from_logits: bool = True, label_smoothing: Number = 0.0,
                       class_weights: Sequence[float] | ArrayLike | None = None,
                       ignore_index: Integer | None = None) -> ArrayT:
    r"""Multi-class (softmax) focal loss, e.g. for an R-CNN head with a background class.

    .. math::

        p = \mathrm{softmax}(x), \quad p_t = p_{\text{label}}, \quad
        \mathrm{FL} = -\alpha_t w_t (1 - p_t)^\gamma \log p_t

    :math:`\alpha_t` is 1 (``alpha=None``), :math:`\alpha` for labels ≥ 1 and
    :math:`1 - \alpha` for the background label 0 (scalar ``alpha``), or ``alpha[label]``
    (per-class vector); :math:`w_t` is ``class_weights[label]`` (1 without). With a target
    distribution :math:`t` — probability targets, or label smoothing ε, which makes
    :math:`t = (1 - ε)\,\mathrm{onehot} + ε / C` —
    :math:`\mathrm{FL} = -\sum_j t_j \alpha_j w_j (1 - p_j)^\gamma \log p_j`.
    :math:`\gamma = 0` gives :func:`softmax_cross_entropy` exactly. Ignored labels
    (negative, or equal to ``ignore_index``) have a loss of exactly 0 and are not counted by
    ``"mean"``.

    ``class_weights`` is ``torch.nn.functional.cross_entropy``'s ``weight``, with its
    normalization: with integer labels ``"mean"`` divides by :math:`\sum_i w_{t_i}` over the
    counted examples (times ``weights`` where given), so
    ``softmax_cross_entropy(x, y, class_weights=w, ignore_index=255,
    label_smoothing=ε, reduction="mean")`` is ``F.cross_entropy(x, y, weight=w,
    ignore_index=255, label_smoothing=ε)``. With probability targets ``"mean"`` divides by
    the number of examples (PyTorch's rule too). ``alpha`` never enters the denominator.

    Args:
        logits: ``(..., C, ...)`` real floating with the classes along ``axis`` (a
            probability vector along ``axis`` with ``from_logits=False``: values in
            [0, 1], each row summing to 1 within ``max(C·ε, 1e-5)``, else a ValueError
            where arrays are concrete). −inf masks a class (probability 0): the loss is
            that of the row without it; −inf on the label's class gives +inf (as
            PyTorch), as does any −inf class with a nonzero target (label smoothing
            gives it ε / C); a row of all −inf gives 0. Gradients stay finite in each
            case and for every finite logit up to ±3.4e38; a loss past the dtype's
            largest number is +inf, never NaN.
        labels: integer class indices with the shape of ``logits`` minus ``axis``, values
            in [0, C), negative (or ``ignore_index``) to ignore; labels ≥ C raise a
            ValueError (checked where arrays are concrete: NumPy, PyTorch and eager JAX,
            not inside a trace). Or probability targets: a real floating array of the
            logits' shape, values in [0, 1] (mixup, distillation; rows need not sum to 1:
            the loss is linear in them). Unsigned labels (a ``uint8`` mask) are accepted.
        alpha: None, a number in [0, 1], or a per-class vector of C values in [0, 1] (a
            sequence or an array of the logits' library).
        gamma: focusing parameter, ``>= 0``.
        axis: the class axis of ``logits``.
        weights: broadcasts to the per-example loss shape (that of ``labels``, or of the
            logits without ``axis``).
        reduction: ``"none"`` (per example), ``"sum"`` or ``"mean"`` (over the counted
            examples, weighted by ``weights`` and ``class_weights`` as above, or divided
            by ``max(normalizer, 1)``; 0 with a zero gradient when nothing is counted).
        normalizer: as in :func:`sigmoid_focal_loss`.
        from_logits: ``True`` for logits, ``False`` for probabilities.
        label_smoothing: ε in [0, 1), applied to probability targets too
            (:math:`t \leftarrow (1 - ε) t + ε / C`, as PyTorch does).
        class_weights: None or a per-class vector of C finite values ≥ 0 (a sequence or an
            array of the logits' library).
        ignore_index: None or an integer label value to ignore besides the negative ones
            (255, the segmentation convention); integer labels only.

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
    _check_not_called_by_keras("softmax_focal_loss", "SoftmaxFocalLoss")
    return _softmax_loss(logits, labels, alpha=alpha, gamma=gamma, axis=axis, weights=weights,
                         reduction=reduction, normalizer=normalizer, from_logits=from_logits,
                         label_smoothing=label_smoothing, class_weights=class_weights,
                         ignore_index=ignore_index, function="softmax_focal_loss",
                         keras_class="SoftmaxFocalLoss")


def softmax_cross_entropy(logits: ArrayT, labels: ArrayLike, /, *,
                          alpha: Number | Sequence[float] | ArrayLike | None = None,
                          axis: int = -1, weights: ArrayLike | None = None,
                          reduction: Reduction = "none",
                          normalizer: Number | ArrayLike | None = None,
                          from_logits: bool = True, label_smoothing: Number = 0.0,
                          class_weights: Sequence[float] | ArrayLike | None = None,
                          ignore_index: Integer | None = None) -> ArrayT:
    r"""Softmax cross-entropy over integer labels or probability targets, optionally
    class-weighted.

    .. math::

        \mathrm{CE} = -\alpha_t w_t \log p_t
        = -\alpha_t w_t \left(x_t - \log \sum_j e^{x_j}\right)

    Equal to :func:`softmax_focal_loss` with ``gamma=0``; with probability targets or label
    smoothing, :math:`-\sum_j t_j \alpha_j w_j \log p_j`. Ignored labels (negative, or
    equal to ``ignore_index``) give 0 and are not counted. With ``class_weights`` (w),
    ``ignore_index`` and ``label_smoothing``, ``reduction="mean"`` equals PyTorch's
    ``F.cross_entropy(weight=, ignore_index=, label_smoothing=)`` (the denominator is
    :math:`\sum_i w_{t_i}`); see :func:`softmax_focal_loss`.

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
        class_weights: as in :func:`softmax_focal_loss`.
        ignore_index: as in :func:`softmax_focal_loss`.

    Returns:
        As :func:`softmax_focal_loss`.

    Examples:
        >>> import numpy as np
        >>> from focal_array import softmax_cross_entropy
        >>> probs = np.array([[0.1, 0.9], [0.8, 0.2]])
        >>> softmax_cross_entropy(probs, np.array([1, 0]), from_logits=False).round(4)
        array([0.1054, 0.2231])
        >>> # PyTorch's F.cross_entropy(x, y, weight=w, ignore_index=255): Σ w[y]·ℓ / Σ w[y]
        >>> x = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0], [1.0, 3.0, 0.0]])
        >>> softmax_cross_entropy(x, np.array([0, 255, 1]), class_weights=[1.0, 2.0, 1.0],
        ...                       ignore_index=255, reduction="mean").round(4)
        np.float64(0.1698)
    """
    _check_not_called_by_keras("softmax_cross_entropy", "SoftmaxCrossEntropy")
    return _softmax_loss(logits, labels, alpha=alpha, gamma=0.0, axis=axis, weights=weights,
                         reduction=reduction, normalizer=normalizer, from_logits=from_logits,
                         label_smoothing=label_smoothing, class_weights=class_weights,
                         ignore_index=ignore_index, function="softmax_cross_entropy",
                         keras_class="SoftmaxCrossEntropy")


def one_hot(labels: ArrayT, num_classes: Integer, /, *, dtype: Any = None) -> ArrayT:
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
    lab: Any = labels
    v.eager_check(
        [lab],
        lambda: xp.any(lab >= num_classes),
        lambda: f"labels must be < num_classes = {num_classes}; found a label >= "
        f"{num_classes}",
    )
    dtype = xp.float32 if dtype is None else dtype
    return xp.astype(one_hot_mask(labels, num_classes, xp=xp), dtype)
