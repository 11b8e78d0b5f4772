r"""The softmax focal loss and cross-entropy over a class axis: value and derivative.

For a row of logits :math:`x` with label :math:`t`, the *margin*

.. math::

    m = \log \sum_{k \ne t} e^{x_k} - x_t
      = (R - x_t) + \log \sum_{k \ne t} e^{x_k - R}, \qquad R = \max_{k \ne t} x_k

gives both quantities the focal loss needs free of cancellation:
:math:`-\log p_t = \mathrm{softplus}(m)` and :math:`1 - p_t = \sigma(m)`, for one
exponential per element and two reductions (the max and the sum over the other classes).
:math:`S = \sum_{k \ne t} e^{x_k - R} \in [1, C - 1]` has full relative accuracy (each term's
rounding is scaled by its share), so :math:`\log S` is accurate to an ulp of a number below
:math:`\log C`. The subtraction :math:`R - x_t` and the sum :math:`(R - x_t) + \log S` are
each rounded to half an ulp of their result — 3.8e-6 absolute near 70 in float32, which
:math:`e^{-|m|}` would turn into that much relative error — so both rounding errors are
recovered exactly (Knuth's two-sum) and applied to first order:
:math:`e^{-|m + \epsilon|} = e^{-|m|}(1 \mp \epsilon)`. This is per row, not per element.

With :math:`q = 1 - p_t`, :math:`L = -\log p_t` and :math:`\ell = \alpha_t q^\gamma L`
(derivation: :math:`\partial \log p_t / \partial x_j = \delta_{tj} - p_j`):

.. math::

    \frac{\partial \ell}{\partial x_j}
    = \alpha_t\, q^\gamma K \cdot
      \begin{cases} -1 & j = t \\ e^{x_j - R} / S & j \ne t \end{cases},
    \qquad K = \gamma\, p_t L + q,

using :math:`p_j / q = e^{x_j} / \sum_{k \ne t} e^{x_k}`: a product of accurately computed
positive factors; the row sums to zero as it must. Each share's :math:`e^{x_j - R}` is
corrected for the rounding of :math:`x_j - R` the same way (elementwise, in the derivative
only: in :math:`S` a term's error is scaled by its share and never matters).

A row without a finite competitor (one class, or every other logit −inf, the masking
idiom) has :math:`p_t = 1`: loss and gradient 0. A row with a negative (ignored) label has loss and
gradient exactly 0.

References:
    Lin, Goyal, Girshick, He, Dollár. *Focal Loss for Dense Object Detection*. ICCV 2017,
    arXiv:1708.02002.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

from .._namespace import constant, stop_gradient
from .._stable import modulating, one_hot_mask, safe_log
from .base import Formula

__all__ = ["SoftmaxFocal", "SoftmaxFocalProbs", "SoftmaxFocalSmoothed", "SoftmaxFocalSoft"]

Array = Any


def _two_sum(a: Array, b: Array) -> tuple[Array, Array]:
    """(a + b rounded, its exact rounding error) — Knuth's two-sum, branch-free."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _class_vector(vec: Array, ndim: int, axis: int, *, xp: Any) -> Array:
    """A (C,) vector shaped to broadcast along ``axis`` of an ``ndim``-d array."""
    shape = [1] * ndim
    shape[axis] = vec.shape[0]
    return xp.reshape(vec, tuple(shape))


def class_values(xp: Any, vec: Array, labels: Array) -> Array:
    """vec[label] per row of a (C,) per-class vector (label 0's for ignored rows, which
    the caller zeroes or leaves uncounted)."""
    safe = xp.where(labels >= 0, labels, xp.zeros_like(labels))
    return xp.reshape(xp.take(vec, xp.reshape(safe, (-1,))), tuple(labels.shape))


@dataclass(frozen=True)
class _SoftmaxFormula(Formula):
    """Fields and layout shared by the softmax formulas: row-wise over the class axis, the
    labels (row shape) then, when ``alpha`` is set, the per-class α vector ``(C,)``."""

    gamma: float
    alpha: bool  # True: a per-class α vector is passed after the labels

    rowwise: ClassVar[bool] = True

    @property
    def aux_kinds(self) -> tuple[str, ...]:
        return ("row", "class") if self.alpha else ("row",)


@dataclass(frozen=True)
class SoftmaxFocal(_SoftmaxFormula):
    """−α_t (1 − p_t)^γ log p_t from logits and integer labels; γ = 0 is cross-entropy.

    Auxiliary arrays: the labels (row shape) and, when ``alpha`` is set, the per-class α
    vector ``(C,)``.
    """

    def terms(self, x: Array, labels: Array, *alpha_vec: Array, xp: Any, axis: int = -1,
              with_grad: bool) -> tuple[Array, Array | None]:
        gamma = self.gamma
        zero = constant(xp, 0.0, x)
        mg = margin(x, labels, axis=axis, xp=xp)
        mod = modulating(mg.q, gamma, xp=xp)
        loss = mg.nll if mod is None else mod * mg.nll
        at = xp.expand_dims(class_values(xp, alpha_vec[0], labels), axis=axis) if self.alpha \
            else None
        if at is not None:
            loss = at * loss
        grad = None
        if with_grad:
            if mod is None:
                f = mg.q
            else:
                # p_t L → 0 as p_t → 0: an infinite margin (a −inf target logit, or a
                # margin past the dtype's largest number) gives 0 · inf here otherwise
                p_l = xp.where(mg.p_t > zero, mg.p_t * mg.nll, zero)
                f = mod * (constant(xp, gamma, x) * p_l + mg.q)
            if at is not None:
                f = at * f
            grad = margin_grad(x, labels, mg, f, axis=axis, xp=xp)
        return _ignored_zero(xp, xp.squeeze(loss, axis=axis), labels), grad


class Margin(NamedTuple):
    """The softmax margin's per-row quantities (see the module docstring), row-shaped with
    the class axis kept (size 1), and the per-element shares."""

    #: the labels' one-hot (boolean, the logits' shape)
    mask: Array
    #: R = max over the other classes (0 where there is no finite competitor)
    r_max: Array
    #: e^{x_j − R} for j ≠ t, 0 at the target
    e: Array
    #: S = Σ_{j≠t} e_j (1 where there is no competitor)
    total: Array
    #: −log p_t = softplus(m), 0 where there is no competitor
    nll: Array
    #: 1 − p_t = σ(m), 0 where there is no competitor
    q: Array
    #: p_t = σ(−m) (only meaningful where q is)
    p_t: Array


def margin(x: Array, labels: Array, *, axis: int, xp: Any) -> Margin:
    """−log p_t, 1 − p_t and p_t of every row from its margin m, each to a few ulps, with
    the rounding of R − x_t and of the sum recovered (two-sum) and applied to first order.
    Shared by the softmax focal loss and the softmax Poly-1 loss."""
    zero, one = constant(xp, 0.0, x), constant(xp, 1.0, x)
    neg_inf = constant(xp, -float("inf"), x)
    mask = one_hot_mask(labels, x.shape[axis], axis=axis, xp=xp)
    others = xp.where(mask, neg_inf, x)
    # the loss is invariant to R; its derivative path would only add rounding noise
    r_max = stop_gradient(xp, xp.max(others, axis=axis, keepdims=True))
    r_max = xp.where(r_max == neg_inf, zero, r_max)  # no finite competitor: S = 0 below
    e = xp.exp(others - r_max)  # e_t = 0
    total = xp.sum(e, axis=axis, keepdims=True)
    has = total != zero  # a NaN logit propagates
    total = xp.where(has, total, one)
    safe = xp.where(labels >= 0, labels, xp.zeros_like(labels))
    x_t = xp.take_along_axis(x, xp.expand_dims(safe, axis=axis), axis=axis)
    d, err_d = _two_sum(r_max, -x_t)
    m, err_m = _two_sum(d, xp.log(total))
    # an infinite margin (a −inf target logit, an overflowing difference) is exact
    err = xp.where(xp.abs(m) < float("inf"), err_d + err_m, zero)
    nonneg = m >= zero
    small_e = xp.exp(-xp.where(nonneg, m, -m)) * (one - xp.where(nonneg, err, -err))
    nll = xp.where(nonneg, m + err, zero) + xp.log1p(small_e)  # softplus(m + ε)
    big = one / (one + small_e)
    small = small_e * big
    q = xp.where(has, xp.where(nonneg, big, small), zero)  # σ(m) = 1 − p_t
    nll = xp.where(has, nll, zero)
    p_t = xp.where(nonneg, small, big)  # σ(−m)
    return Margin(mask=mask, r_max=r_max, e=e, total=total, nll=nll, q=q, p_t=p_t)


def margin_grad(x: Array, labels: Array, mg: Margin, f: Array, *, axis: int, xp: Any
                ) -> Array:
    """The derivative of a loss whose row factor is ``f`` (dℓ/dx_j = f · (−1 at t, e_j / S
    elsewhere)); ignored rows get 0.

    e_j's share carries the rounding of x_j − R as relative error (3.8e-6 at x_j − R ≈
    −70): recovered exactly and applied to first order, as for the margin; x clamped to
    [R − 1024, R] (only the target can exceed R), where e_j is 0 below (−inf logits
    included) and no intermediate is infinite.
    """
    zero = constant(xp, 0.0, x)
    low = xp.minimum(xp.maximum(x, mg.r_max - constant(xp, 1024.0, x)), mg.r_max)
    _, err_e = _two_sum(low, -mg.r_max)
    f = xp.where(xp.expand_dims(labels >= 0, axis=axis), f, zero)
    return xp.where(mg.mask, -f, (mg.e + mg.e * err_e) * (f / mg.total))


def _ignored_zero(xp: Any, loss: Array, labels: Array) -> Array:
    """Rows with a negative (ignored) label are out of the problem: exactly 0, whatever
    their logits hold."""
    return xp.where(labels >= 0, loss, constant(xp, 0.0, loss))


#: |z| / 2 beyond which e^z is 0 in every floating dtype (float64 underflows below −745).
_FAR = 1024.0


@dataclass(frozen=True)
class SoftmaxFocalSmoothed(_SoftmaxFormula):
    """Σ_j t_j α_j (1 − p_j)^γ (−log p_j), t = (1 − ε)·onehot + ε / C, from logits.

    With z = x − max x and Λ = log Σ_k e^{z_k} ∈ [0, log C]: −log p_j = Λ − z_j, and
    1 − p_j = −expm1(z_j − Λ), except for the arg-max class, whose 1 − p comes from the mass
    of the others (the one that would cancel). z is carried halved, h = x/2 − max/2 =
    z/2 exactly (scaling by 2 commutes with rounding), which never overflows for finite
    logits: z itself does for logits ±3e38 apart, although the loss, weighted by
    t_j ≤ 1, may well be representable. e^z is corrected for the rounding of h (two-sum).

    A −inf logit (a masked class) has p_j = 0; smoothing puts mass ε / C on it, so the loss
    is +inf, as in PyTorch and optax, with the finite gradient of the limit (that of
    t_j α_j · (−log p_j), since p_j log p_j → 0). A row whose logits are all −inf has no
    class left: loss and gradient 0. No analytic derivative: the backends' autodiff
    differentiates it; every branch autodiff sees is finite.
    """

    smoothing: float

    has_grad: ClassVar[bool] = False

    def terms(self, x: Array, labels: Array, *alpha_vec: Array, xp: Any, axis: int = -1,
              with_grad: bool) -> tuple[Array, Array | None]:
        mask = one_hot_mask(labels, x.shape[axis], axis=axis, xp=xp)
        w = _smoothed_targets(xp, mask, self.smoothing, x, axis=axis)
        if alpha_vec:
            w = _class_vector(alpha_vec[0], x.ndim, axis, xp=xp) * w
        loss = _weighted_terms(x, w, self.gamma, axis=axis, xp=xp)
        return _ignored_zero(xp, xp.squeeze(loss, axis=axis), labels), None


def _weighted_terms(x: Array, w: Array, gamma: float, *, axis: int, xp: Any) -> Array:
    """Σ_j w_j (1 − p_j)^γ (−log p_j) along ``axis`` (kept, size 1), p = softmax(x), for
    per-class weights w ≥ 0 of ``x``'s shape (a target distribution times α): see
    :class:`SoftmaxFocalSmoothed` for the numerics."""
    zero, one, two = (constant(xp, c, x) for c in (0.0, 1.0, 2.0))
    half, neg_inf = constant(xp, 0.5, x), constant(xp, -float("inf"), x)
    num_classes = x.shape[axis]
    m = stop_gradient(xp, xp.max(x, axis=axis, keepdims=True))
    alive = m != neg_inf  # some class is left (NaN included: it propagates)
    x = xp.where(alive, x, zero)
    m = xp.where(alive, m, zero)
    h, err = _two_sum(x * half, -(m * half))
    finite = h != neg_inf  # False at −inf logits only
    # the two-sum error is NaN at a −inf logit, whose e^z is exactly 0 anyway
    e = xp.exp(two * h) * (one + two * xp.where(finite, err, zero))
    top = one_hot_mask(xp.argmax(x, axis=axis), num_classes, axis=axis, xp=xp)
    rest = xp.sum(xp.where(top, zero, e), axis=axis, keepdims=True)
    # z_top is 0 in value, but carries the derivative of the shift-free e_top
    z_top = xp.sum(xp.where(top, two * h, zero), axis=axis, keepdims=True)
    lse = xp.log1p(xp.expm1(z_top) + rest)
    q = xp.where(top, rest / (xp.exp(z_top) + rest), -xp.expm1(two * h - lse))
    # Σ_j w_j q_j^γ (Λ − z_j) = Λ Σ w q^γ + 2 Σ w q^γ (−h): each term ≥ 0, none
    # overflowing unless the loss does
    nh = -xp.where(finite, h, zero)
    mod = modulating(q, gamma, xp=xp)
    if mod is None:
        wm, lin = w, w * nh
    else:
        wm = w * mod
        # autodiff of q^γ · (−h) gives dq^γ · (−h), which overflows with −h (≥ 1e38)
        # where dq^γ is exactly 0 (e^z = 0 below z ≈ −745): the same value, with the
        # derivative's −h capped there
        mod_c = stop_gradient(xp, mod)
        lin = w * (mod_c * nh + (mod - mod_c) * xp.minimum(nh, constant(xp, _FAR, x)))
    # at a −inf logit, w q^γ (−h) is +inf; its value comes from a constant weight,
    # since autodiff would meet d(q^γ) · inf = 0 · inf (the limit is 0: p log p → 0),
    # and a zero weight (α_j = 0, or a zero target) weighs the class out, inf or not
    w_c = stop_gradient(xp, wm)
    masked = xp.where(finite, zero, xp.where(w_c > zero, -h, zero) * w_c)
    lin = xp.sum(lin + masked, axis=axis, keepdims=True)
    loss = lse * xp.sum(wm, axis=axis, keepdims=True) + two * lin
    return xp.where(alive, loss, zero)


def _smoothed_targets(xp: Any, mask: Array, smoothing: float, like: Array, *,
                      axis: int) -> Array:
    """t = (1 − ε)·onehot + ε / C from the labels' one-hot ``mask`` (the logits' shape)."""
    c = mask.shape[axis]
    return xp.where(mask, constant(xp, 1.0 - smoothing + smoothing / c, like),
                    constant(xp, smoothing / c, like))


def _target_sum(xp: Any, log_p: Array, q: Array, t: Array, alpha_vec: tuple, gamma: float,
                axis: int) -> Array:
    """Σ_j t_j α_j q_j^γ (−log p_j) over ``axis``, for a target distribution ``t``."""
    loss = -log_p * t
    mod = modulating(q, gamma, xp=xp)
    if mod is not None:
        loss = mod * loss
    if alpha_vec:
        loss = _class_vector(alpha_vec[0], log_p.ndim, axis, xp=xp) * loss
    return xp.sum(loss, axis=axis)


@dataclass(frozen=True)
class SoftmaxFocalProbs(_SoftmaxFormula):
    """The softmax focal loss of a probability vector along the class axis
    (``from_logits=False``), with or without label smoothing.

    ``log p`` is floored at the smallest normal number (a probability of exactly 0 gives a
    large finite loss). No analytic derivative: the backends' autodiff differentiates it.
    """

    smoothing: float

    has_grad: ClassVar[bool] = False

    def terms(self, p: Array, labels: Array, *alpha_vec: Array, xp: Any, axis: int = -1,
              with_grad: bool) -> tuple[Array, Array | None]:
        mask = one_hot_mask(labels, p.shape[axis], axis=axis, xp=xp)
        if self.smoothing:
            t = _smoothed_targets(xp, mask, self.smoothing, p, axis=axis)
            loss = _target_sum(xp, safe_log(p, xp=xp), constant(xp, 1.0, p) - p, t,
                               alpha_vec, self.gamma, axis)
            return _ignored_zero(xp, loss, labels), None
        zero = constant(xp, 0.0, p)
        p_t = xp.sum(xp.where(mask, p, zero), axis=axis)
        q = xp.sum(xp.where(mask, zero, p), axis=axis)
        loss = -safe_log(p_t, xp=xp)
        mod = modulating(q, self.gamma, xp=xp)
        if mod is not None:
            loss = mod * loss
        if alpha_vec:
            loss = class_values(xp, alpha_vec[0], labels) * loss
        return _ignored_zero(xp, loss, labels), None


@dataclass(frozen=True)
class SoftmaxFocalSoft(_SoftmaxFormula):
    """Σ_j t_j α_j (1 − p_j)^γ (−log p_j) for probability targets t of the logits' shape
    (mixup, distillation), smoothed as t ← (1 − ε) t + ε / C; from logits (the numerics of
    :class:`SoftmaxFocalSmoothed`: a zero target weighs its class out, −inf logit or not)
    or, with ``from_logits=False``, from probabilities (log p floored as in
    :class:`SoftmaxFocalProbs`). The loss is linear in t: rows need not sum to 1, and an
    all-zero row gives 0. No analytic derivative: the backends' autodiff differentiates it,
    with respect to the targets too.

    Auxiliary arrays: the targets (the logits' shape) and, when ``alpha`` is set, the
    per-class vector ``(C,)``.
    """

    smoothing: float
    from_logits: bool = True

    has_grad: ClassVar[bool] = False

    @property
    def aux_kinds(self) -> tuple[str, ...]:
        return ("element", "class") if self.alpha else ("element",)

    def terms(self, x: Array, targets: Array, *alpha_vec: Array, xp: Any, axis: int = -1,
              with_grad: bool) -> tuple[Array, Array | None]:
        t = targets
        if self.smoothing:
            t = t * constant(xp, 1.0 - self.smoothing, x) + constant(
                xp, self.smoothing / x.shape[axis], x)
        if not self.from_logits:
            return _target_sum(xp, safe_log(x, xp=xp), constant(xp, 1.0, x) - x, t,
                               alpha_vec, self.gamma, axis), None
        if alpha_vec:
            t = _class_vector(alpha_vec[0], x.ndim, axis, xp=xp) * t
        return xp.squeeze(_weighted_terms(x, t, self.gamma, axis=axis, xp=xp), axis=axis), None
