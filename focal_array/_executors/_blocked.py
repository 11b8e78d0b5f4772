"""Evaluate a formula block by block on an eager backend (NumPy, PyTorch eager).

Written with whole arrays, a formula makes a dozen or more temporaries the size of the
logits; each is written to main memory and read back, and on an eager CPU every fresh
allocation of tens of megabytes is page-faulted in again on every call. Cutting the input
into blocks of about :data:`BLOCK` elements keeps every temporary in the CPU cache, where
the allocator reuses it for the next block; the only full-size arrays are the result and
the derivative, written block by block into buffers this module allocates (the caller's
arrays are only read), and not even the result when only its sum is wanted. A loop over
blocks is the eager analogue of a fused kernel. Being eager, it may also ask the formula
for a cheaper equivalent of itself on each block's data (:meth:`Formula.specialize`).

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

__all__ = ["BLOCK", "ROW_BLOCK", "run"]

#: Elements per block: 128 KiB per float32 temporary; the few alive at a time stay in a
#: core's L2. Measured on NumPy at 200,000 × 80 (2 cores, AMD EPYC): 16,384 was 10% and
#: 8,192 35% slower (per-call overhead), 65,536 no faster.
BLOCK = 32768
#: Elements per block of a row-wise formula: it also runs a few dozen operations per row
#: (the margin, its two-sum corrections), each a call whose overhead is amortized over the
#: block's rows — 3,236 rows of 81 classes, 1 MiB per float32 temporary (measured at
#: 8,192 and 200,000 × 81: 65,536 was 15-30% slower, whole arrays 5-55%).
ROW_BLOCK = 262144

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
        block: int | None = None, summed: bool = False, specialize: bool = True
        ) -> tuple[Array, Array | None]:
    """(loss, derivative or None), computed block by block; shapes as the formula's.

    ``summed=True`` returns the loss's sum (0-d) instead: the per-block sums are kept and
    added pairwise at the end, and no full-size loss is ever written. ``specialize=False``
    skips :meth:`Formula.specialize` (it reads data: a host sync on an accelerator).
    """
    if block is None:
        block = ROW_BLOCK if formula.rowwise else BLOCK
    kinds = formula.aux_kinds
    x_shape, row_shape, block_axis, blocks = _layout(formula, tuple(x.shape), axis, block)
    xv = xp.reshape(x, x_shape)
    shapes = {"row": row_shape, "element": x_shape}
    auxv = [xp.reshape(a, shapes[k]) if k in shapes else a
            for a, k in zip(aux, kinds, strict=True)]
    dev = device_of(x)
    grad: Any = xp.empty(x_shape, dtype=x.dtype, device=dev) if with_grad else None
    loss: Any = None if summed else xp.empty(row_shape, dtype=x.dtype, device=dev)
    parts = []
    for xi, ri in blocks:
        part = [a[ri] if k == "row" else a[xi] if k == "element" else a
                for a, k in zip(auxv, kinds, strict=True)]
        f = formula.specialize(*part, xp=xp) if specialize else formula
        lb, gb = f.terms(xv[xi], *part, xp=xp, axis=block_axis, with_grad=with_grad)
        if summed:
            parts.append(xp.sum(lb))
        else:
            loss[ri] = lb
        if with_grad:
            grad[xi] = gb
    grad = None if grad is None else xp.reshape(grad, tuple(x.shape))
    if summed:
        total = xp.sum(xp.stack(parts)) if parts else xp.zeros((), dtype=x.dtype, device=dev)
        return total, grad
    return xp.reshape(loss, formula.loss_shape(tuple(x.shape), axis)), grad
