"""Evaluate a formula block by block on an eager backend (NumPy, PyTorch eager).

Written with whole arrays, a formula makes a dozen or more temporaries the size of the
logits; each is written to main memory and read back, and on an eager CPU every fresh
allocation of tens of megabytes is page-faulted in again on every call. Cutting the input
into blocks of about :data:`BLOCK` elements keeps every temporary in the CPU cache, where
the allocator reuses it for the next block; the only full-size arrays are the result and
the derivative, written block by block into buffers this module allocates (the caller's
arrays are only read). A loop over blocks is the eager analogue of a fused kernel.

Layout. An elementwise formula sees its input flattened (a view when it is contiguous).
A row-wise formula sees ``x`` as ``(outer, C, inner)`` around its class axis: with
``inner == 1`` blocks of whole rows ``(rows, C)``; otherwise, per outer index, blocks of
columns ``(C, cols)`` with the class axis first — a segmentation map ``(B, C, H, W)`` is
read in place, never transposed.
"""

from __future__ import annotations

import math
from typing import Any

from .._formulas import Formula
from .._namespace import device_of

__all__ = ["BLOCK", "run"]

#: Elements per block: 64 KiB per float32 temporary, a few dozen of them inside a core's L2.
BLOCK = 16384

Array = Any


def _layout(formula: Formula, shape: tuple[int, ...], axis: int, block: int
            ) -> tuple[tuple, tuple, int, Any]:
    """(view shape of x, view shape of the row arrays, the formula's axis in a block, the
    blocks as (x index, row index) pairs)."""
    if not formula.rowwise:
        n = math.prod(shape)
        return (n,), (n,), -1, ((slice(i, i + block),) * 2 for i in range(0, n, block))
    ax = axis % len(shape)
    outer, c, inner = math.prod(shape[:ax]), shape[ax], math.prod(shape[ax + 1:])
    step = max(1, block // max(c, 1))
    if inner == 1:
        return (outer, c), (outer,), 1, (((slice(i, i + step), slice(None)), slice(i, i + step))
                                         for i in range(0, outer, step))
    return (outer, c, inner), (outer, inner), 0, (
        ((o, slice(None), slice(i, i + step)), (o, slice(i, i + step)))
        for o in range(outer) for i in range(0, inner, step))


def run(formula: Formula, x: Array, aux: tuple, *, xp: Any, axis: int, with_grad: bool,
        block: int = BLOCK) -> tuple[Array, Array | None]:
    """(loss, derivative or None), computed block by block; shapes as the formula's."""
    kinds = formula.aux_kinds
    x_shape, row_shape, block_axis, blocks = _layout(formula, tuple(x.shape), axis, block)
    xv = xp.reshape(x, x_shape)
    auxv = [xp.reshape(a, row_shape) if k == "row" else a
            for a, k in zip(aux, kinds, strict=True)]
    loss = xp.empty(row_shape, dtype=x.dtype, device=device_of(x))
    grad = xp.empty(x_shape, dtype=x.dtype, device=device_of(x)) if with_grad else None
    for xi, ri in blocks:
        part = [a[ri] if k == "row" else a for a, k in zip(auxv, kinds, strict=True)]
        lb, gb = formula.terms(xv[xi], *part, xp=xp, axis=block_axis, with_grad=with_grad)
        loss[ri] = lb
        if with_grad:
            grad[xi] = gb
    out_shape = tuple(x.shape)
    if formula.rowwise:
        out_shape = tuple(s for i, s in enumerate(x.shape) if i != axis % x.ndim)
    return (xp.reshape(loss, out_shape),
            xp.reshape(grad, tuple(x.shape)) if with_grad else None)
