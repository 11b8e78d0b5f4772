"""The NumPy executor: any formula, block by block (:mod:`focal_array._executors._blocked`).

Floating-point warnings are silenced inside: the formulas produce their special values on
purpose (``exp(−|x|)`` underflowing to 0 at |x| ≳ 88 in float32, ``inf − inf`` in an
error term that a ``where`` then discards); a NaN in the input still propagates.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._formulas import Formula
from . import _blocked

__all__ = ["evaluate", "evaluate_sum", "evaluate_with_grad"]

Array = Any


def _run(formula: Formula, x: Array, aux: tuple, *, axis: int, xp: Any, with_grad: bool,
         summed: bool = False) -> tuple[Array, Array | None]:
    with np.errstate(all="ignore"):
        return _blocked.run(formula, x, aux, xp=xp, axis=axis, with_grad=with_grad,
                            summed=summed)


def evaluate(formula: Formula, x: Array, aux: tuple, *, axis: int, xp: Any) -> Array:
    """The loss (NumPy has no autodiff: the derivative comes from evaluate_with_grad)."""
    return _run(formula, x, aux, axis=axis, xp=xp, with_grad=False)[0]


def evaluate_sum(formula: Formula, x: Array, aux: tuple, *, axis: int, xp: Any) -> Array:
    """The loss's sum, block by block: no full-size loss is written."""
    return _run(formula, x, aux, axis=axis, xp=xp, with_grad=False, summed=True)[0]


def evaluate_with_grad(formula: Formula, x: Array, aux: tuple, *, axis: int, xp: Any
                       ) -> tuple[Array, Array]:
    """(loss, analytic derivative), block by block."""
    loss, grad = _run(formula, x, aux, axis=axis, xp=xp, with_grad=True)
    return loss, grad
