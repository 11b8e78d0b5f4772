"""Argument checks of :mod:`focal_array.focal_variants`: targets of the elementwise
losses in [0, 1], distances of the distribution focal loss in [0, n − 1], finite options.

Value checks read data, so they run only where arrays are concrete (through
:func:`~focal_array._validate.eager_check`), never inside a ``jax.jit`` trace or a
``torch.compile`` graph.
"""

from __future__ import annotations

import math
from typing import Any

from . import _validate as v
from ._formulas import Formula
from ._loss_checks import REDUCTIONS, _check_normalizer, _check_unit_targets, _check_weights
from ._loss_reductions import _evaluate_reduced
from ._namespace import compute_dtype, namespace
from .losses import _array_or_none

Array = Any


def _finite(name: str, value: Any, what: str) -> float:
    """A finite real number of any sign (a TypeError for a non-number)."""
    try:
        return v.check_number(name, value)
    except ValueError:
        raise ValueError(f"{name} must be a finite number ({what}), got {value!r}") from None


def _prepare_elementwise(logits: Array, targets: Array, *, weights: Any, reduction: str,
                         normalizer: Any) -> tuple[Any, Array]:
    """Resolve and validate the elementwise losses' inputs: (xp, logits in the compute
    dtype). Targets: the logits' shape, boolean or numbers in [0, 1]."""
    xp = namespace(logits=logits, targets=targets, weights=weights,
                   normalizer=_array_or_none(normalizer))
    v.check_floating(xp, logits, "logits")
    v.check_bool_or_number_array(xp, targets, "targets")
    v.check_same_shape("logits", logits.shape, "targets", targets.shape,
                       hint="targets are per class, e.g. IoU-valued one-hot rows")
    v.check_choice("reduction", reduction, REDUCTIONS)
    _check_weights(xp, weights, tuple(logits.shape), "the loss (= logits)")
    _check_normalizer(xp, normalizer, reduction)
    _check_unit_targets(xp, targets, "0/1 labels or soft targets such as IoUs")
    return xp, xp.astype(logits, compute_dtype(xp, logits.dtype), copy=False)


def _elementwise(formula: Formula, xp: Any, x: Array, y: Array, *, weights: Any,
                 reduction: str, normalizer: Any) -> Array:
    return _evaluate_reduced(formula, x, (y,), axis=-1, weights=weights, reduction=reduction,
                             normalizer=normalizer, valid=None, xp=xp)


def _as_float(xp: Any, targets: Array, x: Array) -> Array:
    return xp.astype(targets, x.dtype, copy=False)


def _hard_or_float(xp: Any, targets: Array, x: Array, hard: bool) -> Array:
    """A boolean 0/1 mask as int8 (the formula converts it, exactly), other targets in the
    logits' dtype.

    Not left boolean: XLA rewrites float(mask) · constant into selects, which its fused CPU
    reductions do not take, so the JAX executor materializes a float copy of a boolean
    input (a full-size array written and read again); a 1-byte integer is converted inside
    the fused loop instead. Eager backends convert block by block either way.
    """
    return xp.astype(targets, xp.int8) if hard else _as_float(xp, targets, x)


def _alpha_or_none(alpha: Any) -> float | None:
    return None if alpha is None else v.check_number("alpha", alpha, low=0.0, high=1.0)


def _check_epsilon(epsilon: Any) -> float:
    return _finite("epsilon", epsilon, "the Poly-1 coefficient; negative values are allowed")


def _prepare_distribution(logits: Array, targets: Array, axis: int, *, weights: Any,
                          reduction: str, normalizer: Any) -> tuple[Any, Array, int]:
    xp = namespace(logits=logits, targets=targets, weights=weights,
                   normalizer=_array_or_none(normalizer))
    v.check_floating(xp, logits, "logits")
    if logits.ndim == 0:
        raise ValueError("logits must have at least one dimension (the bin axis)")
    ax = v.normalize_axis(axis, logits.ndim)
    n = logits.shape[ax]
    if n < 2:
        raise ValueError(f"logits need at least 2 bins along axis {ax} (the distribution's "
                         f"support 0..n-1), got {n}")
    if not (xp.isdtype(targets.dtype, "real floating")
            or xp.isdtype(targets.dtype, "integral")):
        raise TypeError(f"targets must be real floating or integer (distances in bin units), "
                        f"got {targets.dtype}")
    row_shape = tuple(s for i, s in enumerate(logits.shape) if i != ax)
    v.check_same_shape("logits without the bin axis", row_shape, "targets", targets.shape,
                       hint="one target distance per distribution")
    v.check_choice("reduction", reduction, REDUCTIONS)
    _check_weights(xp, weights, row_shape, "the per-distribution loss (= targets)")
    _check_normalizer(xp, normalizer, reduction)
    high = n - 1
    if math.prod(targets.shape):
        v.eager_check(
            [targets],
            lambda: ~((xp.min(targets) >= 0) & (xp.max(targets) <= high)),
            lambda: f"targets must be in [0, n - 1] = [0, {high}] (bin units, n = {n} bins "
            f"along axis {ax}; nothing is clipped); found values in "
            f"[{float(xp.min(targets))!r}, {float(xp.max(targets))!r}], or NaN",
        )
    return xp, xp.astype(logits, compute_dtype(xp, logits.dtype), copy=False), ax
