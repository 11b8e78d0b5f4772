"""The executors (focal_array._executors) run every formula as the formula itself does.

Each backend's executor is compared with the formula evaluated on whole arrays
(``_executors.ENABLED = False``) and with float64; layouts, block boundaries, the summed
route, per-block specialization, and each framework's transforms (JAX jit/vmap/jvp/
Hessians and memory plan; torch autograd, double backward and torch.compile).
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import asarray, has_autodiff, library, to_numpy, value_and_grad

import focal_array as fa
from focal_array import _executors
from focal_array._executors import _blocked, evaluate, evaluate_sum, evaluate_with_grad
from focal_array._formulas import (
    SigmoidFocal,
    SigmoidFocalLabels,
    SoftmaxFocal,
    SoftmaxFocalSmoothed,
)

TINY = float(np.finfo(np.float32).smallest_normal)
BLOCK = _blocked.BLOCK


def _inputs(formula, shape, axis=-1, seed=0):
    """(logits, aux) for a formula: logits spanning [-60, 60] plus near-zero values."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 8, shape).astype(np.float32)
    x.flat[::7] = rng.uniform(-60, 60, x.flat[::7].shape)
    if isinstance(formula, SigmoidFocal):
        y = rng.random(shape) < 0.1
        aux = [y if formula.hard else
               np.where(y, 1.0, rng.uniform(0, 0.3, shape)).astype(np.float32)]
    else:
        c = shape[axis]
        row = tuple(s for i, s in enumerate(shape) if i != axis % len(shape))
        labels = rng.integers(-1, c, row)  # -1: ignored (background for the labels form)
        aux = [labels]
        if getattr(formula, "alpha", False) is True:
            aux.append(rng.uniform(0.1, 0.9, c))
    return x, aux


def _to(xp, x, aux, dtype="float32"):
    conv = []
    for a in aux:
        if a.dtype == np.bool_ or np.issubdtype(a.dtype, np.integer):
            conv.append(asarray(xp, a))
        else:
            conv.append(asarray(xp, a, dtype))
    return asarray(xp, x, dtype), conv


FORMULAS = [
    SigmoidFocal(alpha=0.25, gamma=2.0, hard=True),
    SigmoidFocal(alpha=None, gamma=0.5, hard=True),
    SigmoidFocal(alpha=0.25, gamma=2.0, hard=False),
    SigmoidFocal(alpha=0.25, gamma=0.0, hard=False),
    SigmoidFocalLabels(alpha=0.25, gamma=2.0),
    SoftmaxFocal(gamma=2.0, alpha=False),
    SoftmaxFocal(gamma=0.0, alpha=True),
    SoftmaxFocal(gamma=0.5, alpha=False),
]


def _generic(monkeypatch, fn):
    with monkeypatch.context() as m:
        m.setattr(_executors, "ENABLED", False)
        return fn()


@pytest.mark.parametrize("formula", FORMULAS, ids=repr)
def test_executor_equals_the_formula_on_whole_arrays(xp, monkeypatch, formula):
    x, aux = _inputs(formula, (300, 81))
    xs, auxs = _to(xp, x, aux)
    loss, grad = evaluate_with_grad(formula, xs, *auxs, xp=xp)
    want, want_grad = _generic(monkeypatch, lambda: formula.value_and_grad(xs, *auxs, xp=xp))
    np.testing.assert_allclose(to_numpy(loss), to_numpy(want), rtol=1e-6, atol=TINY)
    np.testing.assert_allclose(to_numpy(grad), to_numpy(want_grad), rtol=1e-6, atol=TINY)
    np.testing.assert_allclose(to_numpy(evaluate(formula, xs, *auxs, xp=xp)), to_numpy(want),
                               rtol=1e-6, atol=TINY)
    total = to_numpy(evaluate_sum(formula, xs, *auxs, xp=xp))
    np.testing.assert_allclose(total, to_numpy(want).astype(np.float64).sum(), rtol=1e-5)


@pytest.mark.parametrize("formula", FORMULAS[:1] + FORMULAS[2:3] + FORMULAS[5:7], ids=repr)
def test_float32_matches_float64(xp, formula):
    x, aux = _inputs(formula, (200, 81), seed=3)
    xs, auxs = _to(xp, x, aux)
    x64, aux64 = _to(xp, x, aux, "float64")
    loss, grad = evaluate_with_grad(formula, xs, *auxs, xp=xp)
    want, want_grad = evaluate_with_grad(formula, x64, *aux64, xp=xp)
    np.testing.assert_allclose(to_numpy(loss), to_numpy(want), rtol=2e-6, atol=TINY)
    # soft-target gradients contain p − y, which cancels for any float32 formula
    atol = 1e-7 if isinstance(formula, SigmoidFocal) and not formula.hard else 16 * TINY
    np.testing.assert_allclose(to_numpy(grad), to_numpy(want_grad), rtol=2e-6, atol=atol)


@pytest.mark.parametrize("n", [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK + 3])
@pytest.mark.parametrize("formula", FORMULAS[:1] + FORMULAS[2:3], ids=repr)
def test_block_boundaries_elementwise(monkeypatch, formula, n):
    import array_api_compat.numpy as xp

    x, aux = _inputs(formula, (n,), seed=n)
    loss, grad = evaluate_with_grad(formula, x, *aux, xp=xp)
    want, want_grad = formula.value_and_grad(x, *aux, xp=xp)
    np.testing.assert_allclose(loss, want, rtol=1e-6, atol=TINY)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-6, atol=TINY)
    np.testing.assert_allclose(evaluate_sum(formula, x, *aux, xp=xp), want.sum(), rtol=1e-5)


@pytest.mark.parametrize("shape, axis", [((_blocked.ROW_BLOCK // 81 * 3 + 5, 81), -1),
                                          ((2, 5, 81), 2),
                                          ((3, 19, 40, 50), 1), ((19, 700), 0),
                                          ((2, 19, 4000), 1),
                                          ((0, 81), -1), ((4, 1), -1)])
@pytest.mark.parametrize("formula", FORMULAS[4:7], ids=repr)
def test_rowwise_layouts(xp, monkeypatch, formula, shape, axis):
    if isinstance(formula, SigmoidFocalLabels) and axis % len(shape) != len(shape) - 1:
        axis = -1
    x, aux = _inputs(formula, shape, axis=axis, seed=len(shape))
    xs, auxs = _to(xp, x, aux)
    loss, grad = evaluate_with_grad(formula, xs, *auxs, xp=xp, axis=axis)
    ax = axis % len(shape)
    want, want_grad = _generic(monkeypatch, lambda: formula.value_and_grad(
        xs, *auxs, xp=xp, axis=ax))
    assert tuple(loss.shape) == tuple(s for i, s in enumerate(shape) if i != ax)
    assert tuple(grad.shape) == shape
    np.testing.assert_allclose(to_numpy(loss), to_numpy(want), rtol=1e-6, atol=TINY)
    np.testing.assert_allclose(to_numpy(grad), to_numpy(want_grad), rtol=1e-6, atol=TINY)


def test_numpy_layouts_and_read_only_inputs():
    import array_api_compat.numpy as xp

    f = SoftmaxFocal(gamma=2.0, alpha=False)
    x, (labels,) = _inputs(f, (81, 3000), axis=0)
    xt = x.T  # a transposed (F-ordered) view: classes last
    for a in (xt, labels):
        a.flags.writeable = False
    before = xt.copy()
    loss, grad = evaluate_with_grad(f, xt, labels, xp=xp)
    want, want_grad = f.value_and_grad(np.ascontiguousarray(xt), labels, xp=xp)
    np.testing.assert_allclose(loss, want, rtol=1e-6, atol=TINY)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-6, atol=TINY)
    np.testing.assert_array_equal(xt, before)


def test_specialization_of_zero_one_float_targets():
    import array_api_compat.numpy as xp

    f = SigmoidFocal(alpha=0.25, gamma=2.0, hard=False)
    x, (y,) = _inputs(f, (3 * BLOCK,), seed=5)
    y01 = (y == 1.0).astype(np.float32)
    y01[BLOCK + 7] = 0.5  # the middle block stays soft
    assert f.specialize(y01[:BLOCK], xp=xp).hard
    assert not f.specialize(y01[BLOCK:2 * BLOCK], xp=xp).hard
    loss, grad = evaluate_with_grad(f, x, y01, xp=xp)
    want, want_grad = f.value_and_grad(x, y01, xp=xp)
    np.testing.assert_allclose(loss, want, rtol=1e-6, atol=TINY)
    np.testing.assert_allclose(grad, want_grad, rtol=2e-6, atol=TINY)


def test_formula_without_derivative_is_refused_by_value_and_grad(xp):
    f = SoftmaxFocalSmoothed(gamma=2.0, alpha=False, smoothing=0.1)
    x, aux = _inputs(SoftmaxFocal(gamma=2.0, alpha=False), (10, 5))
    xs, auxs = _to(xp, x, aux)
    with pytest.raises(NotImplementedError, match="no analytic derivative"):
        evaluate_with_grad(f, xs, *auxs, xp=xp)
    assert tuple(evaluate(f, xs, *auxs, xp=xp).shape) == (10,)


def test_autodiff_gradient_is_the_analytic_one(xp):
    if not has_autodiff(xp):
        pytest.skip(f"{library(xp)} has no autodiff")
    for f in (FORMULAS[0], FORMULAS[5], FORMULAS[6]):
        x, aux = _inputs(f, (64, 81), seed=11)
        xs, auxs = _to(xp, x, aux)
        _, grad = value_and_grad(xp, lambda z, f=f, a=auxs: evaluate_sum(f, z, *a, xp=xp), xs)
        _, want = evaluate_with_grad(f, xs, *auxs, xp=xp)
        np.testing.assert_allclose(to_numpy(grad), to_numpy(want), rtol=1e-6, atol=TINY)


def test_softmax_masked_classes_and_huge_logits_are_finite(xp):
    x = np.array([[2.0, -np.inf, 0.5], [-np.inf, 1.0, -np.inf], [3e38, -3e38, 0.0],
                  [-3e38, 3e38, 0.0]], np.float32)
    labels = np.array([0, 1, 0, 1])
    xs, ls = asarray(xp, x, "float32"), asarray(xp, labels)
    loss = to_numpy(fa.softmax_focal_loss(xs, ls, gamma=2.0))
    want0 = -np.log(np.exp(2.0) / (np.exp(2.0) + np.exp(0.5))) * \
        (np.exp(0.5) / (np.exp(2.0) + np.exp(0.5))) ** 2
    np.testing.assert_allclose(loss, [want0, 0.0, 0.0, 0.0], rtol=2e-6, atol=TINY)
    _, grad = fa.softmax_focal_loss_value_and_grad(xs, ls, gamma=2.0)
    assert np.all(np.isfinite(to_numpy(grad)))


# --------------------------------------------------------------------------- JAX


def test_jax_transforms_match_the_whole_array_formula(monkeypatch):
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    f = SoftmaxFocal(gamma=2.0, alpha=False)
    x, (labels,) = _inputs(f, (6, 10, 17), seed=2)
    x = np.clip(x, -20, 20)
    xs, ls = jnp.asarray(x, jnp.float64), jnp.asarray(labels)

    def total(z):
        return evaluate_sum(f, z, ls, xp=jnp)

    g = jax.jit(jax.grad(total))(xs)
    per_image = jax.vmap(jax.grad(lambda z, lab: evaluate_sum(f, z, lab, xp=jnp)))(xs, ls)
    fwd = jax.jvp(total, (xs,), (jnp.ones_like(xs),))[1]
    h = jax.hessian(lambda z: evaluate_sum(f, z, ls[0, :1], xp=jnp))(xs[0, :1])
    want_g = _generic(monkeypatch, lambda: jax.grad(total)(xs))
    want_h = _generic(monkeypatch, lambda: jax.hessian(
        lambda z: evaluate_sum(f, z, ls[0, :1], xp=jnp))(xs[0, :1]))
    np.testing.assert_allclose(np.asarray(g), np.asarray(want_g), rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(np.asarray(per_image), np.asarray(want_g), rtol=1e-10,
                               atol=1e-300)
    np.testing.assert_allclose(float(fwd), float(jnp.sum(want_g)), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(np.asarray(h), np.asarray(want_h), rtol=1e-7, atol=1e-12)


def test_jax_tangent_reaches_soft_targets(monkeypatch):
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    x = jnp.linspace(-5, 5, 40)
    y = jnp.linspace(0.05, 0.95, 40)

    def total(t):
        return fa.sigmoid_focal_loss(x, t, reduction="sum")

    got = jax.grad(total)(y)
    want = _generic(monkeypatch, lambda: jax.grad(total)(y))
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-10)
    assert float(jnp.max(jnp.abs(got))) > 0.1


def test_jax_plan_keeps_no_full_size_intermediates():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    x = jnp.zeros((512, 80), jnp.float32)
    cases = [(lambda z, t: fa.sigmoid_focal_loss(z, t, reduction="sum"),
              jnp.zeros((512, 80), jnp.float32), 0, 1),
             (lambda z, t: fa.sigmoid_focal_loss(z, t, reduction="sum"),
              jnp.zeros((512, 80), bool), 1, 2)]
    for fn, y, fwd_limit, vg_limit in cases:  # bool: one float copy of the mask
        for g, limit in ((fn, fwd_limit), (jax.value_and_grad(fn), vg_limit)):
            mem = jax.jit(g).lower(x, y).compile().memory_analysis()
            if mem is None:
                pytest.skip("this jaxlib reports no memory analysis")
            extra = mem.temp_size_in_bytes + mem.output_size_in_bytes
            assert extra <= limit * x.nbytes + 8192, (y.dtype, extra / x.nbytes)


def test_jax_dense_detection_loss_forms_no_full_size_class_tensor():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    b, a, c = 2, 4096, 64
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 400, (a, 2)).astype(np.float32)
    anchors = jnp.asarray(np.concatenate([xy, xy + 32], axis=1))
    gts = jnp.asarray(np.tile(np.array([[[10, 10, 60, 60]]], np.float32), (b, 1, 1)))
    labels = jnp.ones((b, 1), jnp.int32)
    logits = jnp.asarray(rng.normal(size=(b, a, c)).astype(np.float32))
    deltas = jnp.zeros((b, a, 4), jnp.float32)

    def total(lg, dl):
        return fa.dense_detection_loss(lg, dl, anchors, gts, labels)["total"]

    for fn in (total, jax.value_and_grad(total, argnums=(0, 1))):
        mem = jax.jit(fn).lower(logits, deltas).compile().memory_analysis()
        if mem is None:
            pytest.skip("this jaxlib reports no memory analysis")
        assert mem.temp_size_in_bytes < logits.nbytes // 2, mem.temp_size_in_bytes / logits.nbytes


# --------------------------------------------------------------------------- PyTorch


def _torch_pair(formula, shape, seed=0, dtype=None):
    torch = pytest.importorskip("torch")
    x, aux = _inputs(formula, shape, seed=seed)
    xt = torch.tensor(x, dtype=dtype or torch.float32, requires_grad=True)
    auxt = [torch.tensor(a) if a.dtype == np.bool_ or np.issubdtype(a.dtype, np.integer)
            else torch.tensor(a, dtype=xt.dtype) for a in aux]
    return torch, xt, auxt


@pytest.mark.parametrize("formula", FORMULAS, ids=repr)
def test_torch_backward_is_the_saved_analytic_gradient(monkeypatch, formula):
    import array_api_compat.torch as xp

    # float64: the routes differ only by rounding (autodiff of the value in float32 carries
    # the rounding errors the analytic derivative corrects)
    torch, xt, auxt = _torch_pair(formula, (200, 81), dtype=None)
    xt = xt.detach().double().requires_grad_(True)
    auxt = [a.double() if a.is_floating_point() else a for a in auxt]
    loss = evaluate(formula, xt, *auxt, xp=xp)
    weights = torch.rand(loss.shape, dtype=loss.dtype)
    (g,) = torch.autograd.grad((loss * weights).sum(), xt)
    x2 = xt.detach().clone().requires_grad_(True)
    want = _generic(monkeypatch, lambda: torch.autograd.grad(
        (evaluate(formula, x2, *auxt, xp=xp) * weights).sum(), x2)[0])
    torch.testing.assert_close(g, want, rtol=1e-10, atol=1e-300)
    (gs,) = torch.autograd.grad(evaluate_sum(formula, xt, *auxt, xp=xp), xt)
    torch.testing.assert_close(gs, evaluate_with_grad(formula, xt.detach(), *auxt, xp=xp)[1],
                               rtol=0, atol=0)


@pytest.mark.parametrize("formula", [FORMULAS[0], FORMULAS[2], FORMULAS[5], FORMULAS[7]],
                         ids=repr)
def test_torch_double_backward(monkeypatch, formula):
    import array_api_compat.torch as xp

    torch, xt, auxt = _torch_pair(formula, (30, 9), dtype=None)
    xt = xt.detach().double().clamp(-20, 20).requires_grad_(True)
    auxt = [a.double() if a.is_floating_point() else a for a in auxt]

    def second(route_enabled):
        with monkeypatch.context() as m:
            m.setattr(_executors, "ENABLED", route_enabled)
            (g,) = torch.autograd.grad(evaluate_sum(formula, xt, *auxt, xp=xp), xt,
                                       create_graph=True)
            return torch.autograd.grad(g.pow(2).sum(), xt)[0]

    torch.testing.assert_close(second(True), second(False), rtol=1e-9, atol=1e-12)


def test_torch_soft_targets_requiring_grad_get_their_gradient(monkeypatch):
    import array_api_compat.torch as xp

    f = SigmoidFocal(alpha=0.25, gamma=2.0, hard=False)
    torch, xt, (yt,) = _torch_pair(f, (50, 4))
    yt.requires_grad_(True)
    gx, gy = torch.autograd.grad(evaluate_sum(f, xt, yt, xp=xp), (xt, yt))
    want = _generic(monkeypatch, lambda: torch.autograd.grad(
        evaluate_sum(f, xt, yt, xp=xp), (xt, yt)))
    torch.testing.assert_close(gx, want[0])
    torch.testing.assert_close(gy, want[1])


@pytest.mark.parametrize("loss", ["softmax", "sigmoid"])
def test_torch_compile_fullgraph_runs_the_formula_whole(loss):
    torch = pytest.importorskip("torch")
    torch._dynamo.reset()
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.normal(size=(64, 11)).astype(np.float32))
    labels = torch.tensor(rng.integers(-1, 11, 64))
    targets = torch.tensor(rng.random((64, 11)) < 0.2)

    def fn(z):
        if loss == "softmax":
            return fa.softmax_focal_loss(z, labels, reduction="sum")
        return fa.sigmoid_focal_loss(z, targets, reduction="mean", normalizer=5)

    compiled = torch.compile(fn, fullgraph=True)
    for _ in range(2):
        a = x.clone().requires_grad_(True)
        b = x.clone().requires_grad_(True)
        got = compiled(a)
        want = fn(b)
        got.backward()
        want.backward()
        torch.testing.assert_close(got, want, rtol=2e-6, atol=0)
        torch.testing.assert_close(a.grad, b.grad, rtol=2e-6, atol=TINY)


@pytest.mark.parametrize("formula", FORMULAS[:1] + FORMULAS[5:6], ids=repr)
def test_torch_cpu_blocks_cross_their_boundaries(monkeypatch, formula):
    import array_api_compat.torch as xp

    from focal_array._executors import _torch as executor

    block = executor.CPU_BLOCK
    shape = (2 * block + 5,) if not formula.rowwise else (2 * block // 81 + 3, 81)
    torch, xt, auxt = _torch_pair(formula, shape, seed=7)
    x = xt.detach()
    loss, grad = evaluate_with_grad(formula, x, *auxt, xp=xp)
    want, want_grad = formula.value_and_grad(x, *auxt, xp=xp)
    torch.testing.assert_close(loss, want, rtol=1e-6, atol=TINY)
    torch.testing.assert_close(grad, want_grad, rtol=1e-6, atol=TINY)
