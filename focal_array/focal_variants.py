"""The focal family: quality, distribution, varifocal, Poly-1 and FL* losses.

Each function validates its arguments, has the backend's executor
(:mod:`focal_array._executors`) evaluate one formula of :mod:`focal_array._formulas` (the
loss's value and analytic derivative, written once with ``xp``) and reduces, exactly as
:mod:`focal_array.losses` does: the same ``weights``, ``reduction`` and ``normalizer``,
the same dtype rules (float16/bfloat16 computed and returned as float32), NumPy, JAX
(``jit``, ``grad``, ``vmap``) and PyTorch (autograd, ``torch.compile``) alike. Value checks
(targets in range) run where arrays are concrete, never inside a trace.

The numerics and their accuracy are documented with the formulas
(:mod:`focal_array._formulas.variants`, ``.poly``, ``.distribution``).

References:
    Li et al. *Generalized Focal Loss*. NeurIPS 2020, arXiv:2006.04388.
    Zhang et al. *VarifocalNet: An IoU-aware Dense Object Detector*. CVPR 2021,
    arXiv:2008.13367.
    Leng et al. *PolyLoss*. ICLR 2022, arXiv:2204.12511.
    Lin et al. *Focal Loss for Dense Object Detection*. ICCV 2017, arXiv:1708.02002.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import _validate as v
from ._formulas import (
    DistributionFocal,
    QualityFocal,
    SigmoidFocalStar,
    SigmoidPoly1,
    SoftmaxPoly1,
    Varifocal,
)
from ._loss_reductions import _evaluate_reduced
from ._softmax_inputs import prepare_softmax
from ._typing import ArrayLike, ArrayT, Number, Reduction
from ._variant_checks import (
    _alpha_or_none,
    _as_float,
    _check_epsilon,
    _elementwise,
    _finite,
    _hard_or_float,
    _prepare_distribution,
    _prepare_elementwise,
)

__all__ = [
    "distribution_focal_loss",
    "poly1_focal_loss",
    "quality_focal_loss",
    "sigmoid_focal_loss_star",
    "softmax_poly1_focal_loss",
    "varifocal_loss",
]

Array = Any


# --------------------------------------------------------------------------- QFL


def quality_focal_loss(logits: ArrayT, targets: ArrayT, /, *, beta: Number = 2.0,
                       weights: ArrayT | None = None, reduction: Reduction = "none",
                       normalizer: Number | ArrayLike | None = None) -> ArrayT:
    r"""Quality focal loss (GFL): BCE against a soft quality target, scaled by |y − σ(x)|^β.

    .. math::

        \mathrm{QFL}(x, y) = |y - \sigma(x)|^\beta\, \mathrm{BCE}(x, y), \qquad
        \mathrm{BCE}(x, y) = y\,\mathrm{softplus}(-x) + (1 - y)\,\mathrm{softplus}(x)

    The target :math:`y` is the joint classification–quality score: the IoU of the
    predicted box with its ground truth at the gt's class of a positive, 0 elsewhere.
    The gradient flows through the whole formula, the scale factor included (as
    mmdetection's ``quality_focal_loss``); it is finite for every β ≥ 0 and finite logit,
    also at :math:`y = \sigma(x)` for β < 1 (where the exact derivative is infinite: there
    it is 0 at :math:`y = \sigma(x)` exactly and finite nearby). β = 0 is the BCE.

    Accuracy: the float32 value and gradient are within 2e-6 (relative, floor at the
    smallest normal number) of the exact ones except near :math:`y = \sigma(x)`, where
    :math:`y - \sigma(x)` is ill-conditioned in any float32 formula: the relative error of
    the loss grows as :math:`\beta \cdot 4\epsilon\,(y (1 - \sigma) + (1 - y)\sigma) /
    |y - \sigma|` (:math:`\epsilon = 2^{-24}`).

    Differences from mmdetection: mmdetection takes ``(labels, scores)`` and builds the
    dense target itself; here ``targets`` is that dense ``(N, C)`` target (score at the
    label's class, 0 elsewhere), and the elementwise loss is returned (sum over the class
    axis for mmdetection's per-anchor loss). The numbers are the same where both are
    finite; mmdetection's ``pow`` of ``|y − σ|`` has a NaN gradient at
    :math:`y = \sigma(x)` for β < 1, and its ``sigmoid``-based factor loses the relative
    accuracy of :math:`1 - \sigma(x)` for large logits.

    Args:
        logits: real floating, any shape, e.g. ``(N, C)``.
        targets: same shape; soft targets in [0, 1] (bool, integer or floating; outside,
            or NaN: a ValueError where arrays are concrete).
        beta: the scale factor's exponent, ``>= 0`` (GFL uses 2).
        weights: broadcasts to ``logits.shape``; multiplies the elementwise loss.
        reduction: ``"none"``, ``"sum"`` or ``"mean"``, as in
            :func:`focal_array.sigmoid_focal_loss`.
        normalizer: with ``"mean"`` only: divide by ``max(normalizer, 1)`` (e.g. the
            number of positives, or the sum of the quality targets, as GFL does).

    Returns:
        The elementwise loss (``logits.shape``) for ``"none"``, else a 0-d array; dtype of
        ``logits``, float32 for float16/bfloat16 inputs.

    Examples:
        >>> import numpy as np
        >>> from focal_array.focal_variants import quality_focal_loss
        >>> # σ(0) = 0.5: target 1 gives log 2 · 0.5², target 0.5 gives 0
        >>> quality_focal_loss(np.array([0.0, 0.0]), np.array([1.0, 0.5])).round(7)
        array([0.1732868, 0.       ])

    References:
        Li et al., *Generalized Focal Loss*, NeurIPS 2020 (arXiv:2006.04388).
    """
    xp, x = _prepare_elementwise(logits, targets, weights=weights, reduction=reduction,
                                 normalizer=normalizer)
    beta = v.check_number("beta", beta, low=0.0)
    return _elementwise(QualityFocal(beta=beta), xp, x, _as_float(xp, targets, x),
                        weights=weights, reduction=reduction, normalizer=normalizer)


# --------------------------------------------------------------------------- DFL


def distribution_focal_loss(logits: ArrayT, targets: ArrayT, /, *, axis: int = -1,
                            weights: ArrayT | None = None, reduction: Reduction = "none",
                            normalizer: Number | ArrayLike | None = None) -> ArrayT:
    r"""Distribution focal loss (GFL): cross-entropy to the two bins around a distance.

    With :math:`n` bins along ``axis`` and a target :math:`y \in [0, n - 1]`,
    :math:`l = \min(\lfloor y \rfloor, n - 2)`, :math:`r = l + 1`:

    .. math::

        \mathrm{DFL}(x, y) = (r - y)\,\mathrm{CE}(x, l) + (y - l)\,\mathrm{CE}(x, r),
        \qquad \mathrm{CE}(x, k) = \log \sum_j e^{x_j} - x_k

    — the cross-entropy against the distribution that linear interpolation puts on the
    bins, :math:`W_j = \max(1 - |j - y|, 0)`. At an integer :math:`y = k` it is
    :math:`\mathrm{CE}(x, k)`, at :math:`y = n - 1` exactly :math:`\mathrm{CE}(x, n - 1)`.
    The gradient is :math:`\mathrm{softmax}(x) - W`. Each CE is computed stably (no
    overflow, full relative accuracy when a bin dominates), so float32 values and
    gradients are within 2e-6 of the exact ones (the gradient except where
    :math:`\mathrm{softmax}(x)_j \approx W_j`, its zero, where the accuracy is absolute).

    Differences from mmdetection and ultralytics: both clamp the target to
    :math:`n - 1 - 0.01` before the loss (mmdetection's ``bbox2distance``, ultralytics'
    ``DFLoss``, which clamps the caller's tensor in place), because their gather of bin
    :math:`\lfloor y \rfloor + 1` would be out of range at :math:`y = n - 1`. Here nothing
    is clamped: the loss is the same on :math:`[0, n - 1.01]` and continues to
    :math:`\mathrm{CE}(x, n - 1)` at :math:`y = n - 1`; targets outside :math:`[0, n - 1]`
    are an error, not clipped (clamp them yourself if that is the behaviour you want).
    ultralytics also averages over the four box sides; this returns the per-side loss.

    Args:
        logits: ``(..., n, ...)`` real floating, the bins along ``axis`` (``n >= 2``),
            e.g. ``(N, 4, reg_max)``. Must be finite (NaN propagates).
        targets: real floating or integer, the shape of ``logits`` without ``axis``
            (e.g. ``(N, 4)`` distances in bin units); values in ``[0, n - 1]``
            (outside, or NaN: a ValueError where arrays are concrete).
        axis: the bin axis of ``logits``.
        weights: broadcasts to the targets' shape; multiplies the loss.
        reduction: ``"none"``, ``"sum"`` or ``"mean"`` (over all distributions, or
            weighted, or by ``max(normalizer, 1)``).
        normalizer: as in :func:`focal_array.sigmoid_focal_loss`.

    Returns:
        The per-distribution loss (the targets' shape) for ``"none"``, else a 0-d array;
        dtype of ``logits``, float32 for float16/bfloat16 inputs.

    Examples:
        >>> import numpy as np
        >>> from focal_array.focal_variants import distribution_focal_loss
        >>> logits = np.log(np.array([[0.1, 0.2, 0.3, 0.4]]))  # softmax = these
        >>> # y = 2.25: 0.75 · (−log 0.3) + 0.25 · (−log 0.4)
        >>> distribution_focal_loss(logits, np.array([2.25])).round(7)
        array([1.1320523])

    References:
        Li et al., *Generalized Focal Loss*, NeurIPS 2020 (arXiv:2006.04388).
    """
    xp, x, ax = _prepare_distribution(logits, targets, axis, weights=weights,
                                      reduction=reduction, normalizer=normalizer)
    return _evaluate_reduced(DistributionFocal(), x, (_as_float(xp, targets, x),), axis=ax,
                             weights=weights, reduction=reduction, normalizer=normalizer,
                             valid=None, xp=xp)


# --------------------------------------------------------------------------- VFL


def varifocal_loss(logits: ArrayT, targets: ArrayT, /, *, alpha: Number = 0.75,
                   gamma: Number = 2.0, weights: ArrayT | None = None,
                   reduction: Reduction = "none",
                   normalizer: Number | ArrayLike | None = None) -> ArrayT:
    r"""Varifocal loss (VarifocalNet): IoU-weighted BCE, focal down-weighting of negatives.

    .. math::

        \mathrm{VFL}(x, y) = \begin{cases}
            y\, \mathrm{BCE}(x, y) & y > 0 \\
            \alpha\, \sigma(x)^\gamma\, \mathrm{BCE}(x, 0) & y = 0
        \end{cases}

    with the IoU-aware classification target :math:`y` (the IoU at the gt's class of a
    positive, 0 elsewhere). The weight is part of the formula: the gradient flows through
    :math:`\sigma(x)^\gamma` (not detached), as in mmdetection's ``varifocal_loss``
    (``iou_weighted=True``) and ultralytics' ``VarifocalLoss``; for :math:`y = 0` it is
    :math:`\alpha\sigma^\gamma(\sigma + \gamma (1 - \sigma)\,\mathrm{softplus}(x))`. Finite
    for every γ ≥ 0 and finite logit; float32 values within 2e-6 of the exact ones (the
    gradient of a positive, :math:`y\,(\sigma(x) - y)`, crosses zero at
    :math:`\sigma(x) = y`, where its accuracy is absolute).

    Differences: mmdetection's negative weight is :math:`\alpha|\sigma(x) - y|^\gamma` on
    :math:`y \le 0`, the same on :math:`y = 0`; ultralytics takes a separate 0/1 ``label``
    and weighs by ``gt_score`` where it is 1 — the same with ``label = (y > 0)``, except
    that a positive with IoU 0 is a zero-weight positive there and a negative here.
    ultralytics also reduces with a mean over classes and a sum over anchors.

    Args:
        logits: real floating, any shape, e.g. ``(N, C)``.
        targets: same shape; IoU-aware targets in [0, 1] (0 for negatives).
        alpha: the negatives' weight, a finite number ``>= 0`` (VarifocalNet: 0.75).
        gamma: the negatives' focusing exponent, ``>= 0``.
        weights: broadcasts to ``logits.shape``; multiplies the elementwise loss.
        reduction: as in :func:`quality_focal_loss`.
        normalizer: as in :func:`quality_focal_loss`.

    Returns:
        As :func:`quality_focal_loss`.

    Examples:
        >>> import numpy as np
        >>> from focal_array.focal_variants import varifocal_loss
        >>> # σ(0) = 0.5: a negative gives 0.75 · 0.5² · log 2; target 0.8 gives 0.8 · log 2
        >>> varifocal_loss(np.array([0.0, 0.0]), np.array([0.0, 0.8])).round(7)
        array([0.1299651, 0.5545177])

    References:
        Zhang et al., *VarifocalNet*, CVPR 2021 (arXiv:2008.13367).
    """
    xp, x = _prepare_elementwise(logits, targets, weights=weights, reduction=reduction,
                                 normalizer=normalizer)
    alpha = v.check_number("alpha", alpha, low=0.0)
    gamma = v.check_number("gamma", gamma, low=0.0)
    return _elementwise(Varifocal(alpha=alpha, gamma=gamma), xp, x, _as_float(xp, targets, x),
                        weights=weights, reduction=reduction, normalizer=normalizer)


# --------------------------------------------------------------------------- Poly-1


def poly1_focal_loss(logits: ArrayT, targets: ArrayT, /, *, epsilon: Number = 1.0,
                     alpha: Number | None = 0.25, gamma: Number = 2.0,
                     weights: ArrayT | None = None, reduction: Reduction = "none",
                     normalizer: Number | ArrayLike | None = None) -> ArrayT:
    r"""Poly-1 focal loss (PolyLoss), sigmoid: the focal loss plus ε (1 − p_t)^(γ+1).

    .. math::

        \mathrm{Poly1}(x, y) = \alpha_t (1 - p_t)^\gamma\,\mathrm{BCE}(x, y)
            + \epsilon\, (1 - p_t)^{\gamma + 1}

    with :math:`p_t`, :math:`\alpha_t` and the BCE of :func:`focal_array.sigmoid_focal_loss`
    (soft targets: :math:`p_t = p y + (1 - p)(1 - y)`). The ε term is not α-weighted, as
    in the paper's code. ε = 0 is :func:`focal_array.sigmoid_focal_loss`. ε may be
    negative (the paper searches ε ≥ −1); the loss is then negative wherever
    :math:`\epsilon < -\alpha_t\,\mathrm{BCE} / (1 - p_t)` (possible for ε < −α_t), and
    its relative accuracy is that of a difference where the terms nearly cancel. Finite
    gradients for every γ ≥ 0 and finite logit; for ε ≥ 0 (or ε ≥ −α_t / 2) float32 values
    and gradients are within 2e-6 of the exact ones on 0/1 targets.

    Args:
        logits: real floating, any shape.
        targets: same shape; 0/1 labels (bool, integer, floating) or soft targets in [0, 1].
        epsilon: the Poly-1 coefficient, any finite number.
        alpha: weight of the positive term in [0, 1]; None disables balancing.
        gamma: focusing parameter, ``>= 0``.
        weights: broadcasts to ``logits.shape``; multiplies the elementwise loss.
        reduction: as in :func:`focal_array.sigmoid_focal_loss`.
        normalizer: as in :func:`focal_array.sigmoid_focal_loss`.

    Returns:
        As :func:`focal_array.sigmoid_focal_loss`.

    Examples:
        >>> import numpy as np
        >>> from focal_array.focal_variants import poly1_focal_loss
        >>> # x = 0, y = 1: 0.25 · 0.5² · log 2 + 1 · 0.5³
        >>> poly1_focal_loss(np.array([0.0]), np.array([1.0])).round(7)
        array([0.1683217])

    References:
        Leng et al., *PolyLoss*, ICLR 2022 (arXiv:2204.12511).
    """
    xp, x = _prepare_elementwise(logits, targets, weights=weights, reduction=reduction,
                                 normalizer=normalizer)
    eps = _check_epsilon(epsilon)
    alpha = _alpha_or_none(alpha)
    gamma = v.check_number("gamma", gamma, low=0.0)
    hard = bool(xp.isdtype(targets.dtype, "bool"))
    y = _hard_or_float(xp, targets, x, hard)
    formula = SigmoidPoly1(alpha=alpha, gamma=gamma, epsilon=eps, hard=hard)
    return _elementwise(formula, xp, x, y, weights=weights, reduction=reduction,
                        normalizer=normalizer)


def softmax_poly1_focal_loss(logits: ArrayT, labels: ArrayT, /, *, epsilon: Number = 1.0,
                             alpha: Number | Sequence[float] | ArrayLike | None = None,
                             gamma: Number = 2.0, axis: int = -1,
                             weights: ArrayT | None = None, reduction: Reduction = "none",
                             normalizer: Number | ArrayLike | None = None) -> ArrayT:
    r"""Poly-1 focal loss (PolyLoss), softmax over integer labels.

    .. math::

        \mathrm{Poly1} = -\alpha_t (1 - p_t)^\gamma \log p_t + \epsilon\,(1 - p_t)^{\gamma+1},
        \qquad p_t = \mathrm{softmax}(x)_{\text{label}}

    :math:`\alpha_t` as in :func:`focal_array.softmax_focal_loss` (None, a scalar, or a
    per-class vector); the ε term is not α-weighted. γ = 0 is Poly-1 cross-entropy,
    :math:`\mathrm{CE} + \epsilon (1 - p_t)`; ε = 0 is
    :func:`focal_array.softmax_focal_loss`. Negative labels are ignored (loss 0, not
    counted by ``"mean"``). ε may be negative (see :func:`poly1_focal_loss`).
    :math:`-\log p_t` and its gradient come from the softmax focal loss's margin
    (accurate for every finite logit); :math:`1 - p_t = -\mathrm{expm1}(\log p_t)`.

    Args:
        logits: ``(..., C, ...)`` real floating with the classes along ``axis``.
        labels: integer class indices, the shape of ``logits`` without ``axis``; values
            in [0, C), negative to ignore (≥ C: a ValueError where arrays are concrete).
        epsilon: the Poly-1 coefficient, any finite number.
        alpha: None, a number in [0, 1] (α for labels ≥ 1, 1 − α for label 0) or a
            per-class vector of C values in [0, 1].
        gamma: focusing parameter, ``>= 0``.
        axis: the class axis of ``logits``.
        weights: broadcasts to the labels' shape.
        reduction: as in :func:`focal_array.softmax_focal_loss`.
        normalizer: as in :func:`focal_array.softmax_focal_loss`.

    Returns:
        The per-example loss (the labels' shape) for ``"none"``, else a 0-d array; dtype
        of ``logits``, float32 for float16/bfloat16 inputs.

    Examples:
        >>> import numpy as np
        >>> from focal_array.focal_variants import softmax_poly1_focal_loss
        >>> # 4 equal logits: p_t = 1/4, so 0.75² · log 4 + 1 · 0.75³
        >>> softmax_poly1_focal_loss(np.zeros((1, 4)), np.array([2])).round(7)
        array([1.2016656])

    References:
        Leng et al., *PolyLoss*, ICLR 2022 (arXiv:2204.12511).
    """
    inputs = prepare_softmax(
        logits, labels, alpha=alpha, gamma=gamma, axis=axis, weights=weights,
        reduction=reduction, normalizer=normalizer, from_logits=True, label_smoothing=0.0,
        function="softmax_poly1_focal_loss", keras_class="SoftmaxFocalLoss")
    if inputs.soft:
        raise TypeError("softmax_poly1_focal_loss takes integer class labels, got "
                        f"floating labels ({labels.dtype}); probability targets are not "
                        "supported by the Poly-1 term")
    eps = _check_epsilon(epsilon)
    vec = inputs.class_vec
    formula = SoftmaxPoly1(gamma=inputs.gamma, alpha=vec is not None, epsilon=eps)
    aux = (inputs.targets,) if vec is None else (inputs.targets, vec)
    return _evaluate_reduced(formula, inputs.x, aux, axis=inputs.axis, weights=weights,
                             reduction=reduction, normalizer=normalizer, valid=inputs.valid,
                             xp=inputs.xp)


# --------------------------------------------------------------------------- FL*


def sigmoid_focal_loss_star(logits: ArrayT, targets: ArrayT, /, *, gamma: Number = 4.0,
                            beta: Number = 0.0, alpha: Number | None = 0.25,
                            weights: ArrayT | None = None, reduction: Reduction = "none",
                            normalizer: Number | ArrayLike | None = None) -> ArrayT:
    r"""FL*, the focal loss's appendix variant: a logistic loss of a scaled, shifted margin.

    .. math::

        x_t = (2y - 1)\,x, \qquad
        \mathrm{FL}^*(x, y) = -\alpha_t\,\frac{\log \sigma(\gamma x_t + \beta)}{\gamma}
            = \alpha_t\,\frac{\mathrm{softplus}(-(\gamma x_t + \beta))}{\gamma}

    with :math:`\alpha_t = \alpha y + (1 - \alpha)(1 - y)`. γ = 1, β = 0 is the
    (α-balanced) BCE on 0/1 targets. The gradient is
    :math:`-\alpha_t (2y - 1)\,\sigma(-(\gamma x_t + \beta))`, finite everywhere; float32
    values and gradients are within 2e-6 of the exact ones for every γ and β (the
    rounding errors of the scaled margin are recovered exactly where it is not exact).

    Soft targets follow fvcore's ``sigmoid_focal_loss_star``: :math:`2y - 1` enters
    linearly, so a soft target scales the margin (:math:`y = 1/2` gives the constant
    :math:`\alpha_t\,\mathrm{softplus}(-\beta)/\gamma` and no gradient). This is not the
    BCE-style blend of the two 0/1 losses, and not a probabilistic target. fvcore has no
    β (it is 0 there) and defaults to γ = 1 and no α; the defaults here are the paper's
    reported γ = 4, β = 0 with RetinaNet's α.

    Args:
        logits: real floating, any shape.
        targets: same shape; 0/1 labels (bool, integer, floating) or soft targets in [0, 1].
        gamma: the margin's scale, a number ``> 0``.
        beta: the margin's shift, a finite number (β / γ must be finite in the dtype).
        alpha: weight of the positive term in [0, 1]; None disables balancing.
        weights: broadcasts to ``logits.shape``; multiplies the elementwise loss.
        reduction: as in :func:`focal_array.sigmoid_focal_loss`.
        normalizer: as in :func:`focal_array.sigmoid_focal_loss`.

    Returns:
        As :func:`focal_array.sigmoid_focal_loss`.

    Examples:
        >>> import numpy as np
        >>> from focal_array.focal_variants import sigmoid_focal_loss_star
        >>> # x = 0, y = 1: softplus(0) / 4 = log 2 / 4
        >>> sigmoid_focal_loss_star(np.array([0.0]), np.array([1.0]), alpha=None).round(7)
        array([0.1732868])

    References:
        Lin et al., *Focal Loss for Dense Object Detection*, appendix A (arXiv:1708.02002).
    """
    xp, x = _prepare_elementwise(logits, targets, weights=weights, reduction=reduction,
                                 normalizer=normalizer)
    gamma = v.check_number("gamma", gamma, low=0.0, low_open=True)
    beta = _finite("beta", beta, "the margin's shift")
    alpha = _alpha_or_none(alpha)
    largest = float(xp.finfo(x.dtype).max)
    if not abs(beta / gamma) <= largest:
        raise ValueError(f"beta / gamma must be finite in the compute dtype {x.dtype} "
                         f"(|beta / gamma| <= {largest:.4g}), got beta={beta!r}, "
                         f"gamma={gamma!r}")
    hard = bool(xp.isdtype(targets.dtype, "bool"))
    y = _hard_or_float(xp, targets, x, hard)
    formula = SigmoidFocalStar(alpha=alpha, gamma=gamma, beta=beta, hard=hard)
    return _elementwise(formula, xp, x, y, weights=weights, reduction=reduction,
                        normalizer=normalizer)
