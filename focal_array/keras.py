"""Keras 3 losses over focal_array's functions, for ``model.compile(loss=...)``.

``SigmoidFocalLoss``, ``BinaryCrossEntropy``, ``SoftmaxFocalLoss`` and
``SoftmaxCrossEntropy`` are :class:`keras.losses.Loss` subclasses: Keras' argument order
``loss(y_true, y_pred, sample_weight=None)``, Keras' reductions (``"sum_over_batch_size"``,
``"sum"``, ``"mean"``, ``"mean_with_sample_weight"``, ``None``/``"none"``) done by the Keras
base class, and ``get_config`` / ``from_config`` under the serialization package
``"focal_array"``, so a saved ``.keras`` model loads without ``custom_objects``. The loss
itself is computed by :func:`focal_array.sigmoid_focal_loss` and the other functions on
the backend's own tensors (JAX arrays, PyTorch tensors), so values, gradients and the
numerics are the library's.

One value per sample, as Keras' own losses give:

- sigmoid losses: the elementwise loss averaged over ``axis`` (the class axis), as
  :class:`keras.losses.BinaryFocalCrossentropy` does;
- softmax losses: the per-example loss. ``y_true`` is read by its rank: one less than
  ``y_pred``'s (or the same with size 1 along ``axis``, as Keras' sparse losses accept) →
  integer class indices (Keras hands them over as floats; they are cast back to int32,
  a non-integer value is a ValueError where arrays are concrete); the rank and shape of
  ``y_pred`` → probability targets (one-hot or soft) along ``axis``.

Importing :mod:`focal_array` does not import this module, nor Keras; ``import
focal_array.keras`` does (set ``KERAS_BACKEND`` to ``"jax"`` or ``"torch"`` first).

Examples:
    >>> import numpy as np
    >>> from focal_array.keras import SigmoidFocalLoss
    >>> loss = SigmoidFocalLoss(from_logits=False)
    >>> y_true = np.array([[1.0, 0.0]])        # a positive and a negative class
    >>> y_pred = np.array([[0.9, 0.2]])        # P(class)
    >>> round(float(loss(y_true, y_pred)), 7)  # mean of 0.0002634 and 0.0066943
    0.0034789
"""

from __future__ import annotations

from typing import Any

import keras

from . import _validate as v
from . import losses as _losses
from ._loss_checks import _check_options

__all__ = ["BinaryCrossEntropy", "SigmoidFocalLoss", "SoftmaxCrossEntropy", "SoftmaxFocalLoss"]

_PACKAGE = "focal_array"


def _alpha_option(alpha: Any, *, per_class: bool) -> Any:
    """``alpha`` as a JSON-serializable option: None, a float, or (softmax) a list of
    floats, each in [0, 1]."""
    if alpha is None or v.is_number(alpha):
        return None if alpha is None else v.check_number("alpha", alpha, low=0.0, high=1.0)
    if not per_class:
        raise TypeError(f"alpha must be None or a number in [0, 1], got {alpha!r}")
    return _float_list("alpha", alpha, low=0.0, high=1.0)


def _float_list(name: str, values: Any, *, low: float, high: float | None = None) -> list:
    """A per-class option (a sequence, or a host array read once here) as a list of
    floats, for the config."""
    if isinstance(values, str) or not hasattr(values, "__len__"):
        raise TypeError(f"{name} must be a sequence of numbers (one per class), got "
                        f"{values!r}")
    try:
        values = [values[i] for i in range(len(values))]
    except TypeError as exc:
        raise TypeError(f"{name} must be a one-dimensional sequence of numbers, got "
                        f"{values!r}") from exc
    out = []
    for i, value in enumerate(values):
        if not v.is_number(value) and hasattr(value, "item"):
            value = value.item()  # a 0-d array: read once, at construction
        out.append(v.check_number(f"{name}[{i}]", value, low=low, high=high))
    return out


class _FocalArrayLoss(keras.losses.Loss):
    """Options and config shared by the four losses."""

    def __init__(self, *, options: dict, reduction: Any, name: str | None,
                 dtype: Any) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self._options = options

    def get_config(self) -> dict:
        """The constructor's arguments (JSON-serializable), for ``from_config``."""
        config = super().get_config()
        config.update(self._options)
        return config


# --------------------------------------------------------------------------- sigmoid


class _SigmoidLoss(_FocalArrayLoss):
    def __init__(self, *, alpha: Any, gamma: float, from_logits: bool,
                 label_smoothing: float, axis: int, reduction: Any, name: str | None,
                 dtype: Any) -> None:
        gamma, label_smoothing = _check_options(gamma=gamma, label_smoothing=label_smoothing,
                                                reduction="none")
        options = {"alpha": _alpha_option(alpha, per_class=False), "gamma": gamma,
                   "from_logits": v.check_bool("from_logits", from_logits),
                   "label_smoothing": label_smoothing,
                   "axis": v.check_int("axis", axis, what="the class axis")}
        super().__init__(options=options, reduction=reduction, name=name, dtype=dtype)

    def _elementwise(self, logits: Any, targets: Any) -> Any:
        o = self._options
        return _losses.sigmoid_focal_loss(
            logits, targets, alpha=o["alpha"], gamma=o["gamma"], from_logits=o["from_logits"],
            label_smoothing=o["label_smoothing"])

    def call(self, y_true: Any, y_pred: Any) -> Any:
        """Per-sample loss: the elementwise loss of ``(y_pred, y_true)``, averaged over
        ``axis``. ``y_true`` of shape ``(N,)`` with ``y_pred`` of shape ``(N, 1)`` (or the
        reverse) is matched to it, as Keras' own losses do."""
        if y_true.ndim == y_pred.ndim - 1 and y_pred.shape[-1] == 1:
            y_true = keras.ops.expand_dims(y_true, -1)
        elif y_true.ndim == y_pred.ndim + 1 and y_true.shape[-1] == 1:
            y_true = keras.ops.squeeze(y_true, -1)
        return keras.ops.mean(self._elementwise(y_pred, y_true), axis=self._options["axis"])


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SigmoidFocalLoss(_SigmoidLoss):
    r"""Sigmoid focal loss (:func:`focal_array.sigmoid_focal_loss`) as a Keras loss.

    Per sample: :math:`\frac{1}{C}\sum_c \mathrm{FL}(x_c, y_c)`, the mean over ``axis`` of
    the elementwise focal loss, then Keras' ``reduction`` with ``sample_weight``. Equal to
    ``keras.losses.BinaryFocalCrossentropy(apply_class_balancing=True, alpha=alpha,
    gamma=gamma, from_logits=from_logits)`` (``alpha=None``: ``apply_class_balancing=
    False``) up to Keras' clipping of probabilities at 1e-7, which focal_array does not do:
    the loss is computed from the logits in log space, its gradient finite for every
    γ ≥ 0 and every logit.

    Args:
        alpha: weight of the positive term in [0, 1] (``1 − alpha`` for negatives), or
            None for no balancing.
        gamma: focusing parameter, ``>= 0``.
        from_logits: ``True`` (default, unlike Keras' losses) when ``y_pred`` holds logits;
            ``False`` for probabilities P(class).
        label_smoothing: ε in [0, 1); targets become ``y (1 − ε) + ε / 2``.
        axis: the class axis, averaged over.
        reduction: Keras' reduction of the per-sample losses.
        name: the loss's name.
        dtype: Keras' dtype of the computation (default ``keras.backend.floatx()``).
            float16/bfloat16 are computed in float32, as the functions do.

    Examples:
        >>> import numpy as np
        >>> loss = SigmoidFocalLoss(alpha=None, gamma=0.0, from_logits=False)
        >>> round(float(loss(np.array([[1.0, 0.0]]), np.array([[0.9, 0.2]]))), 4)
        0.1643
    """

    def __init__(self, alpha: float | None = 0.25, gamma: float = 2.0, from_logits: bool = True,
                 label_smoothing: float = 0.0, axis: int = -1,
                 reduction: str | None = "sum_over_batch_size",
                 name: str | None = "sigmoid_focal_loss", dtype: Any = None) -> None:
        super().__init__(alpha=alpha, gamma=gamma, from_logits=from_logits,
                         label_smoothing=label_smoothing, axis=axis, reduction=reduction,
                         name=name, dtype=dtype)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class BinaryCrossEntropy(_SigmoidLoss):
    r"""Sigmoid binary cross-entropy (:func:`focal_array.binary_cross_entropy`) as a Keras
    loss.

    Per sample: the mean over ``axis`` of the elementwise (α-balanced) BCE. Equal to
    ``keras.losses.BinaryCrossentropy(from_logits=from_logits)`` for ``alpha=None``.

    Args:
        alpha: None (default, no balancing) or the positive weight in [0, 1].
        from_logits: ``True`` (default, unlike Keras) for logits, ``False`` for probabilities.
        label_smoothing: ε in [0, 1); targets become ``y (1 − ε) + ε / 2``.
        axis: the class axis, averaged over.
        reduction: Keras' reduction of the per-sample losses.
        name: the loss's name.
        dtype: Keras' dtype of the computation.

    Examples:
        >>> import numpy as np
        >>> loss = BinaryCrossEntropy(from_logits=False)
        >>> round(float(loss(np.array([[1.0, 0.0]]), np.array([[0.9, 0.2]]))), 4)
        0.1643
    """

    def __init__(self, alpha: float | None = None, from_logits: bool = True,
                 label_smoothing: float = 0.0, axis: int = -1,
                 reduction: str | None = "sum_over_batch_size",
                 name: str | None = "binary_cross_entropy", dtype: Any = None) -> None:
        super().__init__(alpha=alpha, gamma=0.0, from_logits=from_logits,
                         label_smoothing=label_smoothing, axis=axis, reduction=reduction,
                         name=name, dtype=dtype)

    def _elementwise(self, logits: Any, targets: Any) -> Any:
        o = self._options
        return _losses.binary_cross_entropy(
            logits, targets, alpha=o["alpha"], from_logits=o["from_logits"],
            label_smoothing=o["label_smoothing"])

    def get_config(self) -> dict:
        """The constructor's arguments (without the fixed γ = 0)."""
        config = super().get_config()
        del config["gamma"]
        return config


# --------------------------------------------------------------------------- softmax


def _set_mask(losses: Any, mask: Any) -> None:
    """Attach Keras' mask to the per-example loss: its reductions then leave the masked
    examples out of the count, as ``SparseCategoricalCrossentropy(ignore_class=...)``."""
    try:  # Keras >= 3.6 has no public name for it
        from keras.src.backend import set_keras_mask
    except ImportError:  # pragma: no cover - older Keras 3 reads the attribute
        losses._keras_mask = mask
    else:
        set_keras_mask(losses, mask)


class _SoftmaxLoss(_FocalArrayLoss):
    def __init__(self, *, alpha: Any, gamma: float, from_logits: bool,
                 label_smoothing: float, axis: int, class_weights: Any, ignore_index: Any,
                 reduction: Any, name: str | None, dtype: Any) -> None:
        gamma, label_smoothing = _check_options(gamma=gamma, label_smoothing=label_smoothing,
                                                reduction="none")
        options = {
            "alpha": _alpha_option(alpha, per_class=True), "gamma": gamma,
            "from_logits": v.check_bool("from_logits", from_logits),
            "label_smoothing": label_smoothing,
            "axis": v.check_int("axis", axis, what="the class axis"),
            "class_weights": None if class_weights is None
            else _float_list("class_weights", class_weights, low=0.0),
            "ignore_index": v.check_int("ignore_index", ignore_index, optional=True,
                                        what="a label value to ignore"),
        }
        super().__init__(options=options, reduction=reduction, name=name, dtype=dtype)

    def _function_options(self) -> dict:
        o = self._options
        return {key: o[key] for key in ("alpha", "axis", "from_logits", "label_smoothing",
                                        "class_weights", "ignore_index")}

    def _per_example(self, logits: Any, labels: Any) -> Any:
        raise NotImplementedError

    def call(self, y_true: Any, y_pred: Any) -> Any:
        """Per-example loss of ``(y_pred, labels)``, ``labels`` read from ``y_true`` by its
        rank (see the module's description)."""
        ndim = y_pred.ndim
        ax = v.normalize_axis(self._options["axis"], ndim)
        if y_true.ndim == ndim and y_true.shape[ax] == 1 and y_pred.shape[ax] != 1:
            y_true = keras.ops.squeeze(y_true, ax)
        if y_true.ndim == ndim:
            return self._per_example(y_pred, y_true)  # probability targets
        if y_true.ndim != ndim - 1:
            raise ValueError(
                f"y_true must be integer class indices of shape {_without(y_pred.shape, ax)} "
                f"(y_pred's shape without axis {ax}) or probability targets of y_pred's shape "
                f"{tuple(y_pred.shape)}, got shape {tuple(y_true.shape)}")
        labels = _integer_labels(y_true)
        losses = self._per_example(y_pred, labels)
        valid = labels >= 0
        ignore = self._options["ignore_index"]
        if ignore is not None:
            valid = valid & (labels != ignore)
        _set_mask(losses, valid)
        return losses


def _without(shape: Any, axis: int) -> tuple:
    return tuple(s for i, s in enumerate(shape) if i != axis)


def _integer_labels(y_true: Any) -> Any:
    """Class indices from Keras' floating ``y_true``, as integers; a value that is not a whole
    number is a ValueError where arrays are concrete (a cast would truncate it)."""
    # int64 for torch, whose gathers take no other index dtype; JAX's default int32
    dtype = "int64" if keras.backend.backend() == "torch" else "int32"
    if keras.backend.is_int_dtype(y_true.dtype):
        return keras.ops.cast(y_true, dtype)
    rounded = keras.ops.round(y_true)
    v.eager_check(
        [y_true],
        lambda: keras.ops.any(rounded != y_true),
        lambda: "y_true of rank one less than y_pred holds class indices; found a value that "
        "is not a whole number (for probability targets give y_true the shape of y_pred)",
    )
    return keras.ops.cast(rounded, dtype)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SoftmaxFocalLoss(_SoftmaxLoss):
    r"""Softmax focal loss (:func:`focal_array.softmax_focal_loss`) as a Keras loss.

    Per example: :math:`-\alpha_t (1 - p_t)^\gamma \log p_t` over the softmax along ``axis``,
    then Keras' ``reduction`` with ``sample_weight``. Examples with a negative label, or
    ``ignore_index``, are masked: their loss is 0 and Keras' reductions do not count them
    (as ``SparseCategoricalCrossentropy(ignore_class=...)``).

    Differs from ``keras.losses.CategoricalFocalCrossentropy`` in ``alpha``: a scalar here
    weighs the foreground classes (labels ≥ 1) by α and the background class 0 by 1 − α
    (the detection convention), while Keras multiplies every class by the same α. Keras'
    scalar α is ``alpha=[a] * C`` here; with that, or ``alpha=None`` against Keras'
    ``alpha=1``, the two agree up to Keras' clipping of probabilities at 1e-7. Keras'
    loss also sums ``−α y_j (1 − p_j)^γ log p_j`` over every class for soft targets, as
    focal_array does with label smoothing.

    Args:
        alpha: None (no balancing), a number in [0, 1] (α foreground, 1 − α background
            class 0), or a per-class sequence of C values in [0, 1].
        gamma: focusing parameter, ``>= 0``.
        from_logits: ``True`` (default, unlike Keras) for logits; ``False`` for a
            probability vector along ``axis``.
        label_smoothing: ε in [0, 1).
        axis: the class axis of ``y_pred``.
        class_weights: optional per-class weights (C values ≥ 0), ``F.cross_entropy``'s
            ``weight`` (see :func:`focal_array.softmax_focal_loss`).
        ignore_index: optional label value whose examples are ignored (masked); integer
            ``y_true`` only.
        reduction: Keras' reduction of the per-example losses.
        name: the loss's name.
        dtype: Keras' dtype of the computation.

    Examples:
        >>> import numpy as np
        >>> loss = SoftmaxFocalLoss(alpha=0.25, from_logits=False, reduction=None)
        >>> probs = np.array([[0.1, 0.9], [0.8, 0.2]])  # [P(background), P(person)]
        >>> [round(float(x), 7) for x in loss(np.array([1, 0]), probs)]
        [0.0002634, 0.0066943]
    """

    def __init__(self, alpha: Any = None, gamma: float = 2.0, from_logits: bool = True,
                 label_smoothing: float = 0.0, axis: int = -1, class_weights: Any = None,
                 ignore_index: int | None = None,
                 reduction: str | None = "sum_over_batch_size",
                 name: str | None = "softmax_focal_loss", dtype: Any = None) -> None:
        super().__init__(alpha=alpha, gamma=gamma, from_logits=from_logits,
                         label_smoothing=label_smoothing, axis=axis,
                         class_weights=class_weights, ignore_index=ignore_index,
                         reduction=reduction, name=name, dtype=dtype)

    def _per_example(self, logits: Any, labels: Any) -> Any:
        return _losses.softmax_focal_loss(logits, labels, gamma=self._options["gamma"],
                                          **self._function_options())


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SoftmaxCrossEntropy(_SoftmaxLoss):
    r"""Softmax cross-entropy (:func:`focal_array.softmax_cross_entropy`) as a Keras loss.

    Per example: :math:`-\alpha_t \log p_t`. Equal to
    ``keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)`` for integer
    ``y_true`` (``ignore_index`` as its ``ignore_class``) and to
    ``keras.losses.CategoricalCrossentropy`` for probability targets, with ``alpha=None``.

    Args:
        alpha, from_logits, label_smoothing, axis: as in :class:`SoftmaxFocalLoss`.
        class_weights, ignore_index, reduction, dtype: as in :class:`SoftmaxFocalLoss`.
        name: the loss's name.

    Examples:
        >>> import numpy as np
        >>> loss = SoftmaxCrossEntropy(from_logits=False)
        >>> probs = np.array([[0.1, 0.9], [0.8, 0.2]])
        >>> round(float(loss(np.array([1, 0]), probs)), 4)  # (0.1054 + 0.2231) / 2
        0.1643
    """

    def __init__(self, alpha: Any = None, from_logits: bool = True,
                 label_smoothing: float = 0.0, axis: int = -1, class_weights: Any = None,
                 ignore_index: int | None = None,
                 reduction: str | None = "sum_over_batch_size",
                 name: str | None = "softmax_cross_entropy", dtype: Any = None) -> None:
        super().__init__(alpha=alpha, gamma=0.0, from_logits=from_logits,
                         label_smoothing=label_smoothing, axis=axis,
                         class_weights=class_weights, ignore_index=ignore_index,
                         reduction=reduction, name=name, dtype=dtype)

    def _per_example(self, logits: Any, labels: Any) -> Any:
        return _losses.softmax_cross_entropy(logits, labels, **self._function_options())

    def get_config(self) -> dict:
        """The constructor's arguments (without the fixed γ = 0)."""
        config = super().get_config()
        del config["gamma"]
        return config
