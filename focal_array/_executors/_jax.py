"""The JAX executor: any formula behind a ``jax.custom_jvp`` with its analytic derivative.

Without it, ``jax.grad`` of a formula differentiates every ``where``, ``exp`` and ``log``
of it, keeps their intermediates alive for the backward pass and reads them back: XLA's
plan for ``value_and_grad`` then holds several arrays of the logits' size. With the
formula's own derivative as the tangent rule, the gradient is one more elementwise pass
over ``x`` (fused with whatever consumes it) and the plan holds the gradient only.

The tangent's inputs go through an optimization barrier (:func:`_apart`): shared between
the loss's reduction and the gradient, XLA:CPU would otherwise materialize common
intermediates at full size between the two loops. The rule is written with
differentiable ``jnp`` operations, so ``jit``, ``vmap``, ``jvp``/``jacfwd`` and
higher-order ``grad`` work (the second derivative is autodiff of the first's formula). A
tangent on a floating auxiliary input (soft targets that are themselves differentiated,
e.g. a teacher's probabilities) is pushed through the formula's value by autodiff, so no
derivative is dropped. Formulas without an analytic derivative are left to autodiff.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

from .._formulas import Formula
from .._namespace import constants_scaled_by

__all__ = ["evaluate", "evaluate_sum", "evaluate_with_grad"]

Array = Any


def _apart(arrays: tuple) -> tuple[tuple, Array]:
    """Copies of ``arrays`` and an opaque 1, behind an optimization barrier.

    The derivative is traced from these with every formula constant scaled by the opaque
    1 (:func:`focal_array._namespace.constants_scaled_by`): XLA then keeps the loss's and
    the derivative's constants apart instead of materializing shared broadcasts.
    """
    # two barriers: forward-mode autodiff of one barrier holding both the inputs and the
    # unit (jax 0.10, a Hessian by jacfwd over jacrev) gives NaN
    copies = jax.lax.optimization_barrier(tuple(arrays))
    return tuple(copies), jax.lax.optimization_barrier(jnp.ones((), arrays[0].dtype))


def _as_float(x: Array, aux: tuple) -> tuple:
    """Boolean auxiliary arrays (0/1 target masks) as one float copy, behind a barrier:
    XLA rewrites float(mask)·constant into selects, which its fused CPU reductions do
    not take (it would materialize several full-size arrays instead)."""
    if not any(a.dtype == jnp.bool_ for a in aux):
        return aux
    return tuple(jax.lax.optimization_barrier(a.astype(x.dtype)) if a.dtype == jnp.bool_
                 else a for a in aux)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1))
def _loss(formula: Formula, axis: int, x: Array, *aux: Array) -> Array:
    return formula.value(x, *aux, xp=jnp, axis=axis)


def _loss_jvp(formula: Formula, axis: int, primals: tuple, tangents: tuple
              ) -> tuple[Array, Array]:
    x, *aux = primals
    x_dot, *aux_dot = tangents
    loss = _loss(formula, axis, x, *aux)  # its own rule again, should this one be differentiated
    if type(x_dot) is SymbolicZero:
        out = jnp.zeros_like(loss)
    else:
        (xb, *auxb), unit = _apart((x, *aux))
        with constants_scaled_by(unit):
            grad = formula.value_and_grad(xb, *auxb, xp=jnp, axis=axis)[1]
        out = grad * x_dot
        if formula.rowwise:
            out = jnp.sum(out, axis=axis)
    for i, t in enumerate(aux_dot):
        if type(t) is SymbolicZero or not jnp.issubdtype(aux[i].dtype, jnp.inexact):
            continue

        def along(a: Array, i: int = i) -> Array:
            args = list(aux)
            args[i] = a
            return formula.value(x, *args, xp=jnp, axis=axis)

        out = out + jax.jvp(along, (aux[i],), (t,))[1]
    return loss, out


_loss.defjvp(_loss_jvp, symbolic_zeros=True)


def evaluate(formula: Formula, x: Array, aux: tuple, *, axis: int, xp: Any) -> Array:
    """The loss, differentiable: the analytic derivative as its tangent where it has one."""
    if not formula.has_grad:
        return formula.value(x, *aux, xp=jnp, axis=axis)
    return _loss(formula, axis, x, *_as_float(x, aux))


def evaluate_sum(formula: Formula, x: Array, aux: tuple, *, axis: int, xp: Any) -> Array:
    """The loss's sum; XLA fuses the reduction into the loss's loop."""
    return jnp.sum(evaluate(formula, x, aux, axis=axis, xp=xp))


def evaluate_with_grad(formula: Formula, x: Array, aux: tuple, *, axis: int, xp: Any
                       ) -> tuple[Array, Array]:
    """(loss, analytic derivative), both differentiable by JAX's autodiff."""
    return formula.value_and_grad(x, *aux, xp=jnp, axis=axis)
