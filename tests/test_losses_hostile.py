"""Hostile inputs to the losses: each is a clear error or a documented, finite result.

−inf masking of classes, finite logits up to ±3.4e38, rows whose gradients used to be NaN,
probabilities that are not a distribution, non-finite counts, ``torch.compile`` with
options that change between calls, and second derivatives. Every expected value is
computed independently: float64 formulas written here or in ``tests/reference.py``,
hand-derived limits, finite differences, or PyTorch's own cross-entropy.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from helpers import asarray, has_autodiff, library, require, to_numpy, value_and_grad

import focal_array as fa
from focal_array.gradients import softmax_focal_loss_value_and_grad
from focal_array.normalization import ema_normalizer, init_ema_normalizer
from tests import reference

F32_MAX = float(np.finfo(np.float32).max)
TINY = float(np.finfo(np.float32).smallest_normal)


def _stable_softmax_ref(x, labels, *, gamma, alpha=None, smoothing=0.0):
    """Per-row softmax focal loss in float64, for finite logits of any float32 size.

    Written from the definition with a max shift (float64 holds every difference of
    float32 numbers); 1 − p_j is the sum of the other probabilities, never 1 − p_j.
    """
    x = np.asarray(x, np.float64)
    out = np.zeros(x.shape[0])
    c = x.shape[1]
    for i, (row, t) in enumerate(zip(x, labels, strict=True)):
        if t < 0:
            continue
        m = row.max()
        e = np.exp(row - m)
        nll = (m - row) + np.log(e.sum())  # −log p_j; m + log Σ would absorb the log
        p = e / e.sum()
        q = np.array([p.sum() - p[j] if p[j] < 0.5 else np.delete(p, j).sum()
                      for j in range(c)])
        a = np.ones(c) if alpha is None else np.asarray(alpha, np.float64)
        target = np.full(c, smoothing / c)
        target[t] += 1.0 - smoothing
        out[i] = np.sum(target * a * q**gamma * nll)
    return out


def _fd_grad(fn, x, eps=1e-6):
    """Central finite differences of sum(fn) in float64."""
    x = np.asarray(x, np.float64)
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[idx] = eps
        g[idx] = (np.sum(fn(x + step)) - np.sum(fn(x - step))) / (2 * eps)
    return g


def _grads(xp, fn, x):
    """{route: gradient} of sum(fn(x)): autodiff where the backend has it."""
    out = {}
    if has_autodiff(xp):
        out["autodiff"] = to_numpy(value_and_grad(xp, fn, x)[1])
    return out


# --------------------------------------------------------------------------- −inf masking


@pytest.mark.parametrize(("gamma", "alpha"), [(0.0, None), (0.5, [0.2, 0.5, 0.3, 0.6]),
                                              (2.0, [0.2, 0.5, 0.3, 0.6])])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_masked_non_target_class_is_the_row_without_it(xp, gamma, alpha, dtype):
    x = np.array([[0.5, -np.inf, 2.0, -1.0], [-np.inf, 3.0, -np.inf, 0.0],
                  [1.0, 2.0, -np.inf, -30.0]])
    labels = np.array([2, 1, 0])
    keep = np.isfinite(x)
    want = np.zeros(3)
    want_grad = np.zeros_like(x)
    for i in range(3):
        a = None if alpha is None else np.asarray(alpha)[keep[i]]
        t = int(np.sum(keep[i][:labels[i]]))  # the label's index in the reduced row
        loss_i, grad_i = reference.softmax_focal(x[i][keep[i]][None], np.array([t]),
                                                 alpha=a, gamma=gamma)
        want[i] = loss_i[0]
        want_grad[i][keep[i]] = grad_i[0]
    xs, ls = asarray(xp, x, dtype), asarray(xp, labels)
    rtol = 2e-6 if dtype == "float32" else 1e-12
    got = fa.softmax_focal_loss(xs, ls, gamma=gamma, alpha=alpha)
    np.testing.assert_allclose(to_numpy(got), want, rtol=rtol, atol=1e-300)
    _, analytic = softmax_focal_loss_value_and_grad(xs, ls, gamma=gamma, alpha=alpha)
    grads = {"analytic": to_numpy(analytic)}
    grads.update(_grads(xp, lambda z: fa.softmax_focal_loss(z, ls, gamma=gamma, alpha=alpha),
                        xs))
    for route, g in grads.items():
        np.testing.assert_allclose(g, want_grad, rtol=10 * rtol, atol=1e-7 if
                                   dtype == "float32" else 1e-15, err_msg=route)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_masked_class_with_label_smoothing_is_inf_with_the_limit_gradient(xp, gamma):
    # the smoothed target puts ε / C on the masked class, whose p is 0: loss +inf (as in
    # PyTorch and optax); the gradient is the limit x_masked → −∞, here x_masked = −60
    # in float64 (it differs from the limit by ~60 e^−60)
    x = np.array([[0.5, -np.inf, 2.0], [1.0, 0.0, -2.0]])
    labels = np.array([0, 2])
    alpha = [0.3, 0.6, 0.8]
    opts = dict(gamma=gamma, alpha=alpha, label_smoothing=0.1)
    xs, ls = asarray(xp, x, "float64"), asarray(xp, labels)
    loss = to_numpy(fa.softmax_focal_loss(xs, ls, **opts))
    assert loss[0] == np.inf
    want1 = reference.softmax_focal_smoothed(x[1:], labels[1:], alpha=alpha, gamma=gamma)
    np.testing.assert_allclose(loss[1], want1[0], rtol=1e-12)
    proxy = np.where(np.isfinite(x), x, -60.0)
    want_grad = _fd_grad(lambda z: reference.softmax_focal_smoothed(
        z, labels, alpha=alpha, gamma=gamma, label_smoothing=0.1), proxy)
    for route, g in _grads(xp, lambda z: fa.softmax_focal_loss(z, ls, **opts), xs).items():
        np.testing.assert_allclose(g, want_grad, rtol=1e-6, atol=1e-8, err_msg=route)
    if library(xp) == "torch" and gamma == 0.0:
        # PyTorch's own smoothed cross-entropy (α = 1): loss inf, the same finite gradient
        torch = xp
        import torch.nn.functional as F

        a = torch.asarray(x, dtype=torch.float64).requires_grad_(True)
        ref = F.cross_entropy(a, torch.asarray(labels), label_smoothing=0.1, reduction="sum")
        ref.backward()
        b = a.detach().clone().requires_grad_(True)
        ours = fa.softmax_cross_entropy(b, torch.asarray(labels), label_smoothing=0.1,
                                        reduction="sum")
        ours.backward()
        assert ref.item() == ours.item() == np.inf
        np.testing.assert_allclose(b.grad.numpy(), a.grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_masked_target_class_is_inf_with_the_limit_gradient(xp, gamma):
    # p_t = 0: loss +inf, as PyTorch's cross_entropy gives; as p_t → 0, q → 1 and
    # γ p_t log p_t → 0, so the gradient tends to α_t (softmax over the others − e_t)
    x = np.array([[-np.inf, 0.0, 1.0]])
    labels = np.array([0])
    xs, ls = asarray(xp, x, "float32"), asarray(xp, labels)
    alpha = 0.25  # label 0 is background: α_t = 0.75
    assert to_numpy(fa.softmax_focal_loss(xs, ls, gamma=gamma, alpha=alpha))[0] == np.inf
    others = np.exp([0.0, 1.0]) / np.sum(np.exp([0.0, 1.0]))
    want = 0.75 * np.array([[-1.0, *others]])
    _, analytic = softmax_focal_loss_value_and_grad(xs, ls, gamma=gamma, alpha=alpha)
    grads = {"analytic": to_numpy(analytic)}
    grads.update(_grads(xp, lambda z: fa.softmax_focal_loss(z, ls, gamma=gamma, alpha=alpha),
                        xs))
    for route, g in grads.items():
        np.testing.assert_allclose(g, want, rtol=2e-6, err_msg=route)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_fully_masked_row_has_zero_loss_and_gradient(xp, smoothing):
    # no class left: no distribution to score; 0, like an ignored row (still counted)
    x = np.array([[-np.inf, -np.inf, -np.inf], [0.0, 1.0, 2.0]])
    labels = np.array([1, 2])
    xs, ls = asarray(xp, x, "float32"), asarray(xp, labels)
    opts = dict(gamma=2.0, label_smoothing=smoothing)
    loss = to_numpy(fa.softmax_focal_loss(xs, ls, **opts))
    if smoothing:
        want1 = reference.softmax_focal_smoothed(x[1:], labels[1:], gamma=2.0,
                                                 label_smoothing=smoothing)[0]
    else:
        want1 = reference.softmax_focal(x[1:], labels[1:], gamma=2.0)[0][0]
    np.testing.assert_allclose(loss, [0.0, want1], rtol=2e-6)
    for route, g in _grads(xp, lambda z: fa.softmax_focal_loss(z, ls, reduction="mean",
                                                                **opts), xs).items():
        assert np.all(g[0] == 0.0) and np.all(np.isfinite(g)), route


# --------------------------------------------------------------------------- huge logits


HUGE_ROWS = np.array([[3e38, -3e38, 0.0], [3e38, 3e38, 0.0], [-3e38, 3e38, 3e38],
                      [1e10, -1e30, 0.0], [-3.4e38, 3.4e38, 1e30], [1e30, 1e30, -1e30]])


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_huge_finite_softmax_logits(xp, gamma, smoothing):
    alpha = [0.3, 0.5, 0.9]
    for labels in (np.array([0, 1, 0, 2, 1, 2]), np.array([1, 2, 2, 0, 0, 0])):
        want = _stable_softmax_ref(HUGE_ROWS, labels, gamma=gamma, alpha=alpha,
                                   smoothing=smoothing)
        xs, ls = asarray(xp, HUGE_ROWS, "float32"), asarray(xp, labels)
        opts = dict(gamma=gamma, alpha=alpha, label_smoothing=smoothing)
        got = to_numpy(fa.softmax_focal_loss(xs, ls, **opts)).astype(np.float64)
        # a loss beyond float32's largest number is +inf (overflow), never NaN; without
        # smoothing also one whose unweighted −log p_t is (the margin overflows first)
        nll = _stable_softmax_ref(HUGE_ROWS, labels, gamma=0.0)
        over = (want > F32_MAX) | ((nll > F32_MAX) & (smoothing == 0.0))
        expected = np.where(over, np.inf, want)
        np.testing.assert_allclose(got, expected, rtol=2e-6, atol=0)
        grads = _grads(xp, lambda z, ls=ls, opts=opts: fa.softmax_focal_loss(z, ls, **opts),
                       xs)
        if not smoothing:
            grads["analytic"] = to_numpy(softmax_focal_loss_value_and_grad(
                xs, ls, gamma=gamma, alpha=alpha)[1])
        for route, g in grads.items():
            assert np.all(np.isfinite(g)), (route, labels, g)
            # every probability here is 0, 1/2 or 1 to float64 precision: p − e_t per row,
            # a row's gradient sums to zero and is bounded by α_t (1 + γ)
            np.testing.assert_allclose(g.sum(axis=1), 0.0, atol=1e-6, err_msg=route)
            assert np.max(np.abs(g)) <= 1.0 + gamma


def test_huge_finite_logits_saturated_rows_closed_form(xp):
    # p = e_top exactly: CE gradient p − e_t; for γ > 0 the focal factor of a correct
    # top class is 0 and of a wrong one 1, so the gradient is α_t (p − e_t) either way
    x = np.array([[1e10, -1e30, 0.0], [-3e38, 3e38, 0.0], [0.0, 1e30, -3.4e38]])
    top = np.argmax(x, axis=1)
    for labels in (np.array([0, 1, 1]), np.array([2, 0, 2])):
        want = np.eye(3)[top] - np.eye(3)[labels]
        xs, ls = asarray(xp, x, "float32"), asarray(xp, labels)
        for gamma in (0.0, 0.5, 2.0):
            grads = _grads(xp, lambda z, ls=ls, gamma=gamma: fa.softmax_focal_loss(
                z, ls, gamma=gamma), xs)
            grads["analytic"] = to_numpy(softmax_focal_loss_value_and_grad(
                xs, ls, gamma=gamma)[1])
            for route, g in grads.items():
                np.testing.assert_allclose(g, want, atol=1e-6, err_msg=f"{route} {gamma}")


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_huge_finite_sigmoid_logits(xp, smoothing):
    x = np.array([3e38, -3e38, 3.4e38, -3.4e38, 1e30, -1e30, 1e10, 0.0])
    for y in (np.ones(8), np.zeros(8), np.full(8, 0.3)):
        ys = y * (1 - smoothing) + smoothing / 2
        # float64: softplus(±x) = max(±x, 0) + log1p(e^−|x|), q from sigmoids, no overflow
        sp_pos = np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))
        sp_neg = sp_pos - x
        p = np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) /
                     (1 + np.exp(-np.abs(x))))
        q = ys * (1 - p) + (1 - ys) * p
        at = 0.25 * ys + 0.75 * (1 - ys)
        want = at * q**2 * (ys * sp_neg + (1 - ys) * sp_pos)
        xs = asarray(xp, x, "float32")
        got = to_numpy(fa.sigmoid_focal_loss(xs, asarray(xp, y, "float32"),
                                             label_smoothing=smoothing)).astype(np.float64)
        np.testing.assert_allclose(got, np.where(want <= F32_MAX, want, np.inf), rtol=2e-6,
                                   atol=1e-30)
        for route, g in _grads(xp, lambda z, y=y: fa.sigmoid_focal_loss(
                z, asarray(xp, y, "float32"), label_smoothing=smoothing), xs).items():
            assert np.all(np.isfinite(g)), route


# --------------------------------------------------------------------------- Hessians


@functools.cache
def _exact_sigmoid_focal_hessian(x, y, gamma, alpha):
    """d²ℓ/dx² of the textbook formula, in 50-digit arithmetic (mpmath): exact to far
    below float64 rounding, where a float64 formula differentiated by autodiff loses
    1 − σ(50) (and every term of the order of e^−50) to rounding."""
    mpmath = require("mpmath")
    with mpmath.workdps(50):
        def loss(z):
            p = 1 / (1 + mpmath.exp(-z))
            q = y * (1 - p) + (1 - y) * p
            bce = y * mpmath.log1p(mpmath.exp(-z)) + (1 - y) * mpmath.log1p(mpmath.exp(z))
            return (alpha * y + (1 - alpha) * (1 - y)) * q**gamma * bce

        return float(mpmath.diff(loss, mpmath.mpf(x), 2))


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_jax_sigmoid_hessian_is_finite_and_right(gamma, dtype):
    jax = require("jax")
    jnp = jax.numpy
    xs = [0.0, 1e-3, -1e-3, 5.0, -5.0, 50.0, -50.0, 100.0, -100.0]
    for y in (0.0, 1.0, 0.3):
        for hard in ((True, False) if y in (0.0, 1.0) else (False,)):
            target = jnp.asarray(bool(y)) if hard else jnp.asarray(y, dtype)

            def f(z, target=target):
                return fa.sigmoid_focal_loss(z, target, gamma=gamma, alpha=0.25)

            z = jnp.asarray(xs, dtype)
            want = np.array([_exact_sigmoid_focal_hessian(x, y, gamma, 0.25) for x in xs])
            if dtype == "float64":
                rtol, atol = 1e-9, 1e-300
            else:
                # float32: the Hessian flushes to 0 below the smallest normal number
                rtol, atol = 1e-5, 1e-36
            for how, h in (("hessian", jax.vmap(jax.hessian(f))(z)),
                           ("jacfwd(grad)", jax.vmap(jax.jacfwd(jax.grad(f)))(z))):
                np.testing.assert_allclose(np.asarray(h), want, rtol=rtol, atol=atol,
                                           err_msg=f"{how} y={y} hard={hard}")


# --------------------------------------------------------------------------- probabilities


def test_probability_rows_must_sum_to_one(xp):
    labels = asarray(xp, np.array([0, 1]))
    bad = asarray(xp, np.array([[0.5, 0.4], [0.2, 0.8]]), "float32")
    with pytest.raises(ValueError, match=r"probability vector along axis 1 .*summing to "
                       r"0\.9"):
        fa.softmax_focal_loss(bad, labels, from_logits=False)
    # per-class sigmoid outputs are not a distribution either
    with pytest.raises(ValueError, match="probability vector"):
        fa.softmax_cross_entropy(asarray(xp, np.array([[0.9, 0.9], [0.1, 0.1]]), "float32"),
                                 labels, from_logits=False)
    with pytest.raises(ValueError, match="probability vector along axis 0"):
        fa.softmax_focal_loss(asarray(xp, np.array([[0.5, 0.2], [0.4, 0.8]]), "float32"),
                              labels, axis=0, from_logits=False)
    # a float32 softmax of 80 classes passes, in float32 and cast to float64
    rng = np.random.default_rng(0)
    z = rng.normal(0, 5, (64, 80)).astype(np.float32)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    p32 = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
    lab = asarray(xp, rng.integers(0, 80, 64))
    want = reference.softmax_focal(np.log(p32.astype(np.float64)), to_numpy(lab),
                                   gamma=2.0)[0]
    for dtype in ("float32", "float64"):
        got = fa.softmax_focal_loss(asarray(xp, p32, dtype), lab, from_logits=False)
        np.testing.assert_allclose(to_numpy(got), want, rtol=1e-5)


def test_probability_check_is_skipped_under_trace():
    jax = require("jax")
    jnp = jax.numpy
    p = jnp.asarray([[0.5, 0.4]])
    got = jax.jit(lambda q: fa.softmax_cross_entropy(q, jnp.asarray([0]),
                                                     from_logits=False))(p)
    np.testing.assert_allclose(float(got[0]), -np.log(0.5), rtol=1e-6)


# --------------------------------------------------------------------------- counts


def test_non_finite_counts_and_targets_are_errors(xp):
    x = asarray(xp, np.zeros((2, 3)), "float32")
    y = asarray(xp, np.zeros((2, 3)), "float32")
    for bad in (np.inf, np.nan, -1.0):
        with pytest.raises(ValueError, match="normalizer must be"):
            fa.sigmoid_focal_loss(x, y, reduction="mean", normalizer=bad)
        with pytest.raises(ValueError, match=r"normalizer must be a finite number >= 0 "
                           r"\(a count\), got (inf|nan|-1\.0)"):
            fa.sigmoid_focal_loss(x, y, reduction="mean",
                                  normalizer=asarray(xp, bad, "float32"))
        with pytest.raises(ValueError, match="normalizer must be a finite number"):
            fa.softmax_focal_loss(x, asarray(xp, np.array([0, 1])), reduction="mean",
                                  normalizer=asarray(xp, bad, "float64"))
    with pytest.raises(ValueError, match="normalizer must be a finite number"):
        fa.sigmoid_focal_loss(x, y, reduction="mean", normalizer=asarray(xp, -3))
    # an integer count and a large finite one are fine
    got = fa.sigmoid_focal_loss(x, y, reduction="mean", normalizer=asarray(xp, 4))
    np.testing.assert_allclose(float(to_numpy(got)), 6 * 0.75 * 0.25 * np.log(2) / 4,
                               rtol=1e-6)
    with pytest.raises(ValueError, match=r"targets must be in \[0, 1\].*or NaN"):
        fa.sigmoid_focal_loss(x, asarray(xp, np.array([[0, np.nan, 1], [0, 0, 0]]),
                                         "float32"))
    state = init_ema_normalizer(xp=xp)
    for bad in (np.inf, np.nan):
        with pytest.raises(ValueError, match="count must be a finite number >= 0"):
            ema_normalizer(state, asarray(xp, bad, "float32"))
        with pytest.raises(ValueError, match="count must be in"):
            ema_normalizer(state, bad)


def test_init_ema_normalizer_refuses_silent_casts(xp):
    with pytest.raises(ValueError, match=r"whole number .* got 100\.7"):
        init_ema_normalizer(100.7, xp=xp, dtype=xp.int32)
    with pytest.raises(ValueError, match="whole number at most 2147483647"):
        init_ema_normalizer(3e9, xp=xp, dtype=xp.int32)
    with pytest.raises(TypeError, match="dtype must be a real floating dtype"):
        init_ema_normalizer(1.0, xp=xp, dtype=xp.bool)
    got = init_ema_normalizer(100.0, xp=xp, dtype=xp.int32)
    assert got.dtype == xp.int32 and int(to_numpy(got)) == 100
    if hasattr(xp, "float16") and library(xp) != "array_api_strict":
        with pytest.raises(ValueError, match="largest"):
            init_ema_normalizer(1e6, xp=xp, dtype=xp.float16)


def test_traced_counts_are_not_checked():
    jax = require("jax")
    jnp = jax.numpy
    f = jax.jit(lambda n: fa.sigmoid_focal_loss(jnp.zeros(3), jnp.zeros(3),
                                                reduction="mean", normalizer=n))
    assert float(f(jnp.asarray(4.0))) > 0  # and no error from the eager check under jit


# --------------------------------------------------------------------------- torch.compile


def test_torch_compile_fullgraph_with_changing_float_options():
    torch = require("torch")
    torch._dynamo.reset()
    rng = np.random.default_rng(1)
    x = torch.tensor(rng.normal(0, 3, (16, 7)).astype(np.float32))
    labels = torch.tensor(rng.integers(-1, 7, 16))
    targets = torch.tensor((rng.random((16, 7)) < 0.2).astype(np.float32))

    def sigmoid(z, gamma, alpha, normalizer):
        return fa.sigmoid_focal_loss(z, targets, gamma=gamma, alpha=alpha, reduction="mean",
                                     normalizer=normalizer)

    def softmax(z, gamma, alpha, normalizer):
        return fa.softmax_focal_loss(z, labels, gamma=gamma, alpha=alpha, reduction="mean",
                                     normalizer=normalizer, label_smoothing=0.1)

    # Dynamo turns a float that changes between calls into a SymFloat: the options'
    # validation must neither break the graph nor fail on the second call
    for fn in (sigmoid, softmax):
        compiled = torch.compile(fn, fullgraph=True)
        for gamma, alpha, normalizer in ((2.0, 0.25, 3.0), (0.5, 0.4, 5.5)):
            torch.testing.assert_close(compiled(x, gamma, alpha, normalizer),
                                       fn(x, gamma, alpha, normalizer), rtol=2e-6, atol=0)
    with pytest.raises(ValueError, match="gamma must be in"):
        fa.sigmoid_focal_loss(x, targets, gamma=float("nan"))
