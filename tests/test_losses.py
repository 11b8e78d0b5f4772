"""Values, options and errors of focal_array.losses on every backend."""

from __future__ import annotations

import numpy as np
import pytest

import focal_array as fa
from tests import reference as ref
from tests.helpers import asarray, assert_close, has_autodiff, library, to_numpy, value_and_grad

TINY32 = float(np.finfo(np.float32).tiny)
GAMMAS = [0.0, 0.5, 1.0, 2.0, 5.0]


def _logits_grid(n_random=3000, seed=0):
    rng = np.random.default_rng(seed)
    return np.concatenate(
        [np.linspace(-100, 100, 4001), rng.normal(0, 4, n_random), rng.uniform(-100, 100,
                                                                               n_random),
         [0.0, -0.0, 1e-30, -1e-30]]
    ).astype(np.float32)


# ----------------------------------------------------------------- the seed's worked example

SEED_PROBS = np.array([[0.1, 0.9], [0.8, 0.2]])  # [P(background), P(person)]
SEED_LABELS = np.array([1, 0])  # a positive and a negative anchor


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_seed_example_softmax(xp, dtype):
    probs = asarray(xp, SEED_PROBS, dtype)
    labels = asarray(xp, SEED_LABELS)
    ce = fa.softmax_cross_entropy(probs, labels, from_logits=False)
    fl = fa.softmax_focal_loss(probs, labels, alpha=0.25, gamma=2.0, from_logits=False)
    # hand-derived: −log 0.9, −log 0.8; 0.25·0.1²·(−log 0.9), 0.75·0.2²·(−log 0.8)
    assert_close(ce, [-np.log(0.9), -np.log(0.8)], xp, dtype=dtype, rtol=1e-6)
    assert_close(fl, [0.25 * 0.01 * -np.log(0.9), 0.75 * 0.04 * -np.log(0.8)], xp,
                 dtype=dtype, rtol=1e-6)
    np.testing.assert_allclose(to_numpy(ce), [0.1054, 0.2231], atol=5e-5)
    np.testing.assert_allclose(to_numpy(fl), [0.0002634, 0.006694], atol=5e-7)
    # the same from logits: log-probabilities are logits of the same softmax
    logits = asarray(xp, np.log(SEED_PROBS), dtype)
    assert_close(fa.softmax_focal_loss(logits, labels, alpha=0.25), to_numpy(fl), xp,
                 dtype=dtype, rtol=2e-6)
    # the note averages over the two assigned anchors
    mean = fa.softmax_cross_entropy(probs, labels, from_logits=False, reduction="mean")
    assert_close(mean, (-np.log(0.9) - np.log(0.8)) / 2, xp, dtype=dtype, rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_seed_example_sigmoid(xp, dtype):
    p_person = asarray(xp, [0.9, 0.2], dtype)
    target = asarray(xp, [1.0, 0.0], dtype)
    ce = fa.binary_cross_entropy(p_person, target, from_logits=False)
    fl = fa.sigmoid_focal_loss(p_person, target, from_logits=False)
    np.testing.assert_allclose(to_numpy(ce), [0.1054, 0.2231], atol=5e-5)
    np.testing.assert_allclose(to_numpy(fl), [0.0002634, 0.006694], atol=5e-7)
    logits = asarray(xp, np.log([9.0, 0.25]), dtype)  # σ⁻¹(0.9), σ⁻¹(0.2)
    assert_close(fa.sigmoid_focal_loss(logits, target),
                 [0.25 * 0.01 * -np.log(0.9), 0.75 * 0.04 * -np.log(0.8)], xp, dtype=dtype,
                 rtol=2e-6)


# ----------------------------------------------------------------- accuracy vs float64


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("target", [0.0, 1.0])
def test_sigmoid_float32_matches_float64(xp, gamma, target):
    x = _logits_grid()
    y = np.full_like(x, target)
    want, want_grad = ref.sigmoid_focal(x, y, alpha=0.25, gamma=gamma)
    xs, ys = asarray(xp, x, "float32"), asarray(xp, y, "float32")
    loss = fa.sigmoid_focal_loss(xs, ys, gamma=gamma)
    assert_close(loss, want, xp, dtype="float32", rtol=2e-6, atol=TINY32)
    # boolean targets take the select-not-blend path: identical numbers
    yb = asarray(xp, y.astype(bool))
    assert np.array_equal(to_numpy(fa.sigmoid_focal_loss(xs, yb, gamma=gamma)), to_numpy(loss))
    if has_autodiff(xp):
        _, grad = value_and_grad(xp, lambda z: fa.sigmoid_focal_loss(z, ys, gamma=gamma), xs)
        assert_close(grad, want_grad, xp, dtype="float32", rtol=2e-6, atol=TINY32)
        _, grad_b = value_and_grad(xp, lambda z: fa.sigmoid_focal_loss(z, yb, gamma=gamma), xs)
        assert_close(grad_b, want_grad, xp, dtype="float32", rtol=2e-6, atol=TINY32)


@pytest.mark.parametrize("gamma", GAMMAS)
def test_softmax_float32_matches_float64(xp, gamma):
    rng = np.random.default_rng(1)
    n, c = 1500, 7
    x = np.concatenate([rng.uniform(-100, 100, (n, c)), rng.normal(0, 4, (n, c))])
    # a few rows where the labelled class dominates by a wide margin (p_t → 1)
    x[:50] = rng.normal(0, 1, (50, c))
    x[:50, 3] += np.linspace(5, 60, 50)
    x = x.astype(np.float32)
    labels = rng.integers(0, c, x.shape[0])
    labels[:50] = 3
    labels[60:70] = -1
    want, want_grad = ref.softmax_focal(x, labels, alpha=0.25, gamma=gamma)
    xs, ls = asarray(xp, x, "float32"), asarray(xp, labels)
    loss = fa.softmax_focal_loss(xs, ls, alpha=0.25, gamma=gamma)
    assert_close(loss, want, xp, dtype="float32", rtol=2e-6, atol=TINY32)
    if has_autodiff(xp):
        _, grad = value_and_grad(
            xp, lambda z: fa.softmax_focal_loss(z, ls, alpha=0.25, gamma=gamma), xs)
        # products of several small factors: XLA flushes subnormal intermediates to zero,
        # so gradients within a few smallest-normals of zero may read as 0 there
        assert_close(grad, want_grad, xp, dtype="float32", rtol=2e-6, atol=16 * TINY32)


@pytest.mark.parametrize("gamma", GAMMAS)
def test_soft_targets_match_reference(xp, gamma):
    rng = np.random.default_rng(2)
    x = rng.uniform(-30, 30, 4000)
    y = rng.uniform(0.001, 0.999, 4000)
    want, want_grad = ref.sigmoid_focal(x, y, alpha=0.25, gamma=gamma)
    xs, ys = asarray(xp, x, "float64"), asarray(xp, y, "float64")
    assert_close(fa.sigmoid_focal_loss(xs, ys, gamma=gamma), want, xp, dtype="float64",
                 rtol=1e-12)
    if has_autodiff(xp):
        _, grad = value_and_grad(xp, lambda z: fa.sigmoid_focal_loss(z, ys, gamma=gamma), xs)
        # the soft-target gradient crosses zero; compare with an absolute floor there
        assert_close(grad, want_grad, xp, dtype="float64", rtol=1e-10, atol=1e-14)
    xs32, ys32 = asarray(xp, x, "float32"), asarray(xp, y, "float32")
    want32, _ = ref.sigmoid_focal(x.astype(np.float32), y.astype(np.float32), gamma=gamma)
    assert_close(fa.sigmoid_focal_loss(xs32, ys32, gamma=gamma), want32, xp, dtype="float32",
                 rtol=2e-6, atol=TINY32)


@pytest.mark.parametrize("gamma", GAMMAS)
def test_extreme_logits_are_finite(xp, gamma):
    x = np.array([-1e4, -1e3, -100.0, -88.0, 0.0, 88.0, 100.0, 1e3, 1e4], dtype=np.float32)
    for target in (0.0, 1.0, 0.3):
        y = np.full_like(x, target)
        xs, ys = asarray(xp, x, "float32"), asarray(xp, y, "float32")
        loss = fa.sigmoid_focal_loss(xs, ys, gamma=gamma)
        assert np.all(np.isfinite(to_numpy(loss)))
        if has_autodiff(xp):
            _, g = value_and_grad(xp, lambda z, ys=ys: fa.sigmoid_focal_loss(z, ys, gamma=gamma),
                                  xs)
            assert np.all(np.isfinite(to_numpy(g))), (gamma, target, to_numpy(g))
    rows = asarray(xp, np.stack([x, -x, np.zeros_like(x)], axis=-1), "float32")
    labels = asarray(xp, np.arange(x.size) % 3)
    assert np.all(np.isfinite(to_numpy(fa.softmax_focal_loss(rows, labels, gamma=gamma))))
    if has_autodiff(xp):
        _, g = value_and_grad(xp, lambda z: fa.softmax_focal_loss(z, labels, gamma=gamma),
                              rows)
        assert np.all(np.isfinite(to_numpy(g)))


@pytest.mark.parametrize("half", ["float16", "bfloat16"])
def test_half_precision_computes_in_float32(xp, half):
    if not hasattr(xp, half):
        pytest.skip(f"{library(xp)} has no {half}")
    x = np.array([-80.0, -60.0, -3.0, 0.0, 2.5, 60.0, 80.0])
    y = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0])
    xs = xp.astype(asarray(xp, x, "float32"), getattr(xp, half))
    ys = xp.astype(asarray(xp, y, "float32"), getattr(xp, half))
    loss = fa.sigmoid_focal_loss(xs, ys, gamma=0.5)
    x_rounded = to_numpy(xp.astype(xs, xp.float32)).astype(np.float64)
    want, _ = ref.sigmoid_focal(x_rounded, y, gamma=0.5)
    assert_close(loss, want, xp, dtype="float32", rtol=2e-6, atol=TINY32)
    if has_autodiff(xp):
        _, g = value_and_grad(xp, lambda z: fa.sigmoid_focal_loss(z, ys, gamma=0.5), xs)
        assert g.dtype == getattr(xp, half)
        assert np.all(np.isfinite(to_numpy(xp.astype(g, xp.float32))))
    big = 6e4 if half == "float16" else 1e30  # near each format's largest finite value
    extreme = xp.astype(asarray(xp, [-big, big, -big, big], "float32"), getattr(xp, half))
    ey = xp.astype(asarray(xp, [0.0, 1.0, 1.0, 0.0], "float32"), getattr(xp, half))
    for gamma in GAMMAS:
        out = fa.sigmoid_focal_loss(extreme, ey, gamma=gamma)
        assert out.dtype == xp.float32 and np.all(np.isfinite(to_numpy(out)))
        if has_autodiff(xp):
            _, g = value_and_grad(xp, lambda z, g_=gamma: fa.sigmoid_focal_loss(z, ey, gamma=g_),
                                  extreme)
            assert np.all(np.isfinite(to_numpy(xp.astype(g, xp.float32))))


# ----------------------------------------------------------------- identities


def _random_case(seed=3, shape=(6, 5)):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 3, shape), (rng.random(shape) < 0.3).astype(np.float64)


def test_gamma_zero_is_cross_entropy(xp):
    x, y = _random_case()
    xs, ys = asarray(xp, x, "float64"), asarray(xp, y, "float64")
    for alpha in (None, 0.25):
        a = fa.sigmoid_focal_loss(xs, ys, gamma=0.0, alpha=alpha)
        b = fa.binary_cross_entropy(xs, ys, alpha=alpha)
        assert np.array_equal(to_numpy(a), to_numpy(b))
    labels = asarray(xp, np.array([0, 4, -1, 2, 1, 3]))
    a = fa.softmax_focal_loss(xs, labels, gamma=0.0, alpha=[0.1, 0.2, 0.3, 0.4, 0.5])
    b = fa.softmax_cross_entropy(xs, labels, alpha=[0.1, 0.2, 0.3, 0.4, 0.5])
    assert np.array_equal(to_numpy(a), to_numpy(b))


def test_alpha_none_is_unbalanced(xp):
    x, y = _random_case()
    xs, ys = asarray(xp, x, "float64"), asarray(xp, y, "float64")
    want, _ = ref.sigmoid_focal(x, y, alpha=None, gamma=2.0)
    assert_close(fa.sigmoid_focal_loss(xs, ys, alpha=None), want, xp, dtype="float64",
                 rtol=1e-12)
    # alpha = 0.5 is half of no balancing
    half = fa.sigmoid_focal_loss(xs, ys, alpha=0.5)
    assert_close(half, want / 2, xp, dtype="float64", rtol=1e-12)


def test_focal_over_ce_is_modulating_factor(xp):
    x, y = _random_case()
    xs, ys = asarray(xp, x, "float64"), asarray(xp, y, "float64")
    fl = to_numpy(fa.sigmoid_focal_loss(xs, ys, alpha=0.25, gamma=2.0))
    ce = to_numpy(fa.binary_cross_entropy(xs, ys))
    p = 1 / (1 + np.exp(-x))
    p_t = p * y + (1 - p) * (1 - y)
    a_t = 0.25 * y + 0.75 * (1 - y)
    np.testing.assert_allclose(fl / ce, a_t * (1 - p_t) ** 2, rtol=1e-10)
    labels = np.array([0, 4, 1, 2, 1, 3])
    sfl = to_numpy(fa.softmax_focal_loss(xs, asarray(xp, labels), gamma=2.0))
    sce = to_numpy(fa.softmax_cross_entropy(xs, asarray(xp, labels)))
    soft = np.exp(x) / np.exp(x).sum(-1, keepdims=True)
    np.testing.assert_allclose(sfl / sce, (1 - soft[np.arange(6), labels]) ** 2, rtol=1e-10)


def test_label_smoothing(xp):
    x, y = _random_case(seed=4)
    xs, ys = asarray(xp, x, "float64"), asarray(xp, y, "float64")
    want, _ = ref.sigmoid_focal(x, y, gamma=2.0, label_smoothing=0.1)
    assert_close(fa.sigmoid_focal_loss(xs, ys, label_smoothing=0.1), want, xp,
                 dtype="float64", rtol=1e-12)
    labels = np.array([0, 4, -1, 2, 1, 3])
    for alpha in (None, 0.25, [0.1, 0.2, 0.3, 0.4, 0.5]):
        for gamma in (0.0, 2.0):
            want = ref.softmax_focal_smoothed(x, labels, alpha=alpha, gamma=gamma,
                                              label_smoothing=0.2)
            got = fa.softmax_focal_loss(xs, asarray(xp, labels), alpha=alpha, gamma=gamma,
                                        label_smoothing=0.2)
            assert_close(got, want, xp, dtype="float64", rtol=1e-12)
    # from probabilities, the smoothed CE is −Σ t_j log p_j
    probs = np.exp(x) / np.exp(x).sum(-1, keepdims=True)
    got = fa.softmax_cross_entropy(asarray(xp, probs, "float64"), asarray(xp, labels),
                                   from_logits=False, label_smoothing=0.2)
    want = ref.softmax_focal_smoothed(x, labels, gamma=0.0, label_smoothing=0.2)
    assert_close(got, want, xp, dtype="float64", rtol=1e-10)


def test_softmax_alpha_forms_and_axis(xp):
    rng = np.random.default_rng(5)
    x = rng.normal(0, 2, (4, 3, 6))
    labels = rng.integers(-1, 3, (4, 6))
    xs, ls = asarray(xp, x, "float64"), asarray(xp, labels)
    moved = np.moveaxis(x, 1, -1)
    for alpha in (None, 0.25, [0.2, 0.5, 0.3]):
        want, _ = ref.softmax_focal(moved, labels, alpha=alpha, gamma=1.5)
        got = fa.softmax_focal_loss(xs, ls, alpha=alpha, gamma=1.5, axis=1)
        assert_close(got, want, xp, dtype="float64", rtol=1e-12)
    vec = asarray(xp, [0.2, 0.5, 0.3], "float64")
    want, _ = ref.softmax_focal(moved, labels, alpha=[0.2, 0.5, 0.3], gamma=1.5)
    assert_close(fa.softmax_focal_loss(xs, ls, alpha=vec, gamma=1.5, axis=-2), want, xp,
                 dtype="float64", rtol=1e-12)


def test_softmax_probabilities_match_logits(xp):
    rng = np.random.default_rng(6)
    x = rng.normal(0, 2, (10, 5))
    probs = np.exp(x) / np.exp(x).sum(-1, keepdims=True)
    labels = asarray(xp, rng.integers(0, 5, 10))
    a = fa.softmax_focal_loss(asarray(xp, x, "float64"), labels, alpha=0.3)
    b = fa.softmax_focal_loss(asarray(xp, probs, "float64"), labels, alpha=0.3,
                              from_logits=False)
    assert_close(a, to_numpy(b), xp, dtype="float64", rtol=1e-12)


# ----------------------------------------------------------------- weights and reductions


def test_reductions(xp):
    x, y = _random_case(seed=7)
    w = np.random.default_rng(7).random((6, 1))
    want, _ = ref.sigmoid_focal(x, y)
    xs, ys, ws = (asarray(xp, a, "float64") for a in (x, y, w))
    kw = {"weights": ws}
    assert_close(fa.sigmoid_focal_loss(xs, ys, **kw), want * w, xp, dtype="float64",
                 rtol=1e-12)
    assert_close(fa.sigmoid_focal_loss(xs, ys, reduction="sum", **kw), np.sum(want * w), xp,
                 dtype="float64", rtol=1e-12)
    assert_close(fa.sigmoid_focal_loss(xs, ys, reduction="mean", **kw),
                 np.sum(want * w) / np.sum(np.broadcast_to(w, want.shape)), xp,
                 dtype="float64", rtol=1e-12)
    assert_close(fa.sigmoid_focal_loss(xs, ys, reduction="mean"), np.mean(want), xp,
                 dtype="float64", rtol=1e-12)
    for n in (7, 0.5, asarray(xp, 7), asarray(xp, 3.0, "float32")):
        got = fa.sigmoid_focal_loss(xs, ys, reduction="mean", normalizer=n)
        n_val = float(to_numpy(n)) if not isinstance(n, (int, float)) else n
        assert_close(got, np.sum(want) / max(n_val, 1.0), xp, dtype="float64", rtol=1e-12)


def test_softmax_mean_counts_only_labelled(xp):
    x, _ = _random_case(seed=8)
    labels = np.array([0, -1, 3, -2, 1, 4])
    want, _ = ref.softmax_focal(x, labels, gamma=2.0)
    xs, ls = asarray(xp, x, "float64"), asarray(xp, labels)
    got = fa.softmax_focal_loss(xs, ls, reduction="mean")
    assert_close(got, want.sum() / 4, xp, dtype="float64", rtol=1e-12)
    w = np.array([1.0, 5.0, 2.0, 5.0, 0.5, 1.0])
    got = fa.softmax_focal_loss(xs, ls, reduction="mean", weights=asarray(xp, w, "float64"))
    valid = labels >= 0
    assert_close(got, np.sum(want * w) / np.sum(w[valid]), xp, dtype="float64", rtol=1e-12)


def test_mean_over_zero_weights_is_zero_with_zero_gradient(xp):
    x, y = _random_case(seed=9)
    xs, ys = asarray(xp, x, "float64"), asarray(xp, y, "float64")
    zeros = asarray(xp, np.zeros((6, 5)), "float64")
    out = fa.sigmoid_focal_loss(xs, ys, weights=zeros, reduction="mean")
    assert_close(out, 0.0, xp, dtype="float64")
    all_ignored = asarray(xp, np.full(6, -1))
    out2 = fa.softmax_cross_entropy(xs, all_ignored, reduction="mean")
    assert_close(out2, 0.0, xp, dtype="float64")
    if has_autodiff(xp):
        _, g = value_and_grad(
            xp, lambda z: fa.sigmoid_focal_loss(z, ys, weights=zeros, reduction="mean"), xs)
        assert_close(g, np.zeros((6, 5)), xp, dtype="float64")
        _, g = value_and_grad(
            xp, lambda z: fa.softmax_cross_entropy(z, all_ignored, reduction="mean"), xs)
        assert_close(g, np.zeros((6, 5)), xp, dtype="float64")


def test_nan_propagates(xp):
    x = np.array([[0.5, np.nan], [1.0, 2.0]])
    xs = asarray(xp, x, "float32")
    y = asarray(xp, np.eye(2), "float32")
    out = to_numpy(fa.sigmoid_focal_loss(xs, y))
    assert np.isnan(out[0, 1]) and np.all(np.isfinite(out[1]))
    assert np.isnan(to_numpy(fa.sigmoid_focal_loss(xs, y, reduction="sum")))
    per = to_numpy(fa.softmax_focal_loss(xs, asarray(xp, np.array([0, 1]))))
    assert np.isnan(per[0]) and np.isfinite(per[1])
    # a weight of zero does not hide a NaN
    w = asarray(xp, np.array([[1.0, 0.0], [1.0, 1.0]]), "float32")
    assert np.isnan(to_numpy(fa.sigmoid_focal_loss(xs, y, weights=w, reduction="sum")))


def test_result_keeps_library_dtype_device(xp):
    for dtype in ("float32", "float64"):
        xs = asarray(xp, np.zeros((3, 4)), dtype)
        out = fa.sigmoid_focal_loss(xs, xs, reduction="mean")
        assert library(xp) == library(__import__("array_api_compat").array_namespace(out))
        assert out.dtype == getattr(xp, dtype)
        assert fa._namespace.device_of(out) == fa._namespace.device_of(xs)
        assert out.shape == ()


def test_one_hot(xp):
    labels = asarray(xp, np.array([[2, -1], [0, -2]]))
    out = fa.one_hot(labels, 3)
    want = np.array([[[0, 0, 1], [0, 0, 0]], [[1, 0, 0], [0, 0, 0]]], dtype=np.float64)
    assert_close(out, want, xp, dtype="float32")
    assert fa.one_hot(labels, 3, dtype=xp.float64).dtype == xp.float64
    with pytest.raises(ValueError, match="labels must be < num_classes = 2"):
        fa.one_hot(labels, 2)
    with pytest.raises(ValueError, match="num_classes must be a positive integer"):
        fa.one_hot(labels, 0)
    with pytest.raises(TypeError, match="labels must have an integer dtype"):
        fa.one_hot(asarray(xp, [1.0], "float32"), 3)


# ----------------------------------------------------------------- bad input


def test_bad_input_errors(xp):
    x = asarray(xp, np.zeros((4, 3)), "float32")
    y = asarray(xp, np.zeros((4, 3)), "float32")
    labels = asarray(xp, np.zeros(4, dtype=np.int64))
    with pytest.raises(TypeError, match="logits must have a real floating dtype"):
        fa.sigmoid_focal_loss(asarray(xp, np.zeros((4, 3), dtype=np.int32)), y)
    with pytest.raises(TypeError, match="logits must have a real floating dtype"):
        fa.softmax_cross_entropy(asarray(xp, np.zeros((4, 3), dtype=bool)), labels)
    with pytest.raises(ValueError, match=r"targets must have shape \(4, 3\)"):
        fa.sigmoid_focal_loss(x, asarray(xp, np.zeros((4, 2)), "float32"))
    with pytest.raises(ValueError, match=r"labels must have shape \(4,\)"):
        fa.softmax_focal_loss(x, asarray(xp, np.zeros(3, dtype=np.int64)))
    with pytest.raises(TypeError, match="labels must have an integer dtype"):
        fa.softmax_focal_loss(x, asarray(xp, np.zeros(4), "float32"))
    with pytest.raises(ValueError, match=r"weights with shape \(5,\) does not broadcast"):
        fa.sigmoid_focal_loss(x, y, weights=asarray(xp, np.ones(5), "float32"))
    with pytest.raises(ValueError, match="gamma must be in"):
        fa.sigmoid_focal_loss(x, y, gamma=-0.5)
    with pytest.raises(ValueError, match="alpha must be in"):
        fa.sigmoid_focal_loss(x, y, alpha=1.5)
    with pytest.raises(ValueError, match=r"alpha\[1\] must be in"):
        fa.softmax_focal_loss(x, labels, alpha=[0.1, 2.0, 0.3])
    with pytest.raises(ValueError, match=r"alpha as a per-class vector must have shape \(3,\)"):
        fa.softmax_focal_loss(x, labels, alpha=[0.1, 0.2])
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        fa.sigmoid_focal_loss(x, y, label_smoothing=1.0)
    with pytest.raises(ValueError, match="reduction must be one of"):
        fa.sigmoid_focal_loss(x, y, reduction="avg")
    with pytest.raises(ValueError, match="normalizer must be in"):
        fa.sigmoid_focal_loss(x, y, reduction="mean", normalizer=-1)
    with pytest.raises(ValueError, match="normalizer must be a finite number >= 0"):
        fa.sigmoid_focal_loss(x, y, reduction="mean", normalizer=asarray(xp, -2.0, "float32"))
    with pytest.raises(ValueError, match="normalizer is only used with reduction='mean'"):
        fa.sigmoid_focal_loss(x, y, reduction="sum", normalizer=3)
    with pytest.raises(ValueError, match="labels must be < num_classes = 3"):
        fa.softmax_focal_loss(x, asarray(xp, np.array([0, 1, 3, 2])))
    with pytest.raises(ValueError, match="targets must be in"):
        fa.sigmoid_focal_loss(x, asarray(xp, np.full((4, 3), 2.0), "float32"))
    with pytest.raises(ValueError, match="from_logits=False, logits must hold probabilities"):
        fa.sigmoid_focal_loss(asarray(xp, np.full((4, 3), -0.5), "float32"), y,
                              from_logits=False)
    with pytest.raises(ValueError, match="axis=2 is out of range"):
        fa.softmax_focal_loss(x, labels, axis=2)


def test_mixed_libraries_error(xp):
    if library(xp) == "numpy":
        pytest.skip("needs a second library")
    x = asarray(xp, np.zeros((2, 3)), "float32")
    with pytest.raises(TypeError, match=r"'logits' is a .*'targets' is a numpy\.ndarray"):
        fa.sigmoid_focal_loss(x, np.zeros((2, 3), dtype=np.float32))
    with pytest.raises(TypeError, match=r"'labels' is a numpy\.ndarray"):
        fa.softmax_focal_loss(x, np.zeros(2, dtype=np.int64))
