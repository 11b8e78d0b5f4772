"""Inputs of the softmax losses, validated once: class indices or probability targets,
``ignore_index``, the per-class α and the class weights.

Shared by :mod:`focal_array.losses`, :mod:`focal_array.focal_variants` and
:mod:`focal_array.gradients`, so every softmax loss reads its targets the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from . import _validate as v
from ._formulas.softmax import class_values
from ._loss_checks import (
    _check_logits,
    _check_normalizer,
    _check_options,
    _check_softmax_order,
    _check_unit_targets,
    _check_weights,
)
from ._namespace import compute_dtype, device_of, is_torch, namespace
from ._typing import Number

Array = Any


class SoftmaxInputs(NamedTuple):
    """What a softmax loss computes from, after validation."""

    #: the array namespace
    xp: Any
    #: the logits (or probabilities) in the compute dtype
    x: Array
    #: the class axis, normalized to ``0 <= axis < x.ndim``
    axis: int
    #: integer labels (row shape, the index dtype, ignored rows −1) or, with ``soft``,
    #: probability targets (the logits' shape and compute dtype)
    targets: Array
    #: True for probability targets
    soft: bool
    #: the per-class factor of each class's term, α_j · w_j, (C,), or None
    class_vec: Array | None
    gamma: float
    label_smoothing: float
    #: the rows ``"mean"`` counts (None: all)
    valid: Array | None
    #: each row's weight in the ``"mean"`` denominator, ``w[label]`` (class weights with
    #: integer labels), or None (each counted row weighs 1)
    counts: Array | None


def _array_or_none(value: Any) -> Any:
    """``value`` if it is an array (to join namespace resolution), else None."""
    return value if v.is_array(value) else None


def _class_vector(xp: Any, name: str, value: Any, num_classes: int, like: Array, *,
                  high: float | None) -> Array:
    """A per-class vector option as a (C,) array in ``like``'s dtype/device: an array of
    the logits' library or a sequence of numbers, each in [0, high]."""
    if v.is_array(value):
        namespace(logits=like, **{name: value})
        if value.ndim == 0:
            raise TypeError(f"{name} as an array must be a per-class vector of shape (C,); "
                            "pass a Python float for a scalar")
        vec = value
    elif isinstance(value, Sequence) and not isinstance(value, str):
        vals = [v.check_number(f"{name}[{i}]", a, low=0.0, high=high)
                for i, a in enumerate(value)]
        vec = xp.asarray(vals, dtype=like.dtype, device=device_of(like))
    else:
        kind = "a number in [0, 1] or " if name == "alpha" else ""
        raise TypeError(f"{name} must be None, {kind}a per-class vector, got {value!r}")
    if tuple(vec.shape) != (num_classes,):
        raise ValueError(
            f"{name} as a per-class vector must have shape ({num_classes},) (the number of "
            f"classes along axis), got {tuple(vec.shape)}"
        )
    v.check_floating(xp, vec, name)
    vec = xp.astype(vec, like.dtype)
    if high is None:
        v.eager_check([vec], lambda: ~xp.all((vec >= 0) & (vec < float("inf"))),
                      lambda: f"{name} must be finite and >= 0; found a negative, infinite "
                      "or NaN value")
    else:
        v.eager_check([vec], lambda: xp.any((vec < 0) | (vec > high)),
                      lambda: f"{name} values must be in [0, {high:g}]")
    return vec


def _class_alpha(xp: Any, alpha: Any, num_classes: int, like: Array) -> Array | None:
    """Per-class α as a (C,) array in ``like``'s dtype/device (None: no balancing).

    A scalar α weighs the foreground classes (labels ≥ 1) by α and background (label 0) by
    1 − α, as in the source note's worked example.
    """
    if alpha is None:
        return None
    if v.is_number(alpha):
        a = v.check_number("alpha", alpha, low=0.0, high=1.0)
        values = [1.0 - a] + [a] * (num_classes - 1)
        return xp.asarray(values, dtype=like.dtype, device=device_of(like))
    return _class_vector(xp, "alpha", alpha, num_classes, like, high=1.0)


def _index_dtype(xp: Any) -> Any:
    """The namespace's default index dtype (int64; int32 for JAX without x64): labels
    are cast to it, so uint8 masks can hold the ignored −1 and torch's gathers get the
    int64 they require."""
    if is_torch(xp):
        return xp.int64
    return xp.__array_namespace_info__().default_dtypes()["indexing"]


def _integer_labels(xp: Any, labels: Array, logits: Array, ax: int,
                    ignore_index: int | None) -> Array:
    example_shape = tuple(s for i, s in enumerate(logits.shape) if i != ax)
    v.check_same_shape("logits without the class axis", example_shape, "labels",
                       labels.shape, hint="labels are class indices, one per example, or "
                       "probability targets of the logits' shape")
    num_classes = logits.shape[ax]
    ignored = "negative labels" + ("" if ignore_index is None else
                                   f" and labels equal to ignore_index = {ignore_index}")
    # compared in the labels' own dtype (255 in a uint8 mask); a value the dtype cannot
    # hold matches no label
    ignore = ignore_index if ignore_index is not None and _fits(xp, ignore_index,
                                                                 labels.dtype) else None

    def too_large() -> Any:
        big = labels >= num_classes
        return xp.any(big & (labels != ignore)) if ignore is not None else xp.any(big)

    v.eager_check(
        [labels], too_large,
        lambda: f"labels must be < num_classes = {num_classes} ({ignored} are ignored); "
        f"found a label >= {num_classes}",
    )
    idx = _index_dtype(xp)
    if ignore is not None:
        keep = labels != ignore
        labels = xp.astype(labels, idx, copy=False)
        return xp.where(keep, labels, xp.full_like(labels, -1))
    return xp.astype(labels, idx, copy=False)


def _fits(xp: Any, value: int, dtype: Any) -> bool:
    info = xp.iinfo(dtype)
    return info.min <= value <= info.max


def _soft_targets(xp: Any, labels: Array, logits: Array, ax: int, ignore_index: int | None,
                  dtype: Any) -> Array:
    example_shape = tuple(s for i, s in enumerate(logits.shape) if i != ax)
    if tuple(labels.shape) == example_shape and example_shape != tuple(logits.shape):
        raise TypeError(
            f"labels must have an integer dtype for class indices, got {labels.dtype} of "
            f"shape {tuple(labels.shape)} (cast them to int; floating labels are probability "
            f"targets and need the logits' shape {tuple(logits.shape)})")
    v.check_same_shape("logits", logits.shape, "labels", labels.shape,
                       hint="floating labels are probability targets, one per class")
    if ignore_index is not None:
        raise ValueError("ignore_index applies to integer class labels only; with "
                         "probability targets give an ignored row all-zero targets or a "
                         "zero weight")
    _check_unit_targets(xp, labels, "probability targets along the class axis")
    return xp.astype(labels, dtype, copy=False)


def prepare_softmax(logits: Array, labels: Array, *, alpha: Any, gamma: Number, axis: int,
                    weights: Any, reduction: str, normalizer: Any, from_logits: bool,
                    label_smoothing: Number, class_weights: Any = None,
                    ignore_index: Any = None, function: str = "softmax_focal_loss",
                    keras_class: str = "SoftmaxFocalLoss") -> SoftmaxInputs:
    """Resolve and validate the inputs of a softmax loss. ``function`` and
    ``keras_class`` name the caller in the message of swapped arguments."""
    xp = namespace(logits=logits, labels=labels, weights=weights,
                   normalizer=_array_or_none(normalizer),
                   class_weights=_array_or_none(class_weights), alpha=_array_or_none(alpha))
    _check_softmax_order(xp, logits, labels, axis, function, keras_class)
    v.check_floating(xp, logits, "logits")
    if logits.ndim == 0:
        raise ValueError("logits must have at least one dimension (the class axis)")
    ax = v.normalize_axis(axis, logits.ndim)
    _check_logits(xp, logits, from_logits, "logits", class_axis=ax)
    soft = xp.isdtype(labels.dtype, "real floating")
    if not soft:
        v.check_integer(xp, labels, "labels")
    gamma, label_smoothing = _check_options(gamma=gamma, label_smoothing=label_smoothing,
                                            reduction=reduction)
    ignore = v.check_int("ignore_index", ignore_index, optional=True,
                         what="a label value to ignore, e.g. 255")
    example_shape = tuple(s for i, s in enumerate(logits.shape) if i != ax)
    _check_weights(xp, weights, example_shape, "the per-example loss (the logits' shape "
                   "without the class axis)")
    _check_normalizer(xp, normalizer, reduction)
    x = xp.astype(logits, compute_dtype(xp, logits.dtype), copy=False)
    num_classes = logits.shape[ax]
    vec = _class_alpha(xp, alpha, num_classes, x)
    cw = None if class_weights is None else _class_vector(
        xp, "class_weights", class_weights, num_classes, x, high=None)
    if cw is not None:
        vec = cw if vec is None else vec * cw
    if soft:
        targets = _soft_targets(xp, labels, logits, ax, ignore, x.dtype)
        return SoftmaxInputs(xp, x, ax, targets, True, vec, gamma, label_smoothing, None,
                             None)
    targets = _integer_labels(xp, labels, logits, ax, ignore)
    # w[label] per row; "mean" leaves the ignored rows (``valid``) out of its denominator
    counts = None if cw is None else class_values(xp, cw, targets)
    return SoftmaxInputs(xp, x, ax, targets, False, vec, gamma, label_smoothing,
                         targets >= 0, counts)
