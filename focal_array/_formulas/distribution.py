r"""The distribution focal loss (GFL's box branch) over a bin axis: value and derivative.

For a row of logits :math:`x_0, \dots, x_{n-1}` over :math:`n` bins and a target
:math:`y \in [0, n - 1]`, the loss is the cross-entropy against the two-bin distribution
that linear interpolation puts on the bins around :math:`y`,

.. math::

    W_j = \max(1 - |j - y|, 0), \qquad
    \ell = \sum_j W_j\, \mathrm{CE}_j, \qquad \mathrm{CE}_j = -\log \mathrm{softmax}(x)_j,

which is :math:`(r - y)\,\mathrm{CE}_l + (y - l)\,\mathrm{CE}_r` with
:math:`l = \min(\lfloor y \rfloor, n - 2)`, :math:`r = l + 1`: the hat function gives those
two weights and 0 elsewhere with arithmetic only (no floor, clamp, gather or select), and
at :math:`y = n - 1` exactly :math:`W = \mathrm{onehot}(n - 1)`, so the loss is
:math:`\mathrm{CE}_{n-1}`; at an integer :math:`y = k` it is :math:`\mathrm{CE}_k`.

Each :math:`\mathrm{CE}_j` is accurate on its own, so no cancellation occurs between the
two terms. With :math:`M = \max_j x_j`, :math:`z_j = x_j - M` (its rounding error
:math:`\delta_j` recovered by a two-sum and applied to first order,
:math:`e_j = e^{z_j}(1 + \delta_j)`: without it, :math:`e_j` would be off by
:math:`|z_j|\,2^{-24}`, 4e-6 at :math:`z_j = -70`), the bins at the maximum
(:math:`z_j = 0`, :math:`T` of them) and the others' mass :math:`A = \sum_{z_j < 0} e_j`:

.. math::

    \Lambda = \log \sum_j e^{z_j} = \mathrm{log1p}\big((T - 1) + A\big), \qquad
    \mathrm{CE}_j = \Lambda - z_j,

a sum of non-negative numbers (:math:`\Lambda \ge 0`, :math:`-z_j \ge 0`;
:math:`\delta_j` is a relative :math:`2^{-24}` of :math:`-z_j` there and left out), and
:math:`\Lambda` itself accurate when it is tiny (a dominant bin). The maxima are told
apart with arithmetic (:math:`\lceil \min(-z, 1) \rceil` is 0 at :math:`z = 0` and 1
elsewhere: a nonzero difference of floats never rounds to 0), which XLA fuses into
the reductions, where a compare and select would be written out at full size. The
derivative is :math:`p_j - W_j` with :math:`p = \mathrm{softmax}(x)`, formed as
:math:`(e_j (1 - W_j) - W_j\,o_j) / S` with :math:`S = \sum_k e_k` and
:math:`o_j = \sum_{k \ne j} e_k = (S - 1) + (1 - e_j)`, a sum of non-negative terms
(:math:`S - 1 = (T - 1) + A`): no subtraction from 1 is rounded, so the only cancellation
is the inherent one where :math:`p_j \approx W_j` (the gradient's zero). At an integer
target the target bin's derivative is :math:`-(1 - p_k)`, accurate.

Logits must be finite (NaN propagates; ±inf gives NaN).

References:
    Li et al. *Generalized Focal Loss: Learning Qualified and Distributed Bounding Boxes
    for Dense Object Detection*. NeurIPS 2020, arXiv:2006.04388.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from .._namespace import constant, device_of, stop_gradient
from .base import Formula
from .softmax import _two_sum

__all__ = ["DistributionFocal"]

Array = Any


@dataclass(frozen=True)
class DistributionFocal(Formula):
    """(r − y)·CE(x, l) + (y − l)·CE(x, r) over the bin axis, targets y in [0, n − 1].

    Row-wise: one auxiliary array, the targets, with the row shape (in the logits' dtype).
    """

    rowwise: ClassVar[bool] = True

    def terms(self, x: Array, y: Array, *, xp: Any, axis: int = -1, with_grad: bool
              ) -> tuple[Array, Array | None]:
        zero, one = constant(xp, 0.0, x), constant(xp, 1.0, x)
        n = x.shape[axis]
        shape = [1] * x.ndim
        shape[axis] = n
        bins = xp.reshape(xp.arange(n, dtype=x.dtype, device=device_of(x)), tuple(shape))
        target = xp.expand_dims(xp.astype(y, x.dtype, copy=False), axis=axis)
        w = xp.maximum(one - xp.abs(bins - target), zero)  # the two-bin target distribution
        # not a stopped gradient: the bins at the maximum are counted (T), not summed, so
        # autodiff (higher derivatives) sees their dependence through the shift alone
        m = xp.max(x, axis=axis, keepdims=True)
        z, err = _two_sum(x, -m)
        # 0 at a maximum (z = 0), 1 elsewhere: z ≤ 0, and a nonzero difference of two
        # floats never rounds to 0 (subnormals), so ⌈min(−z, 1)⌉ is exactly that indicator.
        # Arithmetic, not a compare and select: XLA:CPU fuses it into the reductions
        # below, which it does not do for a select (a full-size array written and read)
        other = stop_gradient(xp, xp.ceil(xp.minimum(-z, one)))
        e = xp.exp(z)
        e = e + e * err
        a = xp.sum(e * other, axis=axis, keepdims=True)
        # how many bins hold the maximum (a row constant: no full-size 1 − other)
        t = constant(xp, float(n), x) - xp.sum(other, axis=axis, keepdims=True)
        s1 = (t - one) + a  # Σ_j e_j − 1, accurate when it is tiny
        lam = xp.log1p(s1)
        # CE_j = Λ − z_j − err_j: err_j is a relative ε/2 of −z_j ≤ CE_j, left out
        loss = xp.sum(w * (lam - z), axis=axis)
        if not with_grad:
            return loss, None
        # e_j again, from z_j = −(M − x_j) (the same numbers, negated before and after
        # the rounding): not the expressions the sums read, so a compiler recomputes them
        # in the derivative's pass instead of writing z and e out at full size for it
        nz, nerr = _two_sum(m, -x)
        e = xp.exp(-nz)
        e = e - e * nerr
        # Σ_{k≠j} e_k = (Σ e − 1) + (1 − e_j): non-negative terms (e_j = 1 at a maximum)
        grad = (e * (one - w) - w * (s1 + (one - e))) / (s1 + one)
        return loss, grad

