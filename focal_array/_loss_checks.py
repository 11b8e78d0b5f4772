"""Argument checks of the public losses: options, normalizers, weights, and that
probabilities are probabilities.

Value checks read data, so they run only where arrays are concrete (through
:func:`~focal_array._validate.eager_check`); inside a ``jax.jit`` trace or a
``torch.compile`` graph they are skipped.
"""

from __future__ import annotations

import math
import sys
from typing import Any

from . import _validate as v
from ._typing import Number

Array = Any

#: The reductions every loss accepts.
REDUCTIONS = ("none", "sum", "mean")


def _check_options(*, gamma: Number, label_smoothing: Number, reduction: str
                   ) -> tuple[float, float]:
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
    if v.check_bool("from_logits", from_logits):
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


# --------------------------------------------------------------------------- swapped order
#
# Keras calls a loss as ``loss(y_true, y_pred)``; ours take ``(logits, targets)``, like
# optax and torchvision. ``model.compile(loss=sigmoid_focal_loss)`` would hand the targets
# in as logits and, under jit (Keras' JAX backend compiles ``fit`` by default), skip every
# value check and train on a wrong loss. What can be told without reading data is told here.

#: Top-level packages whose code calls a loss or metric function as ``fn(y_true, y_pred)``.
_KERAS_PACKAGES = ("keras", "tf_keras")


def _swapped_message(function: str, found: str, keras_class: str) -> str:
    return (
        f"{found}: the arguments look swapped. focal_array's {function} takes the model's "
        f"output first ({function}(logits, targets)), while Keras calls a loss as "
        f"loss(y_true, y_pred); with Keras use focal_array.keras.{keras_class} "
        f"(model.compile(loss=focal_array.keras.{keras_class}())), which puts them in order"
    )


def _check_not_called_by_keras(function: str, keras_class: str, *, depth: int = 2) -> None:
    """Raise a TypeError when Keras itself calls the public loss ``function``.

    Keras' ``LossFunctionWrapper`` (``model.compile(loss=fn)``) and metric wrappers call
    ``fn(y_true, y_pred)``, after casting both to float: nothing in the arrays tells the
    order, and under ``jax.jit`` the value checks are skipped. The caller's module does
    tell: the frame ``depth`` levels up from here (2: the caller of the public function
    that calls this) belongs to Keras. Costs one dict lookup while Keras is not imported; a
    user's own wrapper (``lambda y_true, y_pred: fn(y_pred, y_true)``) is not Keras' code and
    passes. Skipped inside a ``torch.compile`` graph, where reading frames would break it
    (so Keras' torch backend with ``jit_compile=True`` goes unchecked; its default is eager).
    """
    if not any(sys.modules.get(p) is not None for p in _KERAS_PACKAGES):
        return
    torch = sys.modules.get("torch")
    if torch is not None and torch.compiler.is_compiling():
        return
    try:
        caller = sys._getframe(depth).f_globals.get("__name__") or ""
    except ValueError:  # pragma: no cover - fewer frames than depth
        return
    if caller.split(".")[0] in _KERAS_PACKAGES:
        raise TypeError(_swapped_message(
            function, f"{function} was called by Keras ({caller}) as {function}(y_true, "
            "y_pred)", keras_class))


def _check_sigmoid_order(xp: Any, logits: Array, targets: Array, function: str,
                         keras_class: str) -> None:
    """TypeError when integer or boolean ``logits`` come with floating ``targets``: the
    order of ``(targets, logits)``, e.g. Keras' ``(y_true, y_pred)``."""
    if (not xp.isdtype(logits.dtype, "real floating")
            and xp.isdtype(targets.dtype, "real floating")):
        raise TypeError(_swapped_message(
            function, f"logits must have a real floating dtype, got {logits.dtype}, while "
            f"targets is {targets.dtype}", keras_class))


def _check_softmax_order(xp: Any, logits: Array, labels: Array, axis: Any, function: str,
                         keras_class: str) -> None:
    """TypeError when ``(logits, labels)`` look like ``(labels, logits)``, told from dtypes
    and shapes alone: floating ``labels`` with non-floating ``logits``, or floating
    ``labels`` one rank above ``logits`` whose shape without ``axis`` is the logits' shape
    (Keras' ``(y_true, y_pred)`` after it cast integer labels to float)."""
    if not xp.isdtype(labels.dtype, "real floating"):
        return
    if not xp.isdtype(logits.dtype, "real floating"):
        raise TypeError(_swapped_message(
            function, f"logits must have a real floating dtype, got {logits.dtype}, while "
            f"labels is {labels.dtype}", keras_class))
    ndim = labels.ndim
    if (ndim == logits.ndim + 1 and isinstance(axis, int) and not isinstance(axis, bool)
            and -ndim <= axis < ndim):
        rest = tuple(s for i, s in enumerate(labels.shape) if i != axis % ndim)
        if rest == tuple(logits.shape):
            raise TypeError(_swapped_message(
                function, f"labels ({labels.dtype}, shape {tuple(labels.shape)}) have the "
                f"shape logits would have with a class axis, and logits (shape "
                f"{tuple(logits.shape)}) the shape of class indices", keras_class))
