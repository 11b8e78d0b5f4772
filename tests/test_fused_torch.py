"""The PyTorch fast path of the sigmoid focal loss (focal_array._fused_torch).

Checked against independent values: the float64 references of tests/reference.py, and the
generic ``xp`` formula under autograd (``focal_array._fused.ENABLED = False``). Covers
boolean, 0/1 and soft targets, float32/float64, every γ family, extreme and NaN logits,
first and second derivatives, the cases the fast path must decline, and torch.compile.
"""

from __future__ import annotations

import numpy as np
import pytest

import focal_array as fa
from focal_array import _fused
from focal_array.gradients import sigmoid_focal_loss_value_and_grad
from tests import reference
from tests.helpers import require

torch = require("torch")
ft = pytest.importorskip("focal_array._fused_torch")

GAMMAS = [0.0, 0.5, 1.0, 2.0, 5.0]
ALPHAS = [None, 0.25]
TINY32 = float(np.finfo(np.float32).smallest_normal)
EPS32 = float(np.finfo(np.float32).eps)
RTOL32 = 2e-6

RNG = np.random.default_rng(11)
# [−100, 100] with the points where naive forms cancel (|x| = 15, 30: BCE ≈ 3e-7, 1e-13),
# the underflow edge of σ in float32 (−88.7) and a dense band around 0
X = np.concatenate([
    RNG.uniform(-100, 100, 120), RNG.normal(0, 3, 120),
    [0.0, -15.0, 15.0, -30.0, 30.0, -88.7, 88.7, -100.0, 100.0],
]).astype(np.float32)
Y_HARD = RNG.random(X.shape) < 0.4
Y_SOFT = RNG.random(X.shape).astype(np.float32)
TARGETS = ["bool", "float01", "soft"]


def _targets(kind: str, dtype=torch.float32):
    if kind == "bool":
        return torch.from_numpy(Y_HARD)
    values = Y_HARD if kind == "float01" else Y_SOFT
    return torch.from_numpy(values.astype(np.float32)).to(dtype)


def _fast(x, y, *, alpha, gamma):
    """Loss and autograd gradient through the fast path itself (not the dispatcher)."""
    x = x.detach().clone().requires_grad_(True)
    loss = ft.sigmoid_focal(x, y, alpha=alpha, gamma=gamma)
    assert loss is not None, "the fast path declined"
    assert type(loss.grad_fn).__name__ == "_SigmoidFocalBackward"
    (grad,) = torch.autograd.grad(loss.sum(), x)
    return loss.detach(), grad


def _generic(monkeypatch, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` with every fast path switched off."""
    with monkeypatch.context() as m:
        m.setattr(_fused, "ENABLED", False)
        return fn(*args, **kwargs)


def _public_value_and_autograd(x, y, **kwargs):
    x = x.detach().clone().requires_grad_(True)
    loss = fa.sigmoid_focal_loss(x, y, **kwargs)
    (grad,) = torch.autograd.grad(loss.sum(), x)
    return loss.detach(), grad


def _assert_within(actual, want, *, rtol, atol):
    """|actual − want| ≤ rtol·|want| + atol elementwise (``atol`` may be an array)."""
    actual = actual.numpy().astype(np.float64)
    excess = np.abs(actual - want) - (rtol * np.abs(want) + atol)
    worst = int(np.argmax(excess))
    assert excess[worst] <= 0, f"at {worst}: {actual[worst]!r} != {want[worst]!r}"


def _soft_grad_scale(x, y, alpha, gamma):
    """Σ |terms| of dℓ/dx in float64: the scale its unavoidable rounding is relative to.

    With soft targets dℓ/dx contains p − y, which cancels when p ≈ y; float32 can only
    promise a few ulps of the terms' magnitudes there, for any formula.
    """
    x, y = x.astype(np.float64), y.astype(np.float64)
    p, s = 1 / (1 + np.exp(-x)), 1 / (1 + np.exp(x))
    q = y * s + (1 - y) * p
    bce = y * np.logaddexp(0, -x) + (1 - y) * np.logaddexp(0, x)
    at = 1.0 if alpha is None else alpha * y + (1 - alpha) * (1 - y)
    return at * q**gamma * (gamma * np.abs(1 - 2 * y) * p * s / q * bce + y * s + (1 - y) * p)


# --------------------------------------------------------------------------- accuracy


@pytest.mark.parametrize("kind", TARGETS)
@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize("gamma", GAMMAS)
def test_float32_vs_float64_reference(kind, alpha, gamma):
    y = _targets(kind)
    x = torch.from_numpy(X)
    want, want_grad = reference.sigmoid_focal(X, Y_SOFT if kind == "soft" else Y_HARD,
                                              alpha=alpha, gamma=gamma)
    plain = ft.sigmoid_focal(x, y, alpha=alpha, gamma=gamma)
    loss, grad = _fast(x, y, alpha=alpha, gamma=gamma)
    pair = ft.sigmoid_focal_value_and_grad(x, y, alpha=alpha, gamma=gamma)
    assert pair is not None
    atol = TINY32
    if kind == "soft":
        atol = TINY32 + 8 * EPS32 * _soft_grad_scale(X, Y_SOFT, alpha, gamma)
    for value in (plain, loss, pair[0]):
        assert value.dtype == torch.float32 and value.shape == x.shape
        np.testing.assert_allclose(value.numpy(), want, rtol=RTOL32, atol=TINY32)
    for g in (grad, pair[1]):
        assert g.dtype == torch.float32 and g.shape == x.shape
        _assert_within(g, want_grad, rtol=RTOL32, atol=atol)


@pytest.mark.parametrize("kind", TARGETS)
@pytest.mark.parametrize("gamma", GAMMAS)
def test_float64_equals_generic_path(monkeypatch, kind, gamma):
    x = torch.from_numpy(X.astype(np.float64) * 1.01)
    y = _targets(kind, torch.float64)
    for alpha in ALPHAS:
        loss, grad = _public_value_and_autograd(x, y, alpha=alpha, gamma=gamma)
        want, want_grad = _generic(monkeypatch, _public_value_and_autograd, x, y,
                                   alpha=alpha, gamma=gamma)
        assert loss.dtype == grad.dtype == torch.float64
        np.testing.assert_allclose(loss.numpy(), want.numpy(), rtol=1e-13, atol=1e-300)
        atol = 1e-300 if kind != "soft" else 1e-15 * np.abs(want_grad.numpy()).max()
        np.testing.assert_allclose(grad.numpy(), want_grad.numpy(), rtol=1e-12, atol=atol)


@pytest.mark.parametrize("kind", ["bool", "float01"])
def test_public_api_float32_equals_generic_path(monkeypatch, kind):
    x, y = torch.from_numpy(X), _targets(kind)
    for gamma in (0.5, 2.0):
        opts = {"gamma": gamma, "reduction": "mean", "weights": torch.rand(X.shape)}
        loss, grad = _public_value_and_autograd(x, y, **opts)
        want, want_grad = _generic(monkeypatch, _public_value_and_autograd, x, y, **opts)
        np.testing.assert_allclose(loss.numpy(), want.numpy(), rtol=1e-5)
        np.testing.assert_allclose(grad.numpy(), want_grad.numpy(), rtol=4e-6, atol=TINY32)


@pytest.mark.parametrize("kind", TARGETS)
@pytest.mark.parametrize("gamma", GAMMAS)
def test_extreme_logits_finite(kind, gamma):
    x = torch.tensor([-1e4, 1e4, -1e3, 1e3, -150.0, 150.0] * 2)
    y = torch.tensor([True, True, True, True, True, True] + [False] * 6)
    if kind != "bool":
        y = y.float() if kind == "float01" else torch.full(x.shape, 0.3)
    loss, grad = _fast(x, y, alpha=0.25, gamma=gamma)
    pair = ft.sigmoid_focal_value_and_grad(x, y, alpha=0.25, gamma=gamma)
    for t in (loss, grad, *pair):
        assert torch.isfinite(t).all(), t
    if kind != "soft":
        # the loss is linear on the wrong side: α_t · |x| exactly, slope ∓α_t
        wrong = (x < 0) == y.bool()
        want = torch.where(y.bool(), 0.25, 0.75) * x.abs()
        np.testing.assert_allclose(loss[wrong].numpy(), want[wrong].numpy(), rtol=1e-6)
        sign = torch.where(y.bool(), -0.25, 0.75)
        np.testing.assert_allclose(grad[wrong].numpy(), sign[wrong].numpy(), rtol=1e-6)


@pytest.mark.parametrize("kind", TARGETS)
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_nan_propagates(kind, gamma):
    x = torch.tensor([float("nan"), 1.0, float("nan"), -2.0])
    y = torch.tensor([True, False, False, True])
    if kind != "bool":
        y = y.float() if kind == "float01" else torch.full(x.shape, 0.7)
    loss, grad = _fast(x, y, alpha=0.25, gamma=gamma)
    pair = ft.sigmoid_focal_value_and_grad(x, y, alpha=0.25, gamma=gamma)
    nan = torch.isnan(x)
    for t in (loss, grad, *pair, ft.sigmoid_focal(x, y, alpha=None, gamma=gamma)):
        assert torch.equal(torch.isnan(t), nan)


# --------------------------------------------------------------------------- autograd


@pytest.mark.parametrize("kind", TARGETS)
@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0, 3.5])
def test_second_derivative_equals_generic_path(monkeypatch, kind, gamma):
    x0 = torch.from_numpy(np.concatenate([X[:20], X[120:160]]).astype(np.float64))
    y = _targets(kind, torch.float64)[: x0.shape[0]] if kind != "bool" else \
        torch.from_numpy(np.concatenate([Y_HARD[:20], Y_HARD[120:160]]))
    if kind == "soft":
        y = torch.from_numpy(np.concatenate([Y_SOFT[:20], Y_SOFT[120:160]])).double()

    def second(alpha):
        x = x0.clone().requires_grad_(True)
        loss = fa.sigmoid_focal_loss(x, y, alpha=alpha, gamma=gamma, reduction="sum")
        (g,) = torch.autograd.grad(loss, x, create_graph=True)
        (h,) = torch.autograd.grad((g * torch.linspace(0.5, 2, g.shape[0],
                                                       dtype=g.dtype)).sum(), x)
        return g.detach(), h

    for alpha in ALPHAS:
        g, h = second(alpha)
        want_g, want_h = _generic(monkeypatch, second, alpha)
        np.testing.assert_allclose(g.numpy(), want_g.numpy(), rtol=1e-12, atol=1e-300)
        np.testing.assert_allclose(h.numpy(), want_h.numpy(), rtol=1e-9,
                                   atol=1e-12 * np.abs(want_h.numpy()).max())


def test_second_derivative_bool_targets_nonzero():
    """dℓ/dx and d²ℓ/dx² at x = 0, y = 0, γ = 2, α = None, derived by hand."""
    x = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([False])
    loss = ft.sigmoid_focal(x, y, alpha=None, gamma=2.0)
    (g,) = torch.autograd.grad(loss.sum(), x, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), x)
    # ℓ = p² B with B = softplus(x), B' = p: ℓ' = 2 p p' B + p³,
    # ℓ'' = 2 (p'² + p p'') B + 2 p p' B' + 3 p² p' = 2 (p'² + p p'') B + 5 p² p';
    # at 0: p = 1/2, p' = 1/4, p'' = 0, B = ln 2
    want = 2 * (1 / 16) * np.log(2) + 5 * (1 / 4) * (1 / 4)
    np.testing.assert_allclose(g.item(), 2 * 0.5 * 0.25 * np.log(2) + 0.125, rtol=1e-14)
    np.testing.assert_allclose(h.item(), want, rtol=1e-14)


def test_repeated_backward_keeps_saved_gradient():
    x = torch.from_numpy(X).requires_grad_(True)
    y = _targets("bool")
    loss = ft.sigmoid_focal(x, y, alpha=0.25, gamma=2.0).sum()
    (g1,) = torch.autograd.grad(loss, x, retain_graph=True)
    (g2,) = torch.autograd.grad(3 * loss, x)
    np.testing.assert_allclose(g2.numpy(), 3 * g1.numpy(), rtol=1e-6)


def test_soft_targets_requiring_grad_get_their_gradient(monkeypatch):
    x = torch.from_numpy(X[:40]).requires_grad_(True)
    y = torch.from_numpy(Y_SOFT[:40]).requires_grad_(True)
    assert ft.sigmoid_focal(x, y, alpha=0.25, gamma=2.0) is None
    assert ft.sigmoid_focal_value_and_grad(x.detach(), y, alpha=0.25, gamma=2.0) is None
    fa.sigmoid_focal_loss(x, y, reduction="sum").backward()
    assert y.grad is not None and torch.count_nonzero(y.grad) > 0
    gx, gy = x.grad.clone(), y.grad.clone()
    x.grad = y.grad = None
    _generic(monkeypatch, lambda: fa.sigmoid_focal_loss(x, y, reduction="sum").backward())
    np.testing.assert_allclose(gx.numpy(), x.grad.numpy(), rtol=1e-5, atol=TINY32)
    np.testing.assert_allclose(gy.numpy(), y.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_declines_what_it_does_not_cover():
    x = torch.from_numpy(X[:8])
    assert ft.sigmoid_focal(x.half(), _targets("bool")[:8], alpha=0.25, gamma=2.0) is None
    assert ft.sigmoid_focal(x, _targets("float01", torch.float64)[:8], alpha=0.25,
                            gamma=2.0) is None
    assert ft.sigmoid_focal(x, _targets("bool")[:4], alpha=0.25, gamma=2.0) is None
    # the value-and-grad pair is not differentiable: decline while autograd records x
    assert ft.sigmoid_focal_value_and_grad(x.clone().requires_grad_(True), _targets("bool")[:8],
                                           alpha=0.25, gamma=2.0) is None
    with torch.no_grad():
        xg = x.clone().requires_grad_(True)
        assert ft.sigmoid_focal_value_and_grad(xg, _targets("bool")[:8], alpha=0.25,
                                               gamma=2.0) is not None


def test_value_and_grad_equals_generic_path(monkeypatch):
    x = torch.from_numpy(X)
    for kind in TARGETS:
        y = _targets(kind)
        opts = {"alpha": 0.25, "gamma": 2.0, "reduction": "sum"}
        loss, grad = sigmoid_focal_loss_value_and_grad(x, y, **opts)
        want, want_grad = _generic(monkeypatch, sigmoid_focal_loss_value_and_grad, x, y, **opts)
        np.testing.assert_allclose(loss.numpy(), want.numpy(), rtol=1e-6)
        atol = TINY32 if kind != "soft" else 1e-6 * np.abs(want_grad.numpy()).max()
        np.testing.assert_allclose(grad.numpy(), want_grad.numpy(), rtol=4e-6, atol=atol)


def test_non_contiguous_input_and_float16_logits(monkeypatch):
    x = torch.from_numpy(X[:240].reshape(20, 12)).t()  # a transposed view
    y = torch.from_numpy(Y_HARD[:240].reshape(20, 12)).t()
    loss, grad = _fast(x, y, alpha=0.25, gamma=2.0)
    want, want_grad = reference.sigmoid_focal(x.numpy(), y.numpy(), alpha=0.25, gamma=2.0)
    np.testing.assert_allclose(loss.numpy(), want, rtol=RTOL32, atol=TINY32)
    np.testing.assert_allclose(grad.numpy(), want_grad, rtol=RTOL32, atol=TINY32)
    # half precision: computed in float32 by the fast path, the gradient back in float16
    xh = (x / 10).half().requires_grad_(True)
    fa.sigmoid_focal_loss(xh, y, reduction="mean").backward()
    assert xh.grad.dtype == torch.float16
    xg = (x / 10).half().requires_grad_(True)
    _generic(monkeypatch, lambda: fa.sigmoid_focal_loss(xg, y, reduction="mean").backward())
    np.testing.assert_array_equal(xh.grad.numpy(), xg.grad.numpy())


# --------------------------------------------------------------------------- compile


def test_torch_compile_fullgraph_forward_and_backward():
    torch._dynamo.reset()
    x0 = torch.from_numpy(X[:48].reshape(6, 8))
    yb = torch.from_numpy(Y_HARD[:48].reshape(6, 8))
    ys = torch.from_numpy(Y_SOFT[:48].reshape(6, 8))

    def f(x):
        hard = fa.sigmoid_focal_loss(x, yb, gamma=2.0, reduction="sum")
        soft = fa.sigmoid_focal_loss(x, ys, alpha=None, gamma=0.5, reduction="sum")
        return hard + 2 * soft

    compiled = torch.compile(f, fullgraph=True)
    xc = x0.clone().requires_grad_(True)
    xe = x0.clone().requires_grad_(True)
    out, want = compiled(xc), f(xe)
    out.backward()
    want.backward()
    np.testing.assert_allclose(out.item(), want.item(), rtol=1e-6)
    np.testing.assert_allclose(xc.grad.numpy(), xe.grad.numpy(), rtol=1e-5, atol=TINY32)
