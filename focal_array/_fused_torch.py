r"""Fast path of the sigmoid focal loss on torch (see :mod:`focal_array._fused`).

What. ``ℓ = α_t (1 − p_t)^γ BCE(x, y)`` elementwise and its derivative
``dℓ/dx`` (the formulas of :mod:`focal_array.gradients`), for float32/float64 logits and
either a boolean target mask or floating targets in [0, 1]. With a gradient to compute, the
loss is a :class:`torch.autograd.Function` whose backward is the analytic gradient.

Why. The generic ``xp`` formula costs some twenty full-size temporaries forward and as many
again in autograd's backward. On an eager CPU the allocations dominate (every fresh
64 MB tensor is page-faulted in by the kernel), so the eager path here allocates three to
five tensors in all and otherwise works in place (``out=``, ``mul_``, ``lerp_``), computes
the gradient in the same pass as the loss (from the same intermediates) and saves it, so
the backward is one multiplication.

Kernels (eager). Only PyTorch's own accurate elementwise kernels: ``torch.sigmoid`` and
``softplus`` (``log1p(exp(x))``, exact to a few ulps at every finite x; its threshold is
raised to 40 so the linear branch is exact in float64 too). ``1 − p`` is always σ(−x),
never a subtraction. Boolean targets: ``z = where(y, −x, x)`` gives ``q = 1 − p_t = σ(z)``,
``BCE = softplus(z)`` and ``p_t = σ(−z)``. Floating targets: each term is a ``lerp``
between its y = 0 and y = 1 values (``q = lerp(p, s, y)``, ``BCE = lerp(softplus(x),
softplus(−x), y)``, ``α_t = lerp(1 − α, α, y)``): lerp blends two non-negative numbers
without cancellation and returns either end exactly at y ∈ {0, 1}. Not used:
``binary_cross_entropy_with_logits``, whose ``x − log σ(x)`` form cancels (≈1e-6 absolute
error on a BCE of 3e-7 at x = −15).

Compiled. Under ``torch.compile`` the fused kernel Inductor generates makes the number of
kernels irrelevant; what counts there is the work per element. The generic one-exponential
formulas of :mod:`focal_array.gradients` are traced instead (forward: the loss, its
unused gradient eliminated; backward: the gradient, recomputed from x and y), free of
``out=`` and in-place operations.

Accuracy: float32 values and gradients within 2e-6 relative of float64 (with 0/1 targets;
soft targets add the conditioning of ``p − y`` itself), finite at every finite logit and
for every γ ≥ 0; NaN propagates. The modulating factor's base is floored at the dtype's
smallest normal number exactly as :func:`focal_array.losses._modulating` does.

Higher-order derivatives: the saved gradient is a constant. When a backward runs with
``create_graph=True`` (grad mode on inside it), the gradient is recomputed from the saved
inputs with the generic differentiable formula, so autograd differentiates it again.
"""

from __future__ import annotations

import torch

from ._namespace import is_tracing

# softplus(x) = x exactly (to rounding) above this, in float32 and float64 alike
_SOFTPLUS_THRESHOLD = 40.0


def _applies(x: torch.Tensor, y: torch.Tensor) -> bool:
    """True for the inputs this path covers (the caller's contract, checked cheaply)."""
    if x.dtype not in (torch.float32, torch.float64) or y.shape != x.shape:
        return False
    if y.dtype != torch.bool and y.dtype != x.dtype:
        return False
    # a floating y that requires grad would need dℓ/dy, which this path does not give
    return not (y.requires_grad and torch.is_grad_enabled())


def _constant(value: float, like: torch.Tensor) -> torch.Tensor:
    """A 0-d tensor of ``like``'s dtype and device (a fill, no host-device copy)."""
    return torch.full((), value, dtype=like.dtype, device=like.device)


def _softplus_(t: torch.Tensor) -> torch.Tensor:
    """softplus(t) in place."""
    return torch.ops.aten.softplus.out(t, 1.0, _SOFTPLUS_THRESHOLD, out=t)


def _modulating_(q: torch.Tensor, gamma: float) -> torch.Tensor:
    """q^γ in place (γ > 0), as :func:`focal_array.losses._modulating`."""
    if gamma == 2.0:
        q.mul_(q)
    elif gamma != 1.0:
        q.clamp_min_(torch.finfo(q.dtype).smallest_normal).pow_(gamma)
    return q


def _select_(out: torch.Tensor, y: torch.Tensor, at_one: float, at_zero: float) -> torch.Tensor:
    """``out`` ← the per-element factor that is ``at_one`` where y = 1, ``at_zero`` where 0.

    Boolean y selects; floating y blends with lerp (exact at 0 and 1, no cancellation).
    """
    one, zero = _constant(at_one, out), _constant(at_zero, out)
    if y.dtype == torch.bool:
        return torch.where(y, one, zero, out=out)
    return torch.lerp(zero, one, y, out=out)


def _hard_eager(x: torch.Tensor, y: torch.Tensor, alpha: float | None, gamma: float,
                with_grad: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(ℓ, dℓ/dx or None) for a boolean y: ℓ = α_t q^γ softplus(z), z = ±x, q = σ(z).

    dℓ/dx = ∓α_t q^γ (γ p_t B + q) (gradients._sigmoid_hard_value_and_grad).
    """
    z = torch.neg(x)
    torch.where(y, z, x, out=z)
    q = torch.sigmoid(z) if gamma or with_grad else None
    grad = None
    if with_grad:
        bce = _softplus_(z.clone())
        if gamma:
            grad = torch.sigmoid(z.neg_(), out=z).mul_(bce)  # p_t · B
            torch.add(q, grad, alpha=gamma, out=grad)
            _modulating_(q, gamma)
            grad.mul_(q)
            bce.mul_(q)
            scratch = q
        else:
            grad, scratch = q, z
        if alpha is not None:
            bce.mul_(_select_(scratch, y, alpha, 1.0 - alpha))
        grad.mul_(_select_(scratch, y, -(1.0 if alpha is None else alpha),
                           1.0 if alpha is None else 1.0 - alpha))
        return bce, grad
    bce = _softplus_(z)
    if gamma:
        bce.mul_(_modulating_(q, gamma))
    if alpha is not None:
        scratch = q if q is not None else torch.empty_like(bce)
        bce.mul_(_select_(scratch, y, alpha, 1.0 - alpha))
    return bce, None


def _soft_eager(x: torch.Tensor, y: torch.Tensor, alpha: float | None, gamma: float,
                with_grad: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(ℓ, dℓ/dx or None) for a floating y, each term a lerp between its y = 0 and 1 values.

    dℓ/dx = α_t [q^γ B' + γ (1 − 2y) (q^γ p s / q) B], B' = lerp(p, −s, y)
    (gradients._sigmoid_soft_value_and_grad).
    """
    a = torch.neg(x)
    b = _softplus_(a.clone())                                        # softplus(−x)
    bce = _softplus_(x.clone()).lerp_(b, y)
    if not (gamma or with_grad):
        if alpha is not None:
            bce.mul_(_select_(a, y, alpha, 1.0 - alpha))
        return bce, None
    s = torch.sigmoid(a, out=a)
    p = torch.sigmoid(x, out=b)
    if not with_grad:
        bce.mul_(_modulating_(p.lerp_(s, y), gamma))                 # q = lerp(p, s, y)
        if alpha is not None:
            bce.mul_(_select_(s, y, alpha, 1.0 - alpha))
        return bce, None
    q = torch.lerp(p, s, y) if gamma else None
    ps = torch.mul(p, s) if gamma else None
    grad = p.lerp_(s.neg_(), y)                                      # B' = lerp(p, −s, y)
    scratch = s
    if gamma:
        if gamma == 2.0:
            ps.mul_(q)                                               # q^γ p s / q
            q.mul_(q)
        elif gamma != 1.0:
            q.clamp_min_(torch.finfo(q.dtype).smallest_normal)
            ps.div_(q)
            torch.pow(q, gamma, out=q)
            ps.mul_(q)
        w = torch.mul(y, -2.0, out=scratch).add_(1.0)                # 1 − 2y, exact
        ps.mul_(w).mul_(bce)
        grad.mul_(q).add_(ps, alpha=gamma)
        bce.mul_(q)
    if alpha is not None:
        at = _select_(scratch, y, alpha, 1.0 - alpha)
        bce.mul_(at)
        grad.mul_(at)
    return bce, grad


def _eager(x: torch.Tensor, y: torch.Tensor, alpha: float | None, gamma: float,
           with_grad: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    impl = _hard_eager if y.dtype == torch.bool else _soft_eager
    return impl(x, y, alpha, gamma, with_grad)


def _generic(x: torch.Tensor, y: torch.Tensor, alpha: float | None,
             gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(ℓ, dℓ/dx) from the generic differentiable formulas of :mod:`focal_array.gradients`."""
    import array_api_compat.torch as xp

    from .gradients import _sigmoid_hard_value_and_grad, _sigmoid_soft_value_and_grad

    impl = _sigmoid_hard_value_and_grad if y.dtype == torch.bool else \
        _sigmoid_soft_value_and_grad
    return impl(x, y, alpha=alpha, gamma=gamma, xp=xp)


class _SigmoidFocal(torch.autograd.Function):
    """ℓ(x; y) with the analytic gradient as its backward (y gets none)."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor, y: torch.Tensor,
                alpha: float | None, gamma: float) -> torch.Tensor:
        ctx.alpha, ctx.gamma = alpha, gamma
        if torch.compiler.is_compiling():
            # Inductor fuses the loss into one kernel and recomputes the gradient in the
            # backward's, reading x and y again: cheaper than storing it
            ctx.save_for_backward(x, y)
            return _generic(x, y, alpha, gamma)[0]
        loss, grad = _eager(x, y, alpha, gamma, with_grad=True)
        ctx.save_for_backward(x, y, grad)
        return loss

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx,
                 grad_loss: torch.Tensor) -> tuple[torch.Tensor | None, None, None, None]:
        x, y, *saved = ctx.saved_tensors
        if saved and not torch.is_grad_enabled():
            grad = saved[0]
        else:
            # create_graph=True (or a compiled graph): the gradient from differentiable ops
            # on the saved inputs, so that autograd can differentiate it again
            grad = _generic(x, y, ctx.alpha, ctx.gamma)[1]
        return grad_loss * grad, None, None, None


def sigmoid_focal(x: torch.Tensor, y: torch.Tensor, *, alpha: float | None,
                  gamma: float) -> torch.Tensor | None:
    """Elementwise loss, or None where this fast path does not apply."""
    if not _applies(x, y):
        return None
    compiling = torch.compiler.is_compiling()
    if not compiling and is_tracing(x, y):
        return None  # functorch transforms: the generic formula under their autodiff
    if x.requires_grad and torch.is_grad_enabled():
        return _SigmoidFocal.apply(x, y, alpha, gamma)
    if compiling:
        return _generic(x, y, alpha, gamma)[0]
    return _eager(x, y, alpha, gamma, with_grad=False)[0]


def sigmoid_focal_value_and_grad(x: torch.Tensor, y: torch.Tensor, *, alpha: float | None,
                                 gamma: float) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(loss, dloss/dx) elementwise, or None where this fast path does not apply.

    Declines where the result must itself be differentiable (x requires grad in grad mode)
    and under compilers and transforms, where the generic formula is as fast.
    """
    if not _applies(x, y) or is_tracing(x, y):
        return None
    if x.requires_grad and torch.is_grad_enabled():
        return None
    return _eager(x, y, alpha, gamma, with_grad=True)
