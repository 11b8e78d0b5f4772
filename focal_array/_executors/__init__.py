"""Run any formula of :mod:`focal_array._formulas` fast on the caller's backend.

One executor per backend, each able to run every formula (nothing here knows a loss):

- NumPy (:mod:`._numpy`): the formula evaluated block by block (:mod:`._blocked`), so its
  temporaries are cache-sized and reused instead of a dozen full-size arrays per call.
- JAX (:mod:`._jax`): the formula behind a ``jax.custom_jvp`` whose tangent is the
  formula's analytic derivative, so ``grad`` under ``jit`` is one fused pass and XLA's
  plan holds the gradient, not autodiff's intermediates; ``vmap``, ``jvp`` and
  higher-order derivatives keep working.
- PyTorch (:mod:`._torch`): eager, a ``torch.autograd.Function`` whose forward evaluates
  value and derivative block by block and whose backward is one product with the saved
  derivative; under ``torch.compile`` the formula is traced whole and Inductor fuses it.
- Any other namespace (array_api_strict, …): the formula on whole arrays.

:data:`ENABLED` set to False runs the formula on whole arrays everywhere (the tests
compare both routes). Accuracy is the formula's own on every route: the executors only
decide where and how much of it is evaluated at a time.
"""

from __future__ import annotations

import contextlib
from typing import Any

from .._formulas import Formula
from .._namespace import is_jax, is_numpy, is_strict, is_torch

__all__ = ["ENABLED", "evaluate", "evaluate_sum", "evaluate_with_grad"]

#: Set to False to evaluate every formula on whole arrays, on every backend.
ENABLED = True

Array = Any


def _executor(xp: Any) -> Any:
    if not ENABLED:
        return None
    if is_numpy(xp):
        from . import _numpy

        return _numpy
    if is_jax(xp):
        from . import _jax

        return _jax
    if is_torch(xp):
        from . import _torch

        return _torch
    return None


def _quiet(xp: Any) -> Any:
    """NumPy's floating-point warnings silenced for array_api_strict (NumPy underneath),
    as the NumPy executor does: the formulas make their special values on purpose (an
    exponential underflowing to 0, ``inf − inf`` in an error term a ``where`` discards,
    at a −inf logit or a margin past the largest number); a NaN input still propagates."""
    if not is_strict(xp):
        return contextlib.nullcontext()
    import numpy as np

    return np.errstate(all="ignore")


def evaluate(formula: Formula, x: Array, *aux: Array, xp: Any, axis: int = -1) -> Array:
    """The formula's loss, differentiable by the backend's autodiff.

    Args:
        formula: any :class:`~focal_array._formulas.Formula`.
        x: logits (or probabilities) in the compute dtype (float32/float64).
        aux: the formula's auxiliary arrays (targets, labels, per-class vectors).
        xp: the caller's namespace.
        axis: the class axis, for row-wise formulas.

    Returns:
        The loss: ``x``'s shape (elementwise) or ``x``'s shape without ``axis`` (row-wise).
    """
    ex = _executor(xp)
    if ex is None:
        with _quiet(xp):
            return formula.value(x, *aux, xp=xp, axis=axis)
    return ex.evaluate(formula, x, aux, axis=axis, xp=xp)


def evaluate_sum(formula: Formula, x: Array, *aux: Array, xp: Any, axis: int = -1) -> Array:
    """``sum(evaluate(...))`` as a 0-d array, differentiable; eager executors never write
    the full-size loss for it."""
    ex = _executor(xp)
    if ex is None:
        with _quiet(xp):
            return xp.sum(formula.value(x, *aux, xp=xp, axis=axis))
    return ex.evaluate_sum(formula, x, aux, axis=axis, xp=xp)


def evaluate_with_grad(formula: Formula, x: Array, *aux: Array, xp: Any, axis: int = -1
                       ) -> tuple[Array, Array]:
    """(loss, d sum(loss) / dx): the formula's loss and analytic derivative, x's shape."""
    if not formula.has_grad:
        raise NotImplementedError(f"{type(formula).__name__} has no analytic derivative")
    ex = _executor(xp)
    if ex is None:
        with _quiet(xp):
            return formula.value_and_grad(x, *aux, xp=xp, axis=axis)
    return ex.evaluate_with_grad(formula, x, aux, axis=axis, xp=xp)
