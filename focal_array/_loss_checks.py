"""Argument checks of the public losses: options, normalizers, weights, and that
probabilities are probabilities.

Value checks read data, so they run only where arrays are concrete (through
:func:`~focal_array._validate.eager_check`); inside a ``jax.jit`` trace or a
``torch.compile`` graph they are skipped.
"""

from __future__ import annotations

import math
from typing import Any

from . import _validate as v

Array = Any

#: The reductions every loss accepts.
REDUCTIONS = ("none", "sum", "mean")


def _check_options(*, gamma: float, label_smoothing: float, reduction: str) -> tuple:
    gamma = v.check_number("gamma", gamma, low=0.0)
    label_smoothing = v.check_number("label_smoothing", label_smoothing, low=0.0, high=1.0,
                                     high_open=True)
    v.check_choice("reduction", reduction, REDUCTIONS)
    return gamma, label_smoothing


def _check_normalizer(xp: Any, normalizer: Any, reduction: str) -> None:
    if normalizer is None:
        return
    if reduction != "mean":
        raise ValueError(
            f"normalizer is only used with reduction='mean', got reduction={reduction!r}"
        )
    if v.is_array(normalizer):
        if normalizer.ndim != 0:
            raise ValueError(
                f"normalizer must be a number or a 0-d array, got shape {tuple(normalizer.shape)}"
            )
        if not (xp.isdtype(normalizer.dtype, "integral")
                or xp.isdtype(normalizer.dtype, "real floating")):
            raise TypeError(f"normalizer must be integer or real floating, got {normalizer.dtype}")
        # the same range as for a Python number: a finite count >= 0 (NaN fails >= 0)
        v.eager_check(
            [normalizer],
            lambda: v.not_finite_count(xp, normalizer),
            lambda: f"normalizer must be a finite number >= 0 (a count), got "
            f"{v.describe_scalar(normalizer)}",
        )
    else:
        v.check_number("normalizer", normalizer, low=0.0)


def _check_weights(xp: Any, weights: Any, loss_shape: tuple, loss_name: str) -> None:
    if weights is None:
        return
    v.check_bool_or_number_array(xp, weights, "weights")
    v.check_broadcasts_to("weights", weights.shape, loss_shape, loss_name)


def _check_logits(xp: Any, logits: Any, from_logits: bool, name: str,
                  class_axis: int | None = None) -> None:
    """The dtype; with ``from_logits=False``, eagerly, that the values are probabilities:
    in [0, 1] and, with a ``class_axis`` (softmax), summing to 1 along it."""
    v.check_floating(xp, logits, name)
    if not isinstance(from_logits, bool):
        raise TypeError(f"from_logits must be True or False, got {from_logits!r}")
    if from_logits:
        return
    v.eager_check(
        [logits],
        lambda: _outside_unit_interval(logits, xp=xp),
        lambda: (
            f"with from_logits=False, {name} must hold probabilities in [0, 1]; "
            "found values outside (pass from_logits=True for logits)"
        ),
    )
    if class_axis is None or math.prod(logits.shape) == 0:
        return
    tol = _sum_tolerance(xp, logits.dtype, logits.shape[class_axis])
    v.eager_check(
        [logits],
        lambda: _off_simplex(logits, class_axis, tol, xp=xp),
        lambda: (
            f"with from_logits=False, {name} must hold a probability vector along axis "
            f"{class_axis} (summing to 1 within {tol:.2g}); found a row summing to "
            f"{_worst_sum(logits, class_axis, xp=xp):.7g} (pass from_logits=True for logits, "
            "or normalize the rows)"
        ),
    )


def _sum_tolerance(xp: Any, dtype: Any, num_classes: int) -> float:
    """How far from 1 a row of ``num_classes`` probabilities may sum: ``max(C·ε, 1e-5)``.

    C·ε (ε the dtype's machine epsilon) bounds the rounding of a softmax computed and
    summed in that dtype; the floor 1e-5 admits float32 probabilities cast to float64.
    Any mistake worth catching (per-class sigmoid outputs, unnormalized scores, a
    missing class) is off by far more.
    """
    return max(num_classes * float(xp.finfo(dtype).eps), 1e-5)


def _off_simplex(p: Array, axis: int, tol: float, *, xp: Any) -> Any:
    """True (0-d) where some row's sum is farther than ``tol`` from 1; a NaN row is not
    (NaN propagates to the loss, as in logits)."""
    dev = xp.abs(xp.sum(p, axis=axis) - 1.0)
    return xp.any(dev > tol)


def _worst_sum(p: Array, axis: int, *, xp: Any) -> float:
    """The row sum farthest from 1, for the message (reads data: eager only)."""
    sums = xp.reshape(xp.sum(p, axis=axis), (-1,))
    dev = xp.abs(sums - 1.0)
    dev = xp.where(dev == dev, dev, xp.zeros_like(dev))  # skip NaN rows
    return float(sums[int(xp.argmax(dev))])


def _outside_unit_interval(a: Array, *, xp: Any) -> Any:
    """True where some value of ``a`` is outside [0, 1] (NaN is not), as a 0-d bool array.

    Two reductions: the elementwise ``(a < 0) | (a > 1)`` would write three full-size
    boolean arrays per call.
    """
    if math.prod(a.shape) == 0:
        return xp.asarray(False)
    return (xp.min(a) < 0) | (xp.max(a) > 1)


def _not_unit_interval(a: Array, *, xp: Any) -> Any:
    """True where some value of ``a`` is outside [0, 1] or NaN, as a 0-d bool array.

    min and max propagate NaN on every backend, and a NaN fails both comparisons.
    """
    if math.prod(a.shape) == 0:
        return xp.asarray(False)
    return ~((xp.min(a) >= 0) & (xp.max(a) <= 1))


def _check_unit_targets(xp: Any, targets: Array, what: str) -> None:
    """Floating or integer targets must lie in [0, 1] (checked where concrete); ``what``
    names the expected values in the message. Boolean targets need no check."""
    if xp.isdtype(targets.dtype, "bool"):
        return
    v.eager_check(
        [targets],
        lambda: _not_unit_interval(targets, xp=xp),
        lambda: f"targets must be in [0, 1] ({what}); found values outside, or NaN",
    )
