"""The focal family (focal_array.focal_variants) on every backend: float32 values and
gradients against float64 references, peers' formulas, options, errors, transforms.

Accuracy is checked as ``|got − want| ≤ 2e-6 |want| + smallest normal`` — plus, where
float32 has an inherent cancellation, ``4 ε · scale`` (ε = 2^-24), with ``scale`` the
size of the terms that cancel, computed in float64 (see :func:`_check`). Gradients come
from autodiff on JAX and PyTorch (the executors' analytic derivative behind it) and from
the executors' ``evaluate_with_grad`` on NumPy and array_api_strict.
"""

from __future__ import annotations

import numpy as np
import pytest

from focal_array import _formulas as F
from focal_array import (
    binary_cross_entropy,
    sigmoid_focal_loss,
    softmax_cross_entropy,
    softmax_focal_loss,
)
from focal_array._executors import evaluate_with_grad
from focal_array.focal_variants import (
    distribution_focal_loss,
    poly1_focal_loss,
    quality_focal_loss,
    sigmoid_focal_loss_star,
    softmax_poly1_focal_loss,
    varifocal_loss,
)
from tests import reference_variants as rv
from tests.helpers import asarray, has_autodiff, library, require, to_numpy, value_and_grad

TINY = float(np.finfo(np.float32).smallest_normal)
EPS = 2.0**-24
GAMMAS = (0.0, 0.5, 2.0)

_rng = np.random.default_rng(0)
#: logits: a grid over ±100, normal and uniform draws, ±0 and tiny values (1,505)
X = np.concatenate([np.linspace(-100, 100, 801), _rng.normal(0, 4, 400),
                    _rng.uniform(-100, 100, 300), [0.0, -0.0, 1e-30, -1e-30]]).astype(np.float32)
#: 0/1 targets: every logit against 0 and against 1 (3,010)
XH = np.concatenate([X, X])
YH = np.concatenate([np.zeros_like(X), np.ones_like(X)])
#: soft targets: uniform draws and awkward values (0, 1e-7, ..., 1 − 2^-20, 1)
_special = np.array([0.0, 1e-7, 1e-3, 0.25, 0.5, 0.9, 0.999, 1 - 2**-20, 1.0])
YS = np.concatenate([_rng.uniform(0, 1, 1000), np.resize(_special, XH.size - 1000)])[
    _rng.permutation(XH.size)].astype(np.float32)
XS = XH


def _check(got, want, xp, *, scale=None, shape=None, dtype="float32"):
    """|got − want| ≤ 2e-6 |want| + tiny (+ 4 ε scale); returns the max relative error."""
    assert library(xp) == library(__import__("array_api_compat").array_namespace(got))
    assert got.dtype == getattr(xp, dtype), got.dtype
    want = np.asarray(want, dtype=np.float64)
    assert tuple(got.shape) == (want.shape if shape is None else shape)
    g = to_numpy(got).astype(np.float64)
    # XLA flushes subnormal intermediates to 0: a result just above the smallest normal,
    # made of terms each below it (1.75 e^x at x ≈ −87.7), may read 0 there
    tol = 2e-6 * np.abs(want) + TINY * (4 if library(xp) == "jax" else 1)
    if scale is not None:
        tol = tol + 4 * EPS * scale
    err = np.abs(g - want)
    bad = ~(err <= tol)
    assert not bad.any(), (np.flatnonzero(bad)[:5], g[bad][:5], want[bad][:5])
    return float(np.max(np.where(err <= TINY, 0.0, err) / np.maximum(np.abs(want), TINY)))


def _autodiff(xp, f, x):
    """(f(x), d Σ f(x) / dx) by autodiff: PyTorch eager; JAX under one ``jit`` (a single
    compile is far cheaper than eager JAX's kernel per operation and shape)."""
    if library(xp) != "jax":
        return value_and_grad(xp, f, x)
    import jax

    def total(z):
        out = f(z)
        return xp.sum(out), out

    (_, out), grad = jax.jit(jax.value_and_grad(total, has_aux=True))(x)
    return out, grad


def _vg(xp, loss, formula, x, *aux, axis=-1):
    """(loss, d Σ loss / dx): autodiff where the backend has it, else the analytic one."""
    if has_autodiff(xp):
        return _autodiff(xp, lambda z: loss(z, *aux), x)
    return evaluate_with_grad(formula, x, *aux, xp=xp, axis=axis)


def _sig(x):
    return 1 / (1 + np.exp(-np.asarray(x, np.float64)))


def _cancel(x, y):
    """y (1 − σ) + (1 − y) σ: the size of the two products whose difference is y − σ(x)."""
    p, s, y = _sig(x), _sig(-np.asarray(x, np.float64)), np.asarray(y, np.float64)
    return y * s + (1 - y) * p


# ----------------------------------------------------------------- accuracy vs float64


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
def test_quality_focal_matches_float64(xp, beta):
    xs, ys = asarray(xp, XS, "float32"), asarray(xp, YS, "float32")
    want, want_g = rv.quality_focal(XS, YS, beta=beta)
    loss, grad = _vg(xp, lambda z, t: quality_focal_loss(z, t, beta=beta),
                     F.QualityFocal(beta=beta), xs, ys)
    # y − σ(x) is ill-conditioned near σ(x) = y: the computed difference is off by up to
    # ~4 ε (y (1 − σ) + (1 − y) σ), amplified β times in the loss (|β − 1| + 2 in the
    # gradient) relative to |y − σ|
    p, y = _sig(XS), YS.astype(np.float64)
    d = np.abs(rv._p_minus_y(p, 1 / (1 + np.exp(XS.astype(np.float64))), y))
    d = np.where(d > 0, d, np.inf)  # d = 0 (x = 0, y = 1/2): loss and gradient 0
    _check(loss, want, xp, scale=np.abs(want) * beta * _cancel(XS, YS) / d)
    _check(grad, want_g, xp, scale=np.abs(want_g) * (abs(beta - 1) + 2) * _cancel(XS, YS) / d)
    # 0/1 targets are well-conditioned: 2e-6 everywhere
    xh, yh = asarray(xp, XH, "float32"), asarray(xp, YH, "float32")
    want, want_g = rv.quality_focal(XH, YH, beta=beta)
    loss, grad = _vg(xp, lambda z, t: quality_focal_loss(z, t, beta=beta),
                     F.QualityFocal(beta=beta), xh, yh)
    _check(loss, want, xp)
    _check(grad, want_g, xp)


@pytest.mark.parametrize("gamma", GAMMAS)
def test_varifocal_matches_float64(xp, gamma):
    xs, ys = asarray(xp, XS, "float32"), asarray(xp, YS, "float32")
    want, want_g = rv.varifocal(XS, YS, gamma=gamma)
    loss, grad = _vg(xp, lambda z, t: varifocal_loss(z, t, gamma=gamma),
                     F.Varifocal(alpha=0.75, gamma=gamma), xs, ys)
    _check(loss, want, xp)
    # a positive's gradient y (σ − y) crosses zero at σ = y: absolute accuracy there
    _check(grad, want_g, xp, scale=YS * _cancel(XS, YS))


@pytest.mark.parametrize("gamma", GAMMAS)
def test_poly1_sigmoid_matches_float64(xp, gamma):
    xh = asarray(xp, XH, "float32")
    for eps in (1.0, -0.1, 0.0):
        want, want_g = rv.poly1_sigmoid(XH, YH, epsilon=eps, gamma=gamma)
        for y in (asarray(xp, YH, "float32"), asarray(xp, YH.astype(bool))):
            hard = y.dtype == xp.bool
            loss, grad = _vg(xp, lambda z, t, e=eps: poly1_focal_loss(z, t, epsilon=e,
                                                                      gamma=gamma),
                             F.SigmoidPoly1(0.25, gamma, eps, hard), xh, y)
            _check(loss, want, xp)
            _check(grad, want_g, xp)
    xs, ys = asarray(xp, XS, "float32"), asarray(xp, YS, "float32")
    want, want_g = rv.poly1_sigmoid(XS, YS, epsilon=1.0, gamma=gamma)
    loss, grad = _vg(xp, lambda z, t: poly1_focal_loss(z, t, gamma=gamma),
                     F.SigmoidPoly1(0.25, gamma, 1.0, False), xs, ys)
    _check(loss, want, xp)
    # soft targets: q^γ [α_t (p − y) + (1 − 2y) p s (α_t γ B / q + ε (γ + 1))] has terms
    # of both signs; the scale is the sum of their sizes
    x64, y64 = XS.astype(np.float64), YS.astype(np.float64)
    p, q, at = _sig(x64), _cancel(XS, YS), 0.25 * y64 + 0.75 * (1 - y64)
    bce = y64 * np.logaddexp(0, -x64) + (1 - y64) * np.logaddexp(0, x64)
    lead = np.abs(1 - 2 * y64) * p * _sig(-x64) * (at * gamma * bce / q + 1.0 * (gamma + 1))
    _check(grad, want_g, xp, scale=q**gamma * (at * q + lead))


@pytest.mark.parametrize("gamma,beta", [(4.0, 0.0), (4.0, 1.0), (1.5, -0.7), (0.5, 2.0)])
def test_focal_star_matches_float64(xp, gamma, beta):
    # γ not a power of two, or β ≠ 0: the margin's rounding would cost ~4e-6 at z ≈ −80;
    # it is recovered exactly, so 2e-6 holds on 0/1 and on soft targets alike
    for xn, yn in ((XH, YH), (XS, YS)):
        xs, ys = asarray(xp, xn, "float32"), asarray(xp, yn, "float32")
        want, want_g = rv.focal_star(xn, yn, gamma=gamma, beta=beta)
        hard = yn is YH
        loss, grad = _vg(xp, lambda z, t: sigmoid_focal_loss_star(z, t, gamma=gamma,
                                                                  beta=beta),
                         F.SigmoidFocalStar(0.25, gamma, beta, hard), xs, ys)
        _check(loss, want, xp)
        _check(grad, want_g, xp)


def _softmax_rows(c=7, n=600, seed=1):
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.uniform(-100, 100, (n, c)), rng.normal(0, 4, (n, c))])
    x[:50] = rng.normal(0, 1, (50, c))
    x[:50, 3] += np.linspace(5, 60, 50)  # p_t → 1
    labels = rng.integers(0, c, x.shape[0])
    labels[:50] = 3
    labels[60:70] = -1
    return x.astype(np.float32), labels


@pytest.mark.parametrize("gamma", GAMMAS)
def test_softmax_poly1_matches_float64(xp, gamma):
    x, labels = _softmax_rows()
    xs, ls = asarray(xp, x, "float32"), asarray(xp, labels)
    vec = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    for eps, alpha in ((1.0, None), (-0.1, 0.25), (2.0, vec)):
        want, want_g = rv.poly1_softmax(x, labels, epsilon=eps, alpha=alpha, gamma=gamma)
        aux = (ls,) if alpha is None else (ls, _alpha_vec(xp, alpha, 7))
        loss, grad = _vg(xp, lambda z, t, *_, e=eps, a=alpha: softmax_poly1_focal_loss(
            z, t, epsilon=e, alpha=a, gamma=gamma),
            F.SoftmaxPoly1(gamma=gamma, alpha=alpha is not None, epsilon=eps), xs, *aux)
        _check(loss, want, xp)
        # XLA flushes subnormal intermediates: a few smallest normals of slack near 0
        _check(grad, want_g, xp, scale=np.full(want_g.shape, 16 * TINY / (4 * EPS)))


def _alpha_vec(xp, alpha, c):
    vals = [1 - alpha] + [alpha] * (c - 1) if np.ndim(alpha) == 0 else alpha
    return asarray(xp, np.asarray(vals), "float32")


def _bins(n=17, rows=1200, seed=2):
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.uniform(-100, 100, (rows // 2, n)),
                        rng.normal(0, 4, (rows // 2, n))])
    y = rng.uniform(0, n - 1, rows)
    k = rng.integers(0, n, 100)
    x[:100] = rng.normal(0, 1, (100, n))
    # a dominant bin: CE ≈ Σ e^−margin (to 80: beyond, XLA flushes the subnormal terms)
    x[np.arange(100), k] += np.linspace(5, 80, 100)
    y[:100] = k  # integer targets
    y[100:150] = n - 1
    y[150:160] = 0
    x[160:165] = 0.0  # every bin tied
    x[165:170, 3:5] = 50.0  # two tied maxima
    return x.astype(np.float32), y.astype(np.float32)


def test_distribution_focal_matches_float64(xp):
    x, y = _bins()
    want, want_g = rv.distribution_focal(x, y)
    for axis, xn in ((-1, x), (0, np.ascontiguousarray(x.T))):
        xs, ys = asarray(xp, xn, "float32"), asarray(xp, y, "float32")
        loss, grad = _vg(xp, lambda z, t, a=axis: distribution_focal_loss(z, t, axis=a),
                         F.DistributionFocal(), xs, ys, axis=axis)
        _check(loss, want, xp)
        g = grad if axis == -1 else xp.permute_dims(grad, (1, 0))
        # p_j − W_j crosses zero where p_j ≈ W_j (fractional targets only)
        _, p, q = rv._ce_all(x.astype(np.float64))
        w = np.maximum(1 - np.abs(np.arange(17) - y.astype(np.float64)[:, None]), 0)
        scale = np.where(y[:, None] == np.round(y[:, None]), 0.0, p * (1 - w) + w * q)
        _check(g, want_g, xp, scale=scale)


def test_distribution_focal_at_integer_and_last_bin(xp):
    x, y = _bins()
    xs = asarray(xp, x, "float32")
    integer = (y == np.round(y))
    # an integer target is the cross-entropy of its bin (y = n − 1 included)
    labels = asarray(xp, np.where(integer, y, 0).astype(np.int64))
    ce = to_numpy(softmax_cross_entropy(xs, labels))[integer]
    got = to_numpy(distribution_focal_loss(xs, asarray(xp, y, "float32")))[integer]
    np.testing.assert_allclose(got, ce, rtol=2e-6, atol=TINY)
    assert np.sum(y == 16) >= 50
    # integer-dtype targets equal their float values exactly
    yi = np.where(integer, y, 0).astype(np.int32)
    a = distribution_focal_loss(xs, asarray(xp, yi))
    b = distribution_focal_loss(xs, asarray(xp, yi.astype(np.float32), "float32"))
    assert np.array_equal(to_numpy(a), to_numpy(b))


# ----------------------------------------------------------------- peers' formulas


def test_equal_to_peer_transcriptions(xp):
    """mmdetection's QFL/VFL/DFL, ultralytics' VFL/DFLoss, the PolyLoss paper's Poly-1 and
    fvcore's FL*, transcribed in float64 PyTorch: same values and gradients (autograd of
    the transcription: nothing detached) on their common domain."""
    torch = require("torch")
    import torch.nn.functional as tf

    rng = np.random.default_rng(3)
    n, c = 40, 6
    x = rng.normal(0, 3, (n, c))
    label = rng.integers(0, c + 1, n)  # c: background (mmdetection's convention)
    score = rng.uniform(0, 1, n)
    dense = np.zeros((n, c))
    pos = label < c
    dense[np.flatnonzero(pos), label[pos]] = score[pos]
    xt, dt = torch.tensor(x, requires_grad=True), torch.tensor(dense)

    def ours(fn, formula, xn, *aux, axis=-1):
        args = [asarray(xp, a) for a in aux]
        return [to_numpy(a) for a in _vg(xp, fn, formula, asarray(xp, xn, "float64"), *args,
                                         axis=axis)]

    def theirs(value):
        (g,) = torch.autograd.grad(value.sum(), xt, retain_graph=True)
        return value.detach().numpy(), g.numpy()

    def same(mine, peer, reduce=None):
        got = mine[0] if reduce is None else reduce(mine[0])
        np.testing.assert_allclose(got, peer[0], rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(mine[1], peer[1], rtol=1e-9, atol=1e-14)

    # mmdetection quality_focal_loss(pred, (label, score), beta): per anchor, summed over C
    sig = xt.sigmoid()
    qfl = tf.binary_cross_entropy_with_logits(xt, torch.zeros_like(xt), reduction="none") \
        * sig.pow(2.0)
    p_idx, p_lab = torch.tensor(np.flatnonzero(pos)), torch.tensor(label[pos])
    sf = torch.tensor(score[pos]) - sig[p_idx, p_lab]
    qfl = qfl.index_put((p_idx, p_lab), tf.binary_cross_entropy_with_logits(
        xt[p_idx, p_lab], torch.tensor(score[pos]), reduction="none") * sf.abs().pow(2.0))
    same(ours(quality_focal_loss, F.QualityFocal(2.0), x, dense), theirs(qfl.sum(1)),
         reduce=lambda v: v.sum(1))
    # mmdetection varifocal_loss(iou_weighted=True) and ultralytics VarifocalLoss
    bce = tf.binary_cross_entropy_with_logits(xt, dt, reduction="none")
    fw = dt * (dt > 0).double() + 0.75 * (sig - dt).abs().pow(2.0) * (dt <= 0).double()
    mine = ours(varifocal_loss, F.Varifocal(0.75, 2.0), x, dense)
    same(mine, theirs(bce * fw))
    lab01 = (dt > 0).double()
    same(mine, theirs(bce * (0.75 * xt.sigmoid().pow(2.0) * (1 - lab01) + dt * lab01)))
    # PolyLoss paper, Poly-1 focal (sigmoid): FL + ε (1 − p_t)^(γ+1), ε term not α-weighted
    yb = (dense > 0).astype(np.float64)
    ybt = torch.tensor(yb)
    pt = ybt * sig + (1 - ybt) * (1 - sig)
    fl = tf.binary_cross_entropy_with_logits(xt, ybt, reduction="none") * (1 - pt) ** 2.0 \
        * (0.25 * ybt + 0.75 * (1 - ybt))
    same(ours(poly1_focal_loss, F.SigmoidPoly1(0.25, 2.0, 1.0, False), x, yb),
         theirs(fl + 1.0 * (1 - pt) ** 3.0))
    # softmax Poly-1 focal: −α_t (1 − p_t)^γ log p_t + ε (1 − p_t)^(γ+1), log_softmax-based
    lab = np.where(pos, label, 0)
    lp = tf.log_softmax(xt, -1).gather(1, torch.tensor(lab)[:, None])[:, 0]
    pt = lp.exp()
    same(ours(softmax_poly1_focal_loss, F.SoftmaxPoly1(2.0, False, 1.0), x, lab),
         theirs(-(1 - pt) ** 2.0 * lp + (1 - pt) ** 3.0))
    # fvcore sigmoid_focal_loss_star (β = 0 there), soft targets with 2t − 1 linear
    for gamma in (4.0, 1.5):
        shifted = gamma * (xt * (2 * dt - 1))
        star = -tf.logsigmoid(shifted) / gamma * (0.25 * dt + 0.75 * (1 - dt))
        same(ours(lambda z, t, g=gamma: sigmoid_focal_loss_star(z, t, gamma=g),
                  F.SigmoidFocalStar(0.25, gamma, 0.0, False), x, dense), theirs(star))
    # mmdetection distribution_focal_loss, ultralytics DFLoss: both on y ≤ n − 1.01
    nb = 9
    xd = rng.normal(0, 2, (n, 4, nb))
    yd = rng.uniform(0, nb - 1.01, (n, 4))
    xt = torch.tensor(xd, requires_grad=True)
    ydt = torch.tensor(yd)
    left = ydt.long()
    flat = xt.reshape(-1, nb)
    wl = (left + 1).double() - ydt
    mm = tf.cross_entropy(flat, left.view(-1), reduction="none").view(left.shape) * wl \
        + tf.cross_entropy(flat, (left + 1).view(-1), reduction="none").view(left.shape) \
        * (ydt - left.double())
    mine = ours(distribution_focal_loss, F.DistributionFocal(), xd, yd)
    same(mine, theirs(mm))
    target = ydt.clone().clamp_(0, nb - 1 - 0.01)  # ultralytics clamps its input in place
    tl = target.long()
    wl = (tl + 1) - target
    ul = (tf.cross_entropy(flat, tl.view(-1), reduction="none").view(tl.shape) * wl
          + tf.cross_entropy(flat, (tl + 1).view(-1), reduction="none").view(tl.shape)
          * (1 - wl)).mean(-1, keepdim=True)
    np.testing.assert_allclose(mine[0].mean(-1, keepdims=True), ul.detach().numpy(),
                               rtol=1e-10)
    # their clamp: at y = n − 1 they give the loss at n − 1.01; here, CE of the last bin
    last = to_numpy(distribution_focal_loss(asarray(xp, xd, "float64"),
                                            asarray(xp, np.full((n, 4), nb - 1.0))))
    lse = np.log(np.exp(xd).sum(-1))
    np.testing.assert_allclose(last, lse - xd[..., -1], rtol=1e-12)


# ----------------------------------------------------------------- finite everywhere


def test_finite_at_extreme_logits(xp):
    """β, γ = 0.5 (pow's derivative infinite at 0) at logits up to ±1e4: finite values and
    gradients. Inputs have the accuracy tests' shapes (JAX reuses its compiled kernels)."""
    x = np.resize(np.array([-1e4, -100.0, -88.0, -30.0, 0.0, 30.0, 88.0, 100.0, 1e4],
                           np.float32), XH.shape)
    y01 = np.resize(np.array([0, 1, 0, 1, 0, 1, 0, 1, 0, 1], np.float32), XH.shape)
    soft = np.resize(np.array([0.0, 1.0, 0.3, 1e-7, 0.5, 1.0, 0.999, 0.0, 1.0, 0.5, 1.0],
                              np.float32), XH.shape)
    xs, ys, ss = (asarray(xp, a, "float32") for a in (x, y01, soft))
    rows, labels = _softmax_rows()
    rows[:, :5] = [-1e4, -100.0, 0.0, 100.0, 1e4]
    bins, dist = _bins()
    bins[:, :5] = [-1e4, -100.0, 0.0, 100.0, 1e4]
    cases = [
        (F.QualityFocal(0.5), lambda z, t: quality_focal_loss(z, t, beta=0.5), xs, ss),
        (F.Varifocal(0.75, 0.5), lambda z, t: varifocal_loss(z, t, gamma=0.5), xs, ss),
        (F.SigmoidPoly1(0.25, 0.5, 1.0, False), lambda z, t: poly1_focal_loss(z, t, gamma=0.5),
         xs, ys),
        (F.SigmoidPoly1(0.25, 0.5, 1.0, False), lambda z, t: poly1_focal_loss(z, t, gamma=0.5),
         xs, ss),
        (F.SigmoidFocalStar(0.25, 0.5, 2.0, False),
         lambda z, t: sigmoid_focal_loss_star(z, t, gamma=0.5, beta=2.0), xs, ss),
        (F.SoftmaxPoly1(0.5, False, 1.0),
         lambda z, t: softmax_poly1_focal_loss(z, t, gamma=0.5, epsilon=1.0),
         asarray(xp, rows, "float32"), asarray(xp, labels)),
        (F.DistributionFocal(), distribution_focal_loss, asarray(xp, bins, "float32"),
         asarray(xp, dist, "float32")),
    ]
    for formula, f, z, t in cases:
        val, g = _vg(xp, f, formula, z, t)
        assert np.all(np.isfinite(to_numpy(val))), formula
        assert np.all(np.isfinite(to_numpy(g))), formula
    # QFL at y = σ(x) exactly (x = 0, y = 1/2), β < 1: loss 0, gradient 0 (not NaN/inf)
    at = np.flatnonzero((x == 0) & (soft == 0.5))
    val, g = _vg(xp, cases[0][1], cases[0][0], xs, ss)
    assert at.size and np.all(to_numpy(val)[at] == 0) and np.all(to_numpy(g)[at] == 0)


@pytest.mark.parametrize("half", ["float16", "bfloat16"])
def test_half_precision_computes_in_float32(xp, half):
    if not hasattr(xp, half):
        pytest.skip(f"{library(xp)} has no {half}")
    x = np.array([-60.0, -3.0, 0.0, 2.5, 60.0, 6e4 if half == "float16" else 1e30])
    y = np.array([0.0, 0.3, 1.0, 0.0, 0.9, 1.0])
    hx = xp.astype(asarray(xp, x, "float32"), getattr(xp, half))
    hy = xp.astype(asarray(xp, y, "float32"), getattr(xp, half))
    x32 = to_numpy(xp.astype(hx, xp.float32)).astype(np.float64)
    y32 = to_numpy(xp.astype(hy, xp.float32)).astype(np.float64)
    want, _ = rv.varifocal(x32[:5], y32[:5])
    _check(varifocal_loss(hx, hy)[:5], want, xp)
    bins = xp.astype(asarray(xp, np.stack([x[:5]] * 2), "float32"), getattr(xp, half))
    t = xp.astype(asarray(xp, [1.5, 4.0], "float32"), getattr(xp, half))
    calls = [lambda z: quality_focal_loss(z, hy, beta=0.5), lambda z: varifocal_loss(z, hy),
             lambda z: poly1_focal_loss(z, hy, gamma=0.5),
             lambda z: sigmoid_focal_loss_star(z, hy, gamma=1.5, beta=0.5)]
    for f, arg in [(f, hx) for f in calls] + [(lambda z: distribution_focal_loss(z, t), bins),
                                              (lambda z: softmax_poly1_focal_loss(
                                                  z, asarray(xp, np.array([1, 3]))), bins)]:
        out = f(arg)
        assert out.dtype == xp.float32 and np.all(np.isfinite(to_numpy(out)))
        if has_autodiff(xp):
            _, g = _autodiff(xp, f, arg)
            assert g.dtype == getattr(xp, half)
            assert np.all(np.isfinite(to_numpy(xp.astype(g, xp.float32))))


# ----------------------------------------------------------------- identities, reductions


def test_special_cases_are_the_plain_losses(xp):
    rng = np.random.default_rng(4)
    x = rng.normal(0, 3, (40, 6))  # the peer test's shapes: JAX reuses its kernels
    y = (rng.random((40, 6)) < 0.3).astype(np.float64)
    xs, ys = asarray(xp, x, "float64"), asarray(xp, y, "float64")
    close = {"rtol": 1e-12, "atol": 1e-300}
    np.testing.assert_allclose(to_numpy(quality_focal_loss(xs, ys, beta=0.0)),
                               to_numpy(binary_cross_entropy(xs, ys)), **close)
    np.testing.assert_allclose(to_numpy(poly1_focal_loss(xs, ys, epsilon=0.0)),
                               to_numpy(sigmoid_focal_loss(xs, ys)), **close)
    np.testing.assert_allclose(to_numpy(sigmoid_focal_loss_star(xs, ys, gamma=1.0)),
                               to_numpy(binary_cross_entropy(xs, ys, alpha=0.25)), **close)
    labels = asarray(xp, np.array([0, 4, -1, 2, 1] * 8))
    for alpha in (None, 0.25):
        np.testing.assert_allclose(
            to_numpy(softmax_poly1_focal_loss(xs, labels, epsilon=0.0, alpha=alpha)),
            to_numpy(softmax_focal_loss(xs, labels, alpha=alpha)), **close)


def test_reductions_weights_normalizer(xp):
    rng = np.random.default_rng(5)
    x = rng.normal(0, 3, (40, 6))
    y = rng.uniform(0, 1, (40, 6)) * (rng.random((40, 6)) < 0.5)
    w = rng.random((40, 1))
    xs, ys = (asarray(xp, a, "float64") for a in (x, y))
    labels = np.array([0, 4, -1, 2, 1, -2, 3, 0] * 5)
    cases = [(quality_focal_loss, ys, w, None), (varifocal_loss, ys, w, None),
             (poly1_focal_loss, ys, w, None), (sigmoid_focal_loss_star, ys, w, None),
             (softmax_poly1_focal_loss, asarray(xp, labels), w[:, 0], labels >= 0),
             (distribution_focal_loss, asarray(xp, 5 * y[:, 0], "float64"), w[:, 0], None)]
    for fn, aux, wn, valid in cases:
        wx = asarray(xp, wn, "float64")
        per = to_numpy(fn(xs, aux))
        full = np.broadcast_to(wn, per.shape)
        count = per.size if valid is None else valid.sum()
        wsum = full.sum() if valid is None else full[valid].sum()
        for kw, want in (({"reduction": "sum"}, per.sum()),
                         ({"reduction": "mean"}, per.sum() / count),
                         ({"weights": wx}, per * wn),
                         ({"weights": wx, "reduction": "sum"}, (per * wn).sum()),
                         ({"weights": wx, "reduction": "mean"}, (per * wn).sum() / wsum),
                         ({"reduction": "mean", "normalizer": 3}, per.sum() / 3),
                         ({"reduction": "mean", "normalizer": asarray(xp, 0.5, "float64")},
                          per.sum())):
            np.testing.assert_allclose(to_numpy(fn(xs, aux, **kw)), want, rtol=1e-12,
                                       err_msg=f"{fn.__name__} {kw}")


# ----------------------------------------------------------------- errors


def test_bad_arguments(xp):
    x = asarray(xp, np.zeros((4, 3)), "float32")
    y = asarray(xp, np.zeros((4, 3)), "float32")
    d = asarray(xp, np.zeros((4, 5)), "float32")
    t = asarray(xp, np.ones(4), "float32")
    raises = pytest.raises
    with raises(TypeError, match="logits must have a real floating dtype"):
        quality_focal_loss(asarray(xp, np.zeros((4, 3), np.int32)), y)
    with raises(ValueError, match=r"targets must have shape \(4, 3\)"):
        varifocal_loss(x, asarray(xp, np.zeros((4, 2)), "float32"))
    for fn in (quality_focal_loss, varifocal_loss, poly1_focal_loss, sigmoid_focal_loss_star):
        with raises(ValueError, match=r"targets must be in \[0, 1\]"):
            fn(x, asarray(xp, np.full((4, 3), 1.5), "float32"))
        with raises(ValueError, match=r"targets must be in \[0, 1\]"):
            fn(x, asarray(xp, np.full((4, 3), np.nan), "float32"))
        with raises(ValueError, match="reduction must be one of"):
            fn(x, y, reduction="avg")
        with raises(ValueError, match="normalizer is only used with reduction='mean'"):
            fn(x, y, normalizer=2)
        with raises(ValueError, match=r"weights with shape \(5,\) does not broadcast"):
            fn(x, y, weights=asarray(xp, np.ones(5), "float32"))
    with raises(ValueError, match=r"beta must be in \[0.0, inf\], got -1"):
        quality_focal_loss(x, y, beta=-1.0)
    with raises(ValueError, match=r"alpha must be in \[0.0, inf\], got -0.5"):
        varifocal_loss(x, y, alpha=-0.5)
    with raises(ValueError, match="gamma must be in"):
        varifocal_loss(x, y, gamma=-1.0)
    with raises(ValueError, match=r"epsilon must be a finite number .*got inf"):
        poly1_focal_loss(x, y, epsilon=float("inf"))
    with raises(ValueError, match=r"epsilon must be a finite number .*got nan"):
        softmax_poly1_focal_loss(x, asarray(xp, np.zeros(4, np.int64)), epsilon=float("nan"))
    with raises(TypeError, match="epsilon must be a real number"):
        poly1_focal_loss(x, y, epsilon="1")
    with raises(ValueError, match=r"alpha must be in \[0.0, 1.0\]"):
        poly1_focal_loss(x, y, alpha=1.5)
    with raises(ValueError, match=r"gamma must be in \(0.0, inf\], got 0.0"):
        sigmoid_focal_loss_star(x, y, gamma=0.0)
    with raises(ValueError, match=r"beta must be a finite number .*got nan"):
        sigmoid_focal_loss_star(x, y, beta=float("nan"))
    with raises(ValueError, match="beta / gamma must be finite in the compute dtype"):
        sigmoid_focal_loss_star(x, y, gamma=1e-300, beta=1.0)
    with raises(ValueError, match=r"labels must be < num_classes = 3"):
        softmax_poly1_focal_loss(x, asarray(xp, np.array([0, 1, 3, 2])))
    with raises(ValueError, match=r"targets must be in \[0, n - 1\] = \[0, 4\] .* found "
                                  r"values in \[1.0, 4.5\]"):
        distribution_focal_loss(d, asarray(xp, [1.0, 2.0, 4.5, 3.0], "float32"))
    with raises(ValueError, match=r"targets must be in \[0, n - 1\]"):
        distribution_focal_loss(d, asarray(xp, [1.0, -0.5, 2.0, 3.0], "float32"))
    with raises(ValueError, match=r"targets must be in \[0, n - 1\]"):
        distribution_focal_loss(d, asarray(xp, [1.0, np.nan, 2.0, 3.0], "float32"))
    with raises(ValueError, match="at least 2 bins along axis 1"):
        distribution_focal_loss(asarray(xp, np.zeros((4, 1)), "float32"), t)
    with raises(ValueError, match=r"targets must have shape \(4,\) \(the shape of logits "
                                  r"without the bin axis\)"):
        distribution_focal_loss(d, asarray(xp, np.ones(5), "float32"))
    with raises(TypeError, match="targets must be real floating or integer"):
        distribution_focal_loss(d, asarray(xp, np.ones(4, bool)))
    with raises(ValueError, match="axis=2 is out of range"):
        distribution_focal_loss(d, t, axis=2)


# ----------------------------------------------------------------- transforms


def test_jax_jit_and_grad_once_per_loss():
    """Each loss jitted with its gradient (one compile each) equals the NumPy route (value,
    and the analytic derivative); value checks are skipped in the trace (an out-of-range
    target does not raise there)."""
    jax = require("jax")
    import array_api_compat.numpy as nxp
    import jax.numpy as jnp

    rng = np.random.default_rng(6)
    x = rng.normal(0, 3, (16, 5)).astype(np.float32)
    soft = (rng.uniform(0, 1, (16, 5)) * (rng.random((16, 5)) < 0.4)).astype(np.float32)
    labels = rng.integers(-1, 5, 16)
    dist = rng.uniform(0, 4, 16).astype(np.float32)
    cases = [(lambda a, b: quality_focal_loss(a, b, beta=0.5, reduction="sum"), soft,
              F.QualityFocal(0.5)),
             (lambda a, b: varifocal_loss(a, b, reduction="sum"), soft, F.Varifocal(0.75, 2.0)),
             (lambda a, b: poly1_focal_loss(a, b, reduction="sum"), soft > 0,
              F.SigmoidPoly1(0.25, 2.0, 1.0, True)),
             (lambda a, b: softmax_poly1_focal_loss(a, b, reduction="sum"), labels,
              F.SoftmaxPoly1(2.0, False, 1.0)),
             (lambda a, b: sigmoid_focal_loss_star(a, b, gamma=1.5, beta=0.5,
                                                   reduction="sum"), soft,
              F.SigmoidFocalStar(0.25, 1.5, 0.5, False)),
             (lambda a, b: distribution_focal_loss(a, b, reduction="sum"), dist,
              F.DistributionFocal())]
    for f, aux, formula in cases:
        v_jit, g_jit = jax.jit(jax.value_and_grad(f))(jnp.asarray(x), jnp.asarray(aux))
        np.testing.assert_allclose(float(v_jit), float(f(x, aux)), rtol=2e-6)
        _, g = evaluate_with_grad(formula, nxp.asarray(x), nxp.asarray(aux), xp=nxp)
        np.testing.assert_allclose(np.asarray(g_jit), g, rtol=2e-6, atol=1e-7)
    f = jax.jit(lambda a, b: distribution_focal_loss(a, b, reduction="sum"))
    assert np.isfinite(float(f(jnp.asarray(x), jnp.asarray(dist) + 1)))


def test_torch_autograd_matches_analytic_gradient():
    """PyTorch autograd through the executor's Function equals the analytic derivative
    evaluated on whole tensors (and double backward works)."""
    torch = require("torch")
    import array_api_compat.torch as txp

    rng = np.random.default_rng(7)
    x = torch.tensor(rng.normal(0, 3, (16, 5)))
    soft = torch.tensor(rng.uniform(0, 1, (16, 5)))
    for fn, formula in ((lambda a: quality_focal_loss(a, soft, beta=1.5), F.QualityFocal(1.5)),
                        (lambda a: varifocal_loss(a, soft), F.Varifocal(0.75, 2.0)),
                        (lambda a: sigmoid_focal_loss_star(a, soft, beta=0.5),
                         F.SigmoidFocalStar(0.25, 4.0, 0.5, False))):
        xg = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(fn(xg).sum(), xg, create_graph=True)
        want = formula.value_and_grad(x, soft, xp=txp)[1]
        np.testing.assert_allclose(g.detach().numpy(), want.numpy(), rtol=1e-12)
        (h,) = torch.autograd.grad(g.sum(), xg)
        assert torch.isfinite(h).all()


def test_torch_compile_fullgraph_of_every_loss():
    """All six losses in one ``torch.compile(fullgraph=True)`` graph (one compile, with
    autograd): no graph break from the namespace layer, the eager values and gradients."""
    torch = require("torch")
    torch._dynamo.reset()
    rng = np.random.default_rng(8)
    x = torch.tensor(rng.normal(0, 3, (16, 5)).astype(np.float32))
    soft = torch.tensor((rng.uniform(0, 1, (16, 5)) * (rng.random((16, 5)) < 0.4))
                        .astype(np.float32))
    labels = torch.tensor(rng.integers(-1, 5, 16))
    dist = torch.tensor(rng.uniform(0, 4, 16).astype(np.float32))

    def every_loss(a, soft, labels, dist):
        return torch.stack([
            quality_focal_loss(a, soft, beta=0.5, reduction="sum"),
            varifocal_loss(a, soft, reduction="mean"),
            poly1_focal_loss(a, soft > 0, reduction="sum"),
            softmax_poly1_focal_loss(a, labels, alpha=0.25, reduction="mean"),
            sigmoid_focal_loss_star(a, soft, gamma=1.5, beta=0.5, reduction="sum"),
            distribution_focal_loss(a, dist, reduction="sum")])

    xe = x.clone().requires_grad_(True)
    eager = every_loss(xe, soft, labels, dist)
    eager.sum().backward()
    xc = x.clone().requires_grad_(True)
    out = torch.compile(every_loss, fullgraph=True)(xc, soft, labels, dist)
    out.sum().backward()
    np.testing.assert_allclose(out.detach().numpy(), eager.detach().numpy(), rtol=1e-5)
    np.testing.assert_allclose(xc.grad.numpy(), xe.grad.numpy(), rtol=1e-5, atol=1e-7)
