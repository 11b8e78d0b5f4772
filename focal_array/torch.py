"""PyTorch losses over focal_array's functions, as ``torch.nn.Module`` objects.

``SigmoidFocalLoss``, ``BinaryCrossEntropy``, ``SoftmaxFocalLoss`` and
``SoftmaxCrossEntropy`` are :class:`torch.nn.Module` subclasses in the habits of
:class:`torch.nn.CrossEntropyLoss` and :class:`torch.nn.BCEWithLogitsLoss`: options in the
constructor (checked there, each error naming its argument), ``forward(input, target,
weight=None, *, normalizer=None)``, ``reduction="mean"`` by default, the softmax modules'
class axis 1 (``(N, C)`` and ``(N, C, d1, ...)`` inputs), a per-class ``weight`` tensor and
``ignore_index=-100``. The loss itself is computed by :func:`focal_array.sigmoid_focal_loss`
and the other functions, so values, gradients and numerics are the library's: stable in
log space for every logit, gradients finite for every γ ≥ 0.

- ``forward``'s ``weight`` is a per-element weight (the functions' ``weights=``),
  broadcast against the loss: ``input``'s shape for the sigmoid losses, ``target``'s
  (the input without its class axis) for the softmax ones.
- ``reduction``: ``"mean"`` (the default, as in torch; the functions default to
  ``"none"``), ``"sum"`` or ``"none"``. ``"mean"`` is the functions' mean: Σ w·ℓ / Σ w
  with weights, over the examples that are not ignored; ``normalizer`` (a number or a 0-d
  tensor, e.g. the number of positive anchors) makes it Σ w·ℓ / max(normalizer, 1).
- The softmax modules' ``weight`` (constructor) is torch's per-class weight, kept as a
  buffer (``.to()``, ``.double()`` and ``state_dict()`` carry it) and handed to the
  functions as ``class_weights=``; ``"mean"`` is then Σ w[t]·ℓ / Σ w[t], as in
  :func:`torch.nn.functional.cross_entropy`. Integer targets equal to ``ignore_index``, and
  negative targets whatever ``ignore_index`` is, are ignored; floating targets of the
  input's shape are class probabilities (``ignore_index`` does not apply to them).

Importing :mod:`focal_array` does not import this module, nor torch; ``import
focal_array.torch`` does.

Examples:
    >>> import torch
    >>> from focal_array.torch import SoftmaxCrossEntropy
    >>> loss = SoftmaxCrossEntropy(from_logits=False)
    >>> probs = torch.tensor([[0.1, 0.9], [0.8, 0.2]])  # [P(background), P(person)]
    >>> round(loss(probs, torch.tensor([1, 0])).item(), 4)  # (0.1054 + 0.2231) / 2
    0.1643
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from . import _validate as v
from . import losses as _losses
from ._loss_checks import _check_options
from ._typing import Number, Reduction

__all__ = ["BinaryCrossEntropy", "SigmoidFocalLoss", "SoftmaxCrossEntropy", "SoftmaxFocalLoss"]

#: What ``alpha`` of the softmax modules may be: None, one number, or one per class.
_Alpha = Number | Sequence[Number] | Tensor | None


# --------------------------------------------------------------------------- option checks


def _scalar_alpha(alpha: Any) -> float | None:
    if alpha is None:
        return None
    if not v.is_number(alpha):
        raise TypeError(f"alpha must be None or a number in [0, 1], got {alpha!r}")
    return v.check_number("alpha", alpha, low=0.0, high=1.0)


def _class_alpha(alpha: Any) -> float | tuple[float, ...] | None:
    """``alpha`` of the softmax modules: None, a float, or one float per class (a sequence,
    or a 1-d tensor read once here), each in [0, 1]."""
    if alpha is None or v.is_number(alpha):
        return _scalar_alpha(alpha)
    if isinstance(alpha, Tensor):
        if alpha.ndim != 1:
            raise ValueError(f"alpha as a tensor must be a per-class vector of shape (C,), "
                             f"got shape {tuple(alpha.shape)}")
        alpha = alpha.tolist()
    if isinstance(alpha, str) or not isinstance(alpha, Sequence):
        raise TypeError(f"alpha must be None, a number in [0, 1] or a sequence of numbers "
                        f"in [0, 1] (one per class), got {alpha!r}")
    return tuple(v.check_number(f"alpha[{i}]", a, low=0.0, high=1.0)
                 for i, a in enumerate(alpha))


def _class_weight(weight: Any) -> Tensor | None:
    """torch's per-class ``weight``: None, or a 1-d floating tensor (a sequence of numbers
    becomes one in torch's default dtype) of finite values >= 0."""
    if weight is None:
        return None
    if not isinstance(weight, Tensor):
        if isinstance(weight, str) or not isinstance(weight, Sequence):
            raise TypeError(f"weight must be None or a 1-d tensor of per-class weights, "
                            f"got {weight!r}")
        values = [v.check_number(f"weight[{i}]", w, low=0.0) for i, w in enumerate(weight)]
        weight = torch.tensor(values, dtype=torch.get_default_dtype())
    if not torch.is_floating_point(weight):
        raise TypeError(f"weight must be a floating tensor of per-class weights, got "
                        f"dtype {weight.dtype}")
    if weight.ndim != 1 or weight.shape[0] == 0:
        raise ValueError(f"weight must be a 1-d tensor of per-class weights, shape (C,), got "
                         f"shape {tuple(weight.shape)}")
    if not bool(torch.all(torch.isfinite(weight) & (weight >= 0))):
        raise ValueError(f"weight (per-class) must hold finite values >= 0, got "
                         f"{weight.tolist()}")
    return weight


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the functions compute a floating ``dtype`` in: float32 for half precision."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


# --------------------------------------------------------------------------- sigmoid


class _SigmoidLoss(nn.Module):
    """Options shared by the two sigmoid modules."""

    def __init__(self, *, alpha: Number | None, gamma: Number, reduction: Reduction,
                 from_logits: bool, label_smoothing: Number) -> None:
        super().__init__()
        gamma, label_smoothing = _check_options(
            gamma=gamma, label_smoothing=label_smoothing, reduction=reduction)
        self.alpha: float | None = _scalar_alpha(alpha)
        self.gamma: float = gamma
        self.reduction: Reduction = reduction
        self.from_logits: bool = v.check_bool("from_logits", from_logits)
        self.label_smoothing: float = label_smoothing

    def extra_repr(self) -> str:
        return (f"alpha={self.alpha}, gamma={self.gamma}, reduction={self.reduction!r}, "
                f"from_logits={self.from_logits}, label_smoothing={self.label_smoothing}")


class SigmoidFocalLoss(_SigmoidLoss):
    r"""Sigmoid focal loss (:func:`focal_array.sigmoid_focal_loss`) as a module.

    Elementwise :math:`\alpha_t (1 - p_t)^\gamma\,\mathrm{BCE}(x, y)` with :math:`p = \sigma(x)`,
    :math:`p_t = p y + (1 - p)(1 - y)` and :math:`\alpha_t = \alpha y + (1 - \alpha)(1 - y)`,
    then ``reduction``. With ``reduction="none"`` equal to torchvision's
    ``sigmoid_focal_loss(input, target, alpha, gamma)`` (``alpha=None`` for its
    ``alpha=-1``), except that its gradient is finite for γ < 1 too.

    Args:
        alpha: weight of the positive term in [0, 1] (``1 − alpha`` for negatives), or
            None for no balancing.
        gamma: focusing parameter, ``>= 0``.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (see the module's
            description).
        from_logits: ``True`` (default) when ``input`` holds logits; ``False`` for
            probabilities P(class).
        label_smoothing: ε in [0, 1); targets become ``y (1 − ε) + ε / 2``.

    Examples:
        >>> import torch
        >>> loss = SigmoidFocalLoss(from_logits=False, reduction="none")
        >>> p = torch.tensor([0.9, 0.2], dtype=torch.float64)  # P(person): +, − anchor
        >>> loss(p, torch.tensor([1.0, 0.0], dtype=torch.float64)).numpy().round(7)
        array([0.0002634, 0.0066943])
    """

    def __init__(self, *, alpha: Number | None = 0.25, gamma: Number = 2.0,
                 reduction: Reduction = "mean", from_logits: bool = True,
                 label_smoothing: Number = 0.0) -> None:
        super().__init__(alpha=alpha, gamma=gamma, reduction=reduction,
                         from_logits=from_logits, label_smoothing=label_smoothing)

    def forward(self, input: Tensor, target: Tensor, weight: Tensor | None = None, *,
                normalizer: Tensor | Number | None = None) -> Tensor:
        """The loss of ``input`` (logits, any shape) against ``target`` (same shape, 0/1 or
        soft targets in [0, 1]); ``weight`` broadcasts to ``input``'s shape; ``normalizer``
        as in :func:`focal_array.sigmoid_focal_loss` (``reduction="mean"`` only)."""
        return _losses.sigmoid_focal_loss(
            input, target, alpha=self.alpha, gamma=self.gamma, weights=weight,
            reduction=self.reduction, normalizer=normalizer, from_logits=self.from_logits,
            label_smoothing=self.label_smoothing)


class BinaryCrossEntropy(_SigmoidLoss):
    r"""Sigmoid binary cross-entropy (:func:`focal_array.binary_cross_entropy`) as a module.

    Equal to ``nn.BCEWithLogitsLoss(reduction=...)`` for ``alpha=None`` and no ``weight``;
    ``nn.BCEWithLogitsLoss(pos_weight=p)`` is ``(1 + p) * BinaryCrossEntropy(alpha=p / (1 +
    p))``. With ``reduction="mean"`` and a ``weight``, torch divides Σ w·ℓ by the number of
    elements, this module by Σ w: pass ``normalizer=input.numel()`` for torch's number.

    Args:
        alpha: None (default, no balancing) or the positive weight in [0, 1].
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        from_logits: ``True`` (default) for logits, ``False`` for probabilities.
        label_smoothing: ε in [0, 1); targets become ``y (1 − ε) + ε / 2``.

    Examples:
        >>> import torch
        >>> loss = BinaryCrossEntropy(from_logits=False)
        >>> round(loss(torch.tensor([0.9, 0.2]), torch.tensor([1.0, 0.0])).item(), 4)
        0.1643
    """

    def __init__(self, *, alpha: Number | None = None, reduction: Reduction = "mean",
                 from_logits: bool = True, label_smoothing: Number = 0.0) -> None:
        super().__init__(alpha=alpha, gamma=0.0, reduction=reduction,
                         from_logits=from_logits, label_smoothing=label_smoothing)

    def extra_repr(self) -> str:
        return (f"alpha={self.alpha}, reduction={self.reduction!r}, "
                f"from_logits={self.from_logits}, label_smoothing={self.label_smoothing}")

    def forward(self, input: Tensor, target: Tensor, weight: Tensor | None = None, *,
                normalizer: Tensor | Number | None = None) -> Tensor:
        """As :meth:`SigmoidFocalLoss.forward`."""
        return _losses.binary_cross_entropy(
            input, target, alpha=self.alpha, weights=weight, reduction=self.reduction,
            normalizer=normalizer, from_logits=self.from_logits,
            label_smoothing=self.label_smoothing)


# --------------------------------------------------------------------------- softmax


class _SoftmaxLoss(nn.Module):
    """Options, the class-weight buffer and the call shared by the two softmax modules."""

    weight: Tensor | None

    def __init__(self, *, weight: Tensor | Sequence[Number] | None, alpha: _Alpha,
                 gamma: Number, ignore_index: int | None, reduction: Reduction,
                 label_smoothing: Number, from_logits: bool, axis: int) -> None:
        super().__init__()
        gamma, label_smoothing = _check_options(
            gamma=gamma, label_smoothing=label_smoothing, reduction=reduction)
        # a buffer, as torch's _WeightedLoss keeps it: moved and cast with the module, saved
        # in its state_dict (None is registered too, and left out of the state_dict)
        self.register_buffer("weight", _class_weight(weight))
        self.alpha: float | tuple[float, ...] | None = _class_alpha(alpha)
        self.gamma: float = gamma
        self.ignore_index: int | None = v.check_int(
            "ignore_index", ignore_index, optional=True, what="a label value to ignore")
        self.reduction: Reduction = reduction
        self.label_smoothing: float = label_smoothing
        self.from_logits: bool = v.check_bool("from_logits", from_logits)
        self.axis: int = v.check_int("axis", axis, what="the class axis")

    def extra_repr(self) -> str:
        return (f"alpha={self.alpha}, gamma={self.gamma}, ignore_index={self.ignore_index}, "
                f"reduction={self.reduction!r}, label_smoothing={self.label_smoothing}, "
                f"from_logits={self.from_logits}, axis={self.axis}")

    def _options(self, input: Tensor, target: Tensor) -> dict[str, Any]:
        """The functions' keyword arguments for this call: the class axis (0 for an
        unbatched ``(C,)`` input, as in torch), the class weights in the input's compute
        dtype, and ``ignore_index`` for integer targets (torch applies it to no other)."""
        axis = 0 if input.ndim == 1 and self.axis == 1 else self.axis
        weight = self.weight
        if weight is not None and torch.is_floating_point(input):
            weight = weight.to(dtype=_compute_dtype(input.dtype))
        return {"alpha": self.alpha, "axis": axis, "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing, "class_weights": weight,
                "ignore_index": None if torch.is_floating_point(target)
                else self.ignore_index}


class SoftmaxFocalLoss(_SoftmaxLoss):
    r"""Softmax focal loss (:func:`focal_array.softmax_focal_loss`) as a module.

    Per example :math:`-\alpha_t (1 - p_t)^\gamma \log p_t` over the softmax along ``axis``
    (1 by default: ``input`` is ``(N, C)`` or ``(N, C, d1, ...)``, ``target`` ``(N,)`` or
    ``(N, d1, ...)``, as for ``nn.CrossEntropyLoss``), then ``reduction``. ``gamma=0`` is
    :class:`SoftmaxCrossEntropy`.

    Args:
        weight: per-class weights, a ``(C,)`` floating tensor (or sequence) of values ≥ 0,
            as ``nn.CrossEntropyLoss``'s ``weight``: kept as the buffer ``weight``.
        alpha: None (default, no balancing), a number in [0, 1] (α for classes ≥ 1, 1 − α
            for the background class 0), or C values in [0, 1], one per class.
        gamma: focusing parameter, ``>= 0``.
        ignore_index: integer targets equal to it are ignored (loss 0, not counted by
            ``"mean"``); negative targets always are. Default −100, torch's. None for none.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        label_smoothing: ε in [0, 1): the target is ``(1 − ε) one_hot + ε / C``.
        from_logits: ``True`` (default) for logits, ``False`` for a probability vector
            along ``axis``.
        axis: the class axis of ``input`` (an unbatched ``(C,)`` input has it at 0).

    Examples:
        >>> import torch
        >>> loss = SoftmaxFocalLoss(alpha=0.25, from_logits=False, reduction="none")
        >>> probs = torch.tensor([[0.1, 0.9], [0.8, 0.2]], dtype=torch.float64)
        >>> loss(probs, torch.tensor([1, 0])).numpy().round(7)
        array([0.0002634, 0.0066943])
    """

    def __init__(self, *, weight: Tensor | Sequence[Number] | None = None,
                 alpha: _Alpha = None, gamma: Number = 2.0, ignore_index: int | None = -100,
                 reduction: Reduction = "mean", label_smoothing: Number = 0.0,
                 from_logits: bool = True, axis: int = 1) -> None:
        super().__init__(weight=weight, alpha=alpha, gamma=gamma, ignore_index=ignore_index,
                         reduction=reduction, label_smoothing=label_smoothing,
                         from_logits=from_logits, axis=axis)

    def forward(self, input: Tensor, target: Tensor, weight: Tensor | None = None, *,
                normalizer: Tensor | Number | None = None) -> Tensor:
        """The loss of ``input`` (classes along ``axis``) against ``target``: integer class
        indices of ``input``'s shape without ``axis``, or class probabilities of ``input``'s
        shape. ``weight`` broadcasts to the per-example loss (``input``'s shape without
        ``axis``); ``normalizer`` as in :func:`focal_array.softmax_focal_loss`."""
        return _losses.softmax_focal_loss(
            input, target, gamma=self.gamma, weights=weight, reduction=self.reduction,
            normalizer=normalizer, **self._options(input, target))


class SoftmaxCrossEntropy(_SoftmaxLoss):
    r"""Softmax cross-entropy (:func:`focal_array.softmax_cross_entropy`) as a module.

    Per example :math:`-\alpha_t \log p_t`. Equal to ``nn.CrossEntropyLoss(weight=weight,
    ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing)`` with
    ``alpha=None``, for integer targets and class probabilities alike; negative targets
    other than ``ignore_index`` are ignored here, an error there.

    Args:
        weight: per-class weights (see :class:`SoftmaxFocalLoss`); the only argument that
            may be given by position, as for ``nn.CrossEntropyLoss``.
        alpha: as in :class:`SoftmaxFocalLoss` (None by default).
        ignore_index: as in :class:`SoftmaxFocalLoss` (−100 by default).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        label_smoothing: ε in [0, 1).
        from_logits: ``True`` (default) for logits, ``False`` for probabilities.
        axis: the class axis of ``input``, 1 by default.

    Examples:
        >>> import torch
        >>> loss = SoftmaxCrossEntropy()
        >>> logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 1.0, 3.0]])
        >>> target = torch.tensor([0, -100])  # the second example is ignored
        >>> round(loss(logits, target).item(), 4)
        0.2413
    """

    def __init__(self, weight: Tensor | Sequence[Number] | None = None, *,
                 alpha: _Alpha = None, ignore_index: int | None = -100,
                 reduction: Reduction = "mean", label_smoothing: Number = 0.0,
                 from_logits: bool = True, axis: int = 1) -> None:
        super().__init__(weight=weight, alpha=alpha, gamma=0.0, ignore_index=ignore_index,
                         reduction=reduction, label_smoothing=label_smoothing,
                         from_logits=from_logits, axis=axis)

    def extra_repr(self) -> str:
        return (f"alpha={self.alpha}, ignore_index={self.ignore_index}, "
                f"reduction={self.reduction!r}, label_smoothing={self.label_smoothing}, "
                f"from_logits={self.from_logits}, axis={self.axis}")

    def forward(self, input: Tensor, target: Tensor, weight: Tensor | None = None, *,
                normalizer: Tensor | Number | None = None) -> Tensor:
        """As :meth:`SoftmaxFocalLoss.forward`."""
        return _losses.softmax_cross_entropy(
            input, target, weights=weight, reduction=self.reduction, normalizer=normalizer,
            **self._options(input, target))
