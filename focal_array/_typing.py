"""The types of the public signatures: the array type variable, option literals, numbers.

Nothing here runs at call time: every module imports it under
``from __future__ import annotations``, so signatures are never evaluated and
``jax.jit``/``torch.compile`` see plain functions. The names exist for type checkers
(pyright, mypy) and for users who want to annotate their own code.

- :data:`ArrayT` — a function whose first argument is an array returns an array of the
  same library: a ``numpy.ndarray`` in, a ``numpy.ndarray`` out; ``jax.Array`` (tracers
  included) → ``jax.Array``; ``torch.Tensor`` → ``torch.Tensor``. It is bound to
  :class:`ArrayLike` (``shape``, ``dtype``, ``ndim``, indexing), so a list or a float
  where an array is required is a type error. It tracks the array *class*: NumPy's
  shape and dtype parameters of the first argument are carried over as they are, not
  computed.
- :data:`Reduction` — ``"none"``, ``"sum"`` or ``"mean"``; a typo is a type error. The
  other string options (box formats, assigners, tie rules, ...) are ``Literal`` types too.
- :data:`Number` (``float`` or a NumPy floating scalar such as ``np.float32(0.25)``) and
  :data:`Integer` (``int`` or a NumPy integer scalar).
- :class:`DenseDetectionLoss` — the dict returned by
  :func:`~focal_array.detection.dense_detection_loss`.
"""

from __future__ import annotations

import sys
from typing import (
    TYPE_CHECKING,
    Any,
    Generic,
    Literal,
    Protocol,
    TypeAlias,
    TypedDict,
    TypeVar,
)

import numpy as np

__all__ = [
    "ArrayLike",
    "ArrayT",
    "Assigner",
    "BoxCoding",
    "BoxFormat",
    "BoxLoss",
    "BoxWeighting",
    "ClassificationLoss",
    "DenseDetectionLoss",
    "Integer",
    "IouKind",
    "Normalization",
    "Number",
    "RcnnLoss",
    "Reduction",
    "TieRule",
]


class ArrayLike(Protocol):
    """What every supported array has: NumPy, JAX (and its tracers), PyTorch,
    ``array_api_strict``."""

    @property
    def shape(self) -> Any: ...

    @property
    def dtype(self) -> Any: ...

    @property
    def ndim(self) -> int: ...

    def __getitem__(self, key: Any, /) -> Any: ...


#: The caller's array type: the result of a function is of its first argument's library.
ArrayT = TypeVar("ArrayT", bound=ArrayLike)

#: ``reduction=`` of the losses.
Reduction: TypeAlias = Literal["none", "sum", "mean"]
#: ``tie_rule=`` of the matcher (:data:`~focal_array.matcher.TIE_RULES`).
TieRule: TypeAlias = Literal["equal", "rounding"]
#: Box formats of :func:`~focal_array.boxes.convert` (:data:`~focal_array.boxes.FORMATS`).
BoxFormat: TypeAlias = Literal["xyxy", "xywh", "cxcywh"]
#: ``iou=`` of the task-aligned assigner.
IouKind: TypeAlias = Literal["iou", "ciou"]
#: The string options of :func:`~focal_array.detection.dense_detection_loss` (the tuples
#: of the same names in :mod:`focal_array.detection` list them at runtime).
ClassificationLoss: TypeAlias = Literal["focal", "ce", "ce_hnm", "softmax_focal",
                                        "quality_focal", "varifocal"]
BoxLoss: TypeAlias = Literal["smooth_l1", "l1", "giou", "ciou"]
Normalization: TypeAlias = Literal["positives", "assigned", "image", "target_scores"]
Assigner: TypeAlias = Literal["max_iou", "fcos", "atss", "task_aligned"]
BoxCoding: TypeAlias = Literal["deltas", "ltrb"]
BoxWeighting: TypeAlias = Literal["uniform", "centerness", "target_scores"]
#: ``loss=`` of :func:`~focal_array.rcnn.rcnn_head_loss`.
RcnnLoss: TypeAlias = Literal["ce", "softmax_focal"]
#: A real number option (α, γ, thresholds): a Python float/int or a NumPy floating scalar.
Number: TypeAlias = float | np.floating[Any]
#: An integer option: a Python int or a NumPy integer scalar.
Integer: TypeAlias = int | np.integer[Any]


if sys.version_info < (3, 11) and not TYPE_CHECKING:  # pragma: no cover
    # Python 3.10 cannot make a TypedDict generic at runtime; checkers see the class below
    DenseDetectionLoss = dict
else:

    class _DenseDetectionLossRequired(TypedDict, Generic[ArrayT]):
        classification: ArrayT
        box_regression: ArrayT
        total: ArrayT
        num_positives: ArrayT

    class DenseDetectionLoss(_DenseDetectionLossRequired[ArrayT], total=False):
        """The result of :func:`~focal_array.detection.dense_detection_loss`: 0-d arrays of
        the logits' library. ``"centerness"`` is present only with ``centerness_logits``."""

        centerness: ArrayT
