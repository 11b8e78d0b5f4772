"""Reductions of the public losses: ``"none"``, ``"sum"``, ``"mean"`` with weights or an
explicit normalizer, and the executor's direct sum where no weight is given.
"""

from __future__ import annotations

import math
from typing import Any

from . import _validate as v
from ._executors import evaluate, evaluate_sum
from ._formulas import Formula
from ._namespace import constant

Array = Any


def _reduce(loss: Array, *, weights: Any, reduction: str, normalizer: Any,
            valid: Any, xp: Any, counts: Any = None) -> Array:
    """Apply weights, then reduce: "none", "sum" (Σ w·ℓ) or "mean".

    "mean" divides by ``max(normalizer, 1)`` when a normalizer is given, else by Σ w over
    counted elements (``valid``), else by the number of counted elements; ``counts``
    (per-element weights of the denominator only, e.g. ``w[label]`` of class weights)
    multiply what each counted element adds to it. A zero denominator gives 0 with a zero
    gradient (a NaN in the sum still shows).
    """
    w = None
    if weights is not None:
        w = xp.astype(weights, loss.dtype)
        loss = loss * w
    if reduction == "none":
        return loss
    total = xp.sum(loss)
    if reduction == "sum":
        return total
    return total * _mean_scale(xp, w=w, normalizer=normalizer, valid=valid,
                               loss_shape=tuple(loss.shape), like=total, counts=counts)


def _evaluate_reduced(formula: Formula, x: Array, aux: tuple, *, axis: int, weights: Any,
                      reduction: str, normalizer: Any, valid: Any, xp: Any,
                      counts: Any = None) -> Array:
    """The formula's loss, reduced as :func:`_reduce` does; without weights the executor
    takes the sum itself, so an eager backend never writes the full-size loss."""
    if weights is not None or reduction == "none":
        loss = evaluate(formula, x, *aux, xp=xp, axis=axis)
        return _reduce(loss, weights=weights, reduction=reduction, normalizer=normalizer,
                       valid=valid, xp=xp, counts=counts)
    total = evaluate_sum(formula, x, *aux, xp=xp, axis=axis)
    if reduction == "sum":
        return total
    return total * _mean_scale(xp, w=None, normalizer=normalizer, valid=valid,
                               loss_shape=formula.loss_shape(tuple(x.shape), axis),
                               like=total, counts=counts)


def _mean_scale(xp: Any, *, w: Any, normalizer: Any, valid: Any, loss_shape: tuple,
                like: Array, counts: Any = None) -> Array:
    """1 / the "mean" denominator, as a 0-d array; 0 when that denominator is 0.

    The denominator is ``max(normalizer, 1)`` when a normalizer is given, else Σ w over
    counted elements (``valid``), else the number of counted elements; with ``counts``,
    each counted element adds ``counts`` (times its weight) instead of 1. Shared by the
    losses' reduction and their analytic gradients (:mod:`focal_array.gradients`).
    """
    one = constant(xp, 1.0, like)
    if normalizer is not None:
        n = normalizer
        if not v.is_array(n):
            # not float(n): under torch.compile a changing number is symbolic
            n = constant(xp, n, like)
        return one / xp.maximum(xp.astype(n, like.dtype), one)
    if counts is not None:
        counted = xp.astype(counts, like.dtype)
        if w is not None:
            counted = xp.broadcast_to(w, loss_shape) * counted
        if valid is not None:
            counted = xp.where(valid, counted, constant(xp, 0.0, like))
        denom = xp.sum(counted)
    elif w is not None:
        counted = xp.broadcast_to(w, loss_shape)
        if valid is not None:
            counted = xp.where(valid, counted, constant(xp, 0.0, like))
        denom = xp.sum(counted)
    elif valid is not None:
        denom = xp.sum(xp.astype(valid, like.dtype))
    else:
        denom = constant(xp, float(math.prod(loss_shape)), like)
    # double where: an empty count gives 0 (and a zero gradient), never 0/0
    positive = denom > constant(xp, 0.0, like)
    return xp.where(positive, one / xp.where(positive, denom, one), constant(xp, 0.0, like))
