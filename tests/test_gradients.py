"""Analytic gradients (focal_array.gradients) on every backend.

Values equal the library's losses; gradients agree with the float64 references of
tests/reference.py, with central finite differences (float64), and with jax.grad /
torch.autograd of the library's losses (float32, rtol 2e-6 with an absolute floor at
float32's smallest normal number, logits in [−100, 100], γ ∈ {0, 0.5, 1, 2, 5}).
"""

from __future__ import annotations

import numpy as np
import pytest

import focal_array as fa
from focal_array.gradients import (
    sigmoid_focal_loss_value_and_grad,
    softmax_focal_loss_value_and_grad,
)
from tests import reference
from tests.helpers import asarray, assert_close, require, to_numpy

GAMMAS = [0.0, 0.5, 1.0, 2.0, 5.0]
TINY32 = float(np.finfo(np.float32).smallest_normal)
RTOL32 = 2e-6

RNG = np.random.default_rng(7)
# logits over [−100, 100] with a dense band of uncertain values around 0
X_WIDE = np.concatenate([RNG.uniform(-100, 100, (40, 6)), RNG.normal(0, 3, (40, 6))])
Y_HARD = (RNG.random(X_WIDE.shape) < 0.3).astype(np.float64)
Y_SOFT = RNG.random(X_WIDE.shape)
LABELS = RNG.integers(-1, 6, X_WIDE.shape[0])
W_ROW = RNG.random((X_WIDE.shape[0], 1))
X_SM = RNG.uniform(-100, 100, (60, 6))  # softmax: any spread is exact in the reference

SIGMOID_REDUCTIONS = {
    "none": {},
    "sum": {"reduction": "sum"},
    "mean": {"reduction": "mean"},
    "mean_weights": {"reduction": "mean", "weights": W_ROW},
    "sum_weights": {"reduction": "sum", "weights": W_ROW},
    "mean_normalizer": {"reduction": "mean", "normalizer": 7.0},
    "mean_zero_weights": {"reduction": "mean", "weights": np.zeros((1, 6))},
}
SOFTMAX_REDUCTIONS = {
    "none": {},
    "sum": {"reduction": "sum"},
    "mean": {"reduction": "mean"},
    "mean_weights": {"reduction": "mean", "weights": W_ROW[:60, 0]},
    "mean_normalizer": {"reduction": "mean", "normalizer": 11.0},
}


def _opts(xp, opts, dtype):
    out = dict(opts)
    if "weights" in out:
        out["weights"] = asarray(xp, out["weights"], dtype)
    return out


def _reduce_np(loss, opts, valid=None):
    """Gradient scale of the reduction in float64: (w, c) with d L / d ℓ_i = w_i c."""
    w = np.ones_like(loss) if "weights" not in opts else np.broadcast_to(opts["weights"],
                                                                          loss.shape)
    red = opts.get("reduction", "none")
    if red in ("none", "sum"):
        return w, 1.0
    if "normalizer" in opts:
        return w, 1.0 / max(opts["normalizer"], 1.0)
    counted = w if valid is None else np.where(valid, w, 0.0)
    if "weights" not in opts:
        counted = np.ones_like(loss) if valid is None else valid.astype(float)
    d = counted.sum()
    return w, (1.0 / d if d > 0 else 0.0)


# --------------------------------------------------------------------------- sigmoid


@pytest.mark.parametrize("targets", ["bool", "hard", "soft"])
@pytest.mark.parametrize("gamma", GAMMAS)
def test_sigmoid_value_equals_library(xp, gamma, targets):
    y_np = Y_SOFT if targets == "soft" else Y_HARD
    x = asarray(xp, X_WIDE, "float32")
    y = asarray(xp, y_np.astype(bool)) if targets == "bool" else asarray(xp, y_np, "float32")
    for opts in SIGMOID_REDUCTIONS.values():
        o = _opts(xp, opts, "float32")
        loss, grad = sigmoid_focal_loss_value_and_grad(x, y, gamma=gamma, **o)
        want = fa.sigmoid_focal_loss(x, y, gamma=gamma, **o)
        assert_close(loss, to_numpy(want), xp, dtype="float32", rtol=1e-6, atol=TINY32)
        assert tuple(grad.shape) == tuple(x.shape) and grad.dtype == x.dtype
        assert np.all(np.isfinite(to_numpy(grad)))


@pytest.mark.parametrize("name", list(SIGMOID_REDUCTIONS))
@pytest.mark.parametrize("gamma", GAMMAS)
def test_sigmoid_grad_float32_vs_float64_reference(xp, gamma, name):
    """Hard targets, logits in [−100, 100]: within 2e-6 of the float64 derivative."""
    opts = SIGMOID_REDUCTIONS[name]
    for alpha in (0.25, None):
        _, grad = sigmoid_focal_loss_value_and_grad(
            asarray(xp, X_WIDE, "float32"), asarray(xp, Y_HARD.astype(bool)), alpha=alpha,
            gamma=gamma, **_opts(xp, opts, "float32"))
        x32 = X_WIDE.astype(np.float32).astype(np.float64)
        loss64, g64 = reference.sigmoid_focal(x32, Y_HARD, alpha=alpha, gamma=gamma)
        w, c = _reduce_np(loss64, opts)
        assert_close(grad, g64 * w * c, xp, dtype="float32", rtol=RTOL32, atol=TINY32)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("gamma", GAMMAS)
def test_sigmoid_grad_soft_targets_float64(xp, gamma, smoothing):
    _, grad = sigmoid_focal_loss_value_and_grad(
        asarray(xp, X_WIDE, "float64"), asarray(xp, Y_SOFT, "float64"), gamma=gamma,
        label_smoothing=smoothing)
    _, g64 = reference.sigmoid_focal(X_WIDE, Y_SOFT, gamma=gamma, label_smoothing=smoothing)
    assert_close(grad, g64, xp, dtype="float64", rtol=1e-12, atol=1e-300)


def _central_difference(f, x, h=1e-6):
    g = np.zeros_like(x)
    for i in np.ndindex(*x.shape):
        e = np.zeros_like(x)
        e[i] = h * max(1.0, abs(x[i]))
        g[i] = (f(x + e) - f(x - e)) / (2 * e[i])
    return g


@pytest.mark.parametrize("name", ["sum", "mean_weights", "mean_normalizer"])
@pytest.mark.parametrize("gamma", GAMMAS)
def test_sigmoid_grad_finite_differences(xp, gamma, name):
    opts = dict(SIGMOID_REDUCTIONS[name])
    x0 = RNG.normal(0, 2, (5, 3))
    y0 = Y_SOFT[:5, :3]
    if "weights" in opts:
        opts["weights"] = W_ROW[:5]
    _, grad = sigmoid_focal_loss_value_and_grad(asarray(xp, x0, "float64"),
                                                asarray(xp, y0, "float64"), gamma=gamma,
                                                **_opts(xp, opts, "float64"))

    def f(z):
        return float(to_numpy(fa.sigmoid_focal_loss(
            asarray(xp, z, "float64"), asarray(xp, y0, "float64"), gamma=gamma,
            **_opts(xp, opts, "float64"))))

    assert_close(grad, _central_difference(f, x0), xp, rtol=1e-6, atol=1e-9)


def _autodiff_grad(framework, fn, x_np, *args):
    """d fn(x, *args) / dx with jax.grad or torch.autograd, float32, from NumPy data."""
    if framework == "jax":
        jax = require("jax")
        import jax.numpy as jnp

        jargs = [jnp.asarray(a) for a in args]
        return np.asarray(jax.grad(lambda z: jnp.sum(fn(z, *jargs)))(
            jnp.asarray(x_np, dtype=jnp.float32)))
    torch = require("torch")
    xt = torch.tensor(x_np, dtype=torch.float32, requires_grad=True)
    targs = [torch.from_numpy(np.asarray(a)) for a in args]
    (g,) = torch.autograd.grad(fn(xt, *targs).sum(), xt)
    return g.numpy()


@pytest.mark.parametrize("framework", ["jax", "torch"])
@pytest.mark.parametrize("name", ["none", "mean_weights", "mean_normalizer"])
@pytest.mark.parametrize("gamma", GAMMAS)
def test_sigmoid_grad_matches_autodiff(xp, gamma, name, framework):
    opts = SIGMOID_REDUCTIONS[name]
    w = opts.get("weights")
    w32 = None if w is None else w.astype(np.float32)
    rest = {k: v for k, v in opts.items() if k != "weights"}

    def loss(z, y, *w_):
        return fa.sigmoid_focal_loss(z, y, gamma=gamma, weights=w_[0] if w_ else None, **rest)

    extra = () if w32 is None else (w32,)
    want = _autodiff_grad(framework, loss, X_WIDE.astype(np.float32),
                          Y_HARD.astype(bool), *extra)
    _, grad = sigmoid_focal_loss_value_and_grad(
        asarray(xp, X_WIDE, "float32"), asarray(xp, Y_HARD.astype(bool)), gamma=gamma,
        **_opts(xp, opts, "float32"))
    assert_close(grad, want, xp, dtype="float32", rtol=RTOL32, atol=TINY32)


# --------------------------------------------------------------------------- softmax


ALPHAS = {"none": None, "scalar": 0.25, "vector": [0.1, 0.3, 0.2, 0.15, 0.15, 0.1]}


@pytest.mark.parametrize("alpha", list(ALPHAS))
@pytest.mark.parametrize("gamma", GAMMAS)
def test_softmax_value_equals_library(xp, gamma, alpha):
    x = asarray(xp, X_SM, "float32")
    lab = asarray(xp, LABELS[: X_SM.shape[0]])
    for opts in SOFTMAX_REDUCTIONS.values():
        o = _opts(xp, opts, "float32")
        loss, grad = softmax_focal_loss_value_and_grad(x, lab, alpha=ALPHAS[alpha],
                                                       gamma=gamma, **o)
        want = fa.softmax_focal_loss(x, lab, alpha=ALPHAS[alpha], gamma=gamma, **o)
        assert_close(loss, to_numpy(want), xp, dtype="float32", rtol=1e-6, atol=TINY32)
        assert tuple(grad.shape) == tuple(x.shape)
        assert np.all(np.isfinite(to_numpy(grad)))


@pytest.mark.parametrize("name", list(SOFTMAX_REDUCTIONS))
@pytest.mark.parametrize("alpha", list(ALPHAS))
@pytest.mark.parametrize("gamma", GAMMAS)
def test_softmax_grad_float32_vs_float64_reference(xp, gamma, alpha, name):
    opts = SOFTMAX_REDUCTIONS[name]
    lab = LABELS[: X_SM.shape[0]]
    _, grad = softmax_focal_loss_value_and_grad(
        asarray(xp, X_SM, "float32"), asarray(xp, lab), alpha=ALPHAS[alpha], gamma=gamma,
        **_opts(xp, opts, "float32"))
    x32 = X_SM.astype(np.float32).astype(np.float64)
    loss64, g64 = reference.softmax_focal(x32, lab, alpha=ALPHAS[alpha], gamma=gamma)
    w, c = _reduce_np(loss64, opts, valid=lab >= 0)
    assert_close(grad, g64 * (w * c)[:, None], xp, dtype="float32", rtol=RTOL32, atol=TINY32)


@pytest.mark.parametrize("gamma", GAMMAS)
def test_softmax_grad_finite_differences_other_axis(xp, gamma):
    x0 = RNG.normal(0, 2, (3, 4, 2))  # classes along axis 1
    lab = np.array([[0, 3], [-1, 1], [2, 2]])
    _, grad = softmax_focal_loss_value_and_grad(asarray(xp, x0, "float64"), asarray(xp, lab),
                                                alpha=0.25, gamma=gamma, axis=1,
                                                reduction="mean")

    def f(z):
        return float(to_numpy(fa.softmax_focal_loss(
            asarray(xp, z, "float64"), asarray(xp, lab), alpha=0.25, gamma=gamma, axis=1,
            reduction="mean")))

    assert_close(grad, _central_difference(f, x0), xp, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("framework", ["jax", "torch"])
@pytest.mark.parametrize("gamma", GAMMAS)
def test_softmax_grad_matches_autodiff(xp, gamma, framework):
    lab = LABELS[: X_SM.shape[0]]

    def loss(z, labels):
        return fa.softmax_focal_loss(z, labels, alpha=0.25, gamma=gamma, reduction="mean")

    want = _autodiff_grad(framework, loss, X_SM.astype(np.float32), lab)
    _, grad = softmax_focal_loss_value_and_grad(asarray(xp, X_SM, "float32"),
                                                asarray(xp, lab), alpha=0.25, gamma=gamma,
                                                reduction="mean")
    assert_close(grad, want, xp, dtype="float32", rtol=RTOL32, atol=TINY32)


CLASS_W = np.array([0.5, 2.0, 1.0, 0.25, 3.0, 1.5])


@pytest.mark.parametrize("name", list(SOFTMAX_REDUCTIONS))
@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_softmax_grad_class_weights_ignore_index_float64(xp, gamma, name):
    # uint8 labels with 255 ignored (the segmentation convention) and class weights: the
    # float64 reference's per-row gradient times w[t], and "mean" divides by Σ weights·w[t]
    # over the counted rows (F.cross_entropy's rule), derived here, not by the library
    opts = SOFTMAX_REDUCTIONS[name]
    lab = LABELS[: X_SM.shape[0]]
    lab_u8 = np.where(lab < 0, 255, lab).astype(np.uint8)
    loss, grad = softmax_focal_loss_value_and_grad(
        asarray(xp, X_SM, "float32"), asarray(xp, lab_u8), alpha=0.25, gamma=gamma,
        class_weights=CLASS_W.tolist(), ignore_index=255, **_opts(xp, opts, "float32"))
    x32 = X_SM.astype(np.float32).astype(np.float64)
    loss64, g64 = reference.softmax_focal(x32, lab, alpha=0.25, gamma=gamma)
    valid = lab >= 0
    wt = np.where(valid, CLASS_W[np.where(valid, lab, 0)], 0.0)
    w = np.broadcast_to(opts.get("weights", 1.0), wt.shape)
    red = opts.get("reduction", "none")
    if red == "mean" and "normalizer" in opts:
        c = 1.0 / opts["normalizer"]
    elif red == "mean":
        c = 1.0 / np.sum(w * wt)
    else:
        c = 1.0
    want_grad = g64 * (wt * w * c)[:, None]
    assert_close(grad, want_grad, xp, dtype="float32", rtol=RTOL32, atol=TINY32)
    want_loss = loss64 * wt * w if red == "none" else np.sum(loss64 * wt * w) * c
    assert_close(loss, want_loss, xp, dtype="float32", rtol=2e-6, atol=TINY32)


@pytest.mark.parametrize("framework", ["jax", "torch"])
def test_softmax_grad_class_weights_matches_autodiff(xp, framework):
    lab = LABELS[: X_SM.shape[0]]
    lab_u8 = np.where(lab < 0, 255, lab).astype(np.uint8)

    def loss(z, labels):
        return fa.softmax_focal_loss(z, labels, gamma=1.0, class_weights=CLASS_W.tolist(),
                                     ignore_index=255, reduction="mean")

    want = _autodiff_grad(framework, loss, X_SM.astype(np.float32), lab_u8)
    _, grad = softmax_focal_loss_value_and_grad(
        asarray(xp, X_SM, "float32"), asarray(xp, lab_u8), gamma=1.0,
        class_weights=CLASS_W.tolist(), ignore_index=255, reduction="mean")
    assert_close(grad, want, xp, dtype="float32", rtol=RTOL32, atol=TINY32)


def test_softmax_label_smoothing_not_implemented(xp):
    with pytest.raises(NotImplementedError, match="label_smoothing"):
        softmax_focal_loss_value_and_grad(asarray(xp, X_SM, "float32"),
                                          asarray(xp, LABELS[:60]), label_smoothing=0.1)


def test_bad_options_raise(xp):
    x = asarray(xp, X_WIDE, "float32")
    y = asarray(xp, Y_HARD, "float32")
    with pytest.raises(ValueError, match="reduction"):
        sigmoid_focal_loss_value_and_grad(x, y, reduction="avg")
    with pytest.raises(ValueError, match="normalizer"):
        sigmoid_focal_loss_value_and_grad(x, y, normalizer=3.0)
    with pytest.raises(ValueError, match="gamma"):
        softmax_focal_loss_value_and_grad(x, asarray(xp, LABELS), gamma=-1.0)


# --------------------------------------------------------------------------- transforms


def test_jax_jit_vmap_grad_of_value_and_grad():
    jax = require("jax")
    import jax.numpy as jnp

    x = jnp.asarray(X_WIDE[:8], dtype=jnp.float32)
    y = jnp.asarray(Y_HARD[:8].astype(bool))

    def f(z, t):
        return sigmoid_focal_loss_value_and_grad(z, t, gamma=0.5, reduction="sum")

    loss, grad = f(x, y)
    jl, jg = jax.jit(f)(x, y)
    np.testing.assert_allclose(np.asarray(jg), np.asarray(grad), rtol=RTOL32, atol=TINY32)
    np.testing.assert_allclose(float(jl), float(loss), rtol=1e-6)
    _, vg = jax.vmap(f)(x, y)  # per row: the gradient of each row's sum
    np.testing.assert_allclose(np.asarray(vg), np.asarray(grad), rtol=RTOL32, atol=TINY32)
    # the analytic gradient is differentiable itself: its derivative is the Hessian diagonal
    # (moderate logits: the library's own second derivative is NaN where q hits its floor)
    xm = jnp.asarray(X_WIDE[40:48], dtype=jnp.float32)
    hess = jax.grad(lambda z: jnp.sum(f(z, y)[1]))(xm)
    want = jax.vmap(jax.vmap(jax.grad(jax.grad(
        lambda s, t: fa.sigmoid_focal_loss(s, t, gamma=0.5)))))(xm, y)
    assert np.all(np.isfinite(np.asarray(jax.grad(lambda z: jnp.sum(f(z, y)[1]))(x))))
    np.testing.assert_allclose(np.asarray(hess), np.asarray(want), rtol=1e-4, atol=TINY32)


def test_torch_half_precision_grad_dtype():
    torch = require("torch")
    x = torch.tensor(X_WIDE[:4] / 10, dtype=torch.float16)
    y = torch.from_numpy(Y_HARD[:4].astype(bool))
    loss, grad = sigmoid_focal_loss_value_and_grad(x, y, reduction="mean")
    assert loss.dtype == torch.float32 and grad.dtype == torch.float16
    want = _autodiff_grad("torch", lambda z, t: fa.sigmoid_focal_loss(z, t, reduction="mean"),
                          (X_WIDE[:4] / 10).astype(np.float16).astype(np.float32),
                          Y_HARD[:4].astype(bool))
    np.testing.assert_allclose(grad.float().numpy(), want, rtol=1e-3, atol=1e-7)
