"""The PyTorch executor: any formula, eager block by block, compiled whole.

Eager. With a gradient to compute, the loss is a :class:`torch.autograd.Function` whose
forward evaluates the formula's value and analytic derivative together, block by block
(:mod:`focal_array._executors._blocked`: cache-sized temporaries instead of a dozen
full-size tensors, each a fresh allocation page-faulted in on an eager CPU), saves the
derivative, and whose backward is one product with it. Without a gradient, only the value
is evaluated. On a GPU the whole tensor is one block: kernels are launched, not cached.

Compiled. Under ``torch.compile`` the same Function traces the formula on whole tensors
(forward: the value; backward: the derivative recomputed from the saved inputs, cheaper
than storing it) and Inductor fuses each into a kernel.

Higher-order derivatives: the saved derivative is a constant. A backward run with
``create_graph=True`` (grad mode on inside it) recomputes the derivative from the saved
inputs with the formula's differentiable operations, so autograd differentiates it again.
Where the Function does not apply — a floating auxiliary input that requires grad (soft
targets being differentiated), functorch transforms, a formula without an analytic
derivative — the formula runs on whole tensors under autograd.
"""

from __future__ import annotations

from typing import Any

import torch

from .._formulas import Formula
from .._namespace import is_tracing
from . import _blocked

__all__ = ["evaluate", "evaluate_sum", "evaluate_with_grad"]

Array = Any


def _xp() -> Any:
    import array_api_compat.torch as xp

    return xp


#: Elements per block on a CPU. Larger than NumPy's: PyTorch splits an elementwise kernel
#: across its threads only above 32,768 elements (its grain size) and pays ~5-10 µs of
#: dispatch per operation. Measured at 10,000-200,000 × 80 (2 cores): 262,144 float32
#: (1 MiB per temporary, in L2/L3) beat 65,536 by 0-30% and whole tensors by 2-5×.
CPU_BLOCK = 262144


def _block(x: torch.Tensor) -> int:
    """Elements per block: cache-sized on a CPU, the whole tensor elsewhere."""
    return CPU_BLOCK if x.device.type == "cpu" else max(1, x.numel())


def _blocked_terms(formula: Formula, x: torch.Tensor, aux: tuple, axis: int,
                   with_grad: bool, summed: bool = False
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
    cpu = x.device.type == "cpu"
    with torch.no_grad():
        return _blocked.run(formula, x, aux, xp=_xp(), axis=axis, with_grad=with_grad,
                            block=_block(x), summed=summed, specialize=cpu)


class _Apply(torch.autograd.Function):
    """loss(x; aux) — or its sum, with ``summed`` — with the formula's analytic derivative
    as its backward (aux gets none)."""

    @staticmethod
    def forward(ctx: Any, formula: Formula, axis: int, summed: bool, x: torch.Tensor,
                *aux: torch.Tensor) -> torch.Tensor:
        ctx.formula, ctx.axis, ctx.summed, ctx.n_aux = formula, axis, summed, len(aux)
        if torch.compiler.is_compiling():
            ctx.save_for_backward(x, *aux)
            loss = formula.value(x, *aux, xp=_xp(), axis=axis)
            return loss.sum() if summed else loss
        loss, grad = _blocked_terms(formula, x, aux, axis, with_grad=True, summed=summed)
        ctx.save_for_backward(x, *aux, grad)
        return loss

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor) -> tuple:  # pyright: ignore[reportIncompatibleMethodOverride]
        x, *rest = ctx.saved_tensors
        aux, saved = rest[:ctx.n_aux], rest[ctx.n_aux:]
        if saved and not torch.is_grad_enabled():
            grad = saved[0]
        else:
            # create_graph=True (or a compiled graph): the derivative from differentiable
            # operations on the saved inputs, so that autograd can differentiate it again
            grad = ctx.formula.value_and_grad(x, *aux, xp=_xp(), axis=ctx.axis)[1]
        if ctx.formula.rowwise and not ctx.summed:
            grad_loss = grad_loss.unsqueeze(ctx.axis)
        return (None, None, None, grad_loss * grad, *([None] * ctx.n_aux))


def _autograd_needed(x: torch.Tensor, aux: tuple) -> tuple[bool, bool]:
    """(x needs a gradient, some floating aux needs one too)."""
    if not torch.is_grad_enabled():
        return False, False
    return x.requires_grad, any(a.requires_grad for a in aux)


def _evaluate(formula: Formula, x: torch.Tensor, aux: tuple, axis: int, xp: Any,
              summed: bool) -> torch.Tensor:
    compiling = torch.compiler.is_compiling()
    x_grad, aux_grad = _autograd_needed(x, aux)
    if aux_grad or (not compiling and is_tracing(x, *aux)) or \
            (x_grad and not formula.has_grad) or (compiling and not x_grad):
        loss = formula.value(x, *aux, xp=xp, axis=axis)
        return loss.sum() if summed else loss
    if x_grad:
        return _Apply.apply(formula, axis, summed, x, *aux)
    return _blocked_terms(formula, x, aux, axis, with_grad=False, summed=summed)[0]


def evaluate(formula: Formula, x: torch.Tensor, aux: tuple, *, axis: int, xp: Any
             ) -> torch.Tensor:
    """The loss, differentiable by autograd."""
    return _evaluate(formula, x, aux, axis, xp, summed=False)


def evaluate_sum(formula: Formula, x: torch.Tensor, aux: tuple, *, axis: int, xp: Any
                 ) -> torch.Tensor:
    """The loss's sum, differentiable; eager, no full-size loss is written."""
    return _evaluate(formula, x, aux, axis, xp, summed=True)


def evaluate_with_grad(formula: Formula, x: torch.Tensor, aux: tuple, *, axis: int,
                       xp: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, analytic derivative); block by block when neither must be differentiable."""
    x_grad, aux_grad = _autograd_needed(x, aux)
    if x_grad or aux_grad or is_tracing(x, *aux):
        return formula.value_and_grad(x, *aux, xp=xp, axis=axis)
    loss, grad = _blocked_terms(formula, x, aux, axis, with_grad=True)
    assert grad is not None  # with_grad=True always gives one
    return loss, grad
