"""The base class of the formulas (see :mod:`focal_array._formulas`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = ["Formula"]

Array = Any


@dataclass(frozen=True)
class Formula:
    """Base class of the formulas: a loss's value and analytic derivative.

    Subclasses set :attr:`rowwise` and :attr:`aux_kinds` and implement :meth:`terms`;
    a formula without a derived derivative sets :attr:`has_grad` to False, and the
    executors then leave differentiation to the backend's autodiff of :meth:`value`.
    """

    #: True when the loss reduces over a class axis (softmax); False for elementwise.
    rowwise: ClassVar[bool] = False
    #: True when :meth:`value_and_grad` gives the analytic derivative.
    has_grad: ClassVar[bool] = True

    @property
    def aux_kinds(self) -> tuple[str, ...]:
        """One entry per auxiliary array: ``"row"`` (the logits' shape, or the row shape for
        a row-wise formula: cut into blocks with the logits), ``"element"`` (the logits'
        own shape in a row-wise formula, e.g. probability targets: cut with the logits) or
        ``"class"`` (a ``(C,)`` per-class vector, passed whole)."""
        return ("row",)

    def terms(self, *args: Any, **kwargs: Any) -> tuple[Array, Array | None]:
        """(loss, d sum(loss) / dx or None); ``axis`` is the class axis (row-wise only).

        Called as ``terms(x, *aux, xp=xp, axis=axis, with_grad=with_grad)``; each subclass
        names its own auxiliary arrays (hence the open signature here)."""
        raise NotImplementedError

    def loss_shape(self, shape: tuple[int, ...], axis: int = -1) -> tuple[int, ...]:
        """The loss's shape for logits of ``shape`` (without the class axis if row-wise)."""
        if not self.rowwise:
            return tuple(shape)
        return tuple(s for i, s in enumerate(shape) if i != axis % len(shape))

    def specialize(self, *aux: Any, **kwargs: Any) -> Formula:
        """An equivalent formula that is cheaper for these auxiliary values, or ``self``.

        Called as ``specialize(*aux, xp=xp)``.

        Only eager executors call it, on concrete blocks (it may read data); the result
        must give the same numbers to rounding.
        """
        return self

    def value(self, x: Array, *aux: Array, xp: Any, axis: int = -1) -> Array:
        """The loss, differentiable by the backend's autodiff."""
        return self.terms(x, *aux, xp=xp, axis=axis, with_grad=False)[0]

    def value_and_grad(self, x: Array, *aux: Array, xp: Any, axis: int = -1
                       ) -> tuple[Array, Array]:
        """The loss and its analytic derivative with respect to ``x``."""
        if not self.has_grad:
            raise NotImplementedError(f"{type(self).__name__} has no analytic derivative")
        loss, grad = self.terms(x, *aux, xp=xp, axis=axis, with_grad=True)
        return loss, grad
