"""The softmax losses' PyTorch-style targets: ``class_weights`` with ``F.cross_entropy``'s
"mean", ``ignore_index`` (any integer), probability targets, unsigned and int32 labels.

References: a float64 transcription of ``torch.nn.functional.cross_entropy``'s documented
definition (weights, ignore_index, label_smoothing, probability targets) below, PyTorch
itself and optax as peers.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import asarray, assert_close, has_autodiff, library, require, to_numpy, value_and_grad

import focal_array as fa

C = 5


def _torch_rule(x, target, *, weight=None, ignore_index=-100, label_smoothing=0.0,
                reduction="mean", gamma=0.0):
    """F.cross_entropy's definition in float64, written from its documentation, with a
    focal factor (1 − p_j)^γ on each class's term (γ = 0: PyTorch exactly).

    Class indices: ℓ_n = Σ_c w_c t_nc (1 − p_nc)^γ (−log p_nc), t = (1 − ε) onehot + ε / C;
    "mean" divides by Σ_n w_{y_n} over rows not ignored. Probability targets: the same sum
    with t = (1 − ε) y + ε / C; "mean" divides by the number of rows.
    """
    x = np.asarray(x, np.float64)
    c = x.shape[-1]
    w = np.ones(c) if weight is None else np.asarray(weight, np.float64)
    log_p = x - x.max(-1, keepdims=True)
    log_p = log_p - np.log(np.exp(log_p).sum(-1, keepdims=True))
    mod = (1.0 - np.exp(log_p)) ** gamma
    target = np.asarray(target)
    if np.issubdtype(target.dtype, np.floating):
        t = (1 - label_smoothing) * target.astype(np.float64) + label_smoothing / c
        loss = np.sum(w * t * mod * -log_p, -1)
        denom = loss.size
    else:
        keep = (target != ignore_index) & (target >= 0)
        safe = np.where(keep, target, 0)
        onehot = np.arange(c) == safe[..., None]
        t = (1 - label_smoothing) * onehot + label_smoothing / c
        loss = np.where(keep, np.sum(w * t * mod * -log_p, -1), 0.0)
        denom = np.sum(np.where(keep, w[safe], 0.0))
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / denom


def _case(seed=0, n=11):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, C)) * 3
    y = rng.integers(0, C, n)
    y[[1, 6]] = 255
    w = rng.uniform(0.2, 2.0, C)
    soft = rng.dirichlet(np.ones(C), n)
    return x, y, w, soft


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_class_weights_and_ignore_index_match_the_torch_rule(xp, reduction, smoothing, gamma):
    x, y, w, _ = _case()
    want = _torch_rule(x, y, weight=w, ignore_index=255, label_smoothing=smoothing,
                       reduction=reduction, gamma=gamma)
    got = fa.softmax_focal_loss(asarray(xp, x, "float64"), asarray(xp, y),
                                class_weights=asarray(xp, w, "float64"), ignore_index=255,
                                label_smoothing=smoothing, reduction=reduction, gamma=gamma)
    assert_close(got, want, xp, dtype="float64", rtol=1e-12, atol=1e-15)
    # a sequence of numbers is the same vector; float32 within its rounding
    got32 = fa.softmax_focal_loss(asarray(xp, x, "float32"), asarray(xp, y),
                                  class_weights=list(w), ignore_index=255,
                                  label_smoothing=smoothing, reduction=reduction, gamma=gamma)
    assert_close(got32, want, xp, dtype="float32", rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_probability_targets_match_the_torch_rule(xp, reduction, smoothing):
    x, _, w, soft = _case(1)
    for weight in (None, w):
        want = _torch_rule(x, soft, weight=weight, label_smoothing=smoothing,
                           reduction=reduction)
        got = fa.softmax_cross_entropy(
            asarray(xp, x, "float64"), asarray(xp, soft, "float64"), reduction=reduction,
            class_weights=None if weight is None else asarray(xp, weight, "float64"),
            label_smoothing=smoothing)
        assert_close(got, want, xp, dtype="float64", rtol=1e-12, atol=1e-15)


def test_one_hot_targets_equal_class_indices(xp):
    """Probability targets that are one-hot give the class-index loss (focal too, with α)."""
    x, y, _, _ = _case(2)
    y = np.where(y == 255, 0, y)
    onehot = np.eye(C)[y]
    for kw in ({}, {"alpha": 0.25, "gamma": 2.0}, {"label_smoothing": 0.1, "gamma": 1.0}):
        a = fa.softmax_focal_loss(asarray(xp, x, "float64"), asarray(xp, y), **kw)
        b = fa.softmax_focal_loss(asarray(xp, x, "float64"), asarray(xp, onehot, "float64"),
                                  **kw)
        assert_close(b, to_numpy(a), xp, dtype="float64", rtol=1e-12, atol=1e-15)


def test_probability_targets_from_probabilities(xp):
    x, _, _, soft = _case(3)
    p = np.exp(x - x.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    want = _torch_rule(x, soft, reduction="none", gamma=2.0)
    got = fa.softmax_focal_loss(asarray(xp, p, "float64"), asarray(xp, soft, "float64"),
                                from_logits=False)
    assert_close(got, want, xp, dtype="float64", rtol=1e-10)


def test_class_axis_one_and_mask_labels(xp):
    """(N, C, H, W) logits with a uint8 mask whose 255 is ignored, as in segmentation."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, C, 3, 4))
    y = rng.integers(0, C, (2, 3, 4)).astype(np.uint8)
    y[0, 1, 2] = y[1, 0, 0] = 255
    w = rng.uniform(0.5, 1.5, C)
    moved = np.moveaxis(x, 1, -1)
    want = _torch_rule(moved, y.astype(np.int64), weight=w, ignore_index=255,
                       label_smoothing=0.05)
    got = fa.softmax_cross_entropy(asarray(xp, x, "float64"), asarray(xp, y), axis=1,
                                   class_weights=asarray(xp, w, "float64"), ignore_index=255,
                                   label_smoothing=0.05, reduction="mean")
    assert_close(got, want, xp, dtype="float64", rtol=1e-12)


def test_int32_labels(xp):
    x, y, _, _ = _case(5)
    y = np.where(y == 255, -1, y)
    want = _torch_rule(x, y, reduction="none")
    got = fa.softmax_cross_entropy(asarray(xp, x, "float64"), asarray(xp, y.astype(np.int32)))
    assert_close(got, want, xp, dtype="float64", rtol=1e-12, atol=1e-15)


def test_ignore_index_a_dtype_cannot_hold_matches_nothing(xp):
    """ignore_index=-100 (PyTorch's default) on uint8 labels ignores nothing."""
    x, y, _, _ = _case(6)
    y = np.where(y == 255, 0, y).astype(np.uint8)
    want = _torch_rule(x, y.astype(np.int64))
    got = fa.softmax_cross_entropy(asarray(xp, x, "float64"), asarray(xp, y),
                                   ignore_index=-100, reduction="mean")
    assert_close(got, want, xp, dtype="float64", rtol=1e-12)


def test_gradients_match_the_torch_rule(xp):
    if not has_autodiff(xp):
        pytest.skip(f"{library(xp)} has no autodiff")
    torch = require("torch")
    x, y, w, soft = _case(7)

    def ref(target, **kw):
        xt = torch.tensor(x, requires_grad=True)
        torch.nn.functional.cross_entropy(xt, torch.tensor(target), **kw).backward()
        return xt.grad.numpy()

    wt = asarray(xp, w, "float64")
    _, g = value_and_grad(xp, lambda z: fa.softmax_cross_entropy(
        z, asarray(xp, y), class_weights=wt, ignore_index=255, label_smoothing=0.1,
        reduction="mean"), asarray(xp, x, "float64"))
    assert_close(g, ref(y, weight=torch.tensor(w), ignore_index=255, label_smoothing=0.1), xp,
                 dtype="float64", rtol=1e-10, atol=1e-14)
    _, g = value_and_grad(xp, lambda z: fa.softmax_cross_entropy(
        z, asarray(xp, soft, "float64"), class_weights=wt, reduction="mean"),
        asarray(xp, x, "float64"))
    assert_close(g, ref(soft, weight=torch.tensor(w)), xp, dtype="float64", rtol=1e-10,
                 atol=1e-14)


def test_jit_and_compile(xp):
    x, y, w, soft = _case(8)
    want = _torch_rule(x, y, weight=w, ignore_index=255, label_smoothing=0.1)
    want_soft = _torch_rule(x, soft, weight=w)
    lib = library(xp)
    if lib == "jax":
        import jax

        def f(a, b, c):
            return fa.softmax_cross_entropy(a, b, class_weights=c, ignore_index=255,
                                            label_smoothing=0.1, reduction="mean")

        fn = jax.jit(f)
        g = jax.jit(lambda a, b, c: fa.softmax_cross_entropy(a, b, class_weights=c,
                                                             reduction="mean"))
    elif lib == "torch":
        import torch

        def f(a, b, c):
            return fa.softmax_cross_entropy(a, b, class_weights=c, ignore_index=255,
                                            label_smoothing=0.1, reduction="mean")

        def f_soft(a, b, c):
            return fa.softmax_cross_entropy(a, b, class_weights=c, reduction="mean")

        torch._dynamo.reset()
        fn = torch.compile(f, fullgraph=True, backend="aot_eager")
        g = torch.compile(f_soft, fullgraph=True, backend="aot_eager")
    else:
        pytest.skip(f"{lib} has no compiler")
    args = (asarray(xp, x, "float32"), asarray(xp, y), asarray(xp, w, "float32"))
    assert_close(fn(*args), want, xp, dtype="float32", rtol=2e-6)
    args = (asarray(xp, x, "float32"), asarray(xp, soft, "float32"), asarray(xp, w, "float32"))
    assert_close(g(*args), want_soft, xp, dtype="float32", rtol=2e-6)


def test_torch_peer():
    """PyTorch's own F.cross_entropy, the number a user migrating from it expects."""
    torch = require("torch")
    F = torch.nn.functional
    x, y, w, soft = _case(9)
    xt, wt = torch.tensor(x), torch.tensor(w)
    for eps in (0.0, 0.1):
        for red in ("none", "sum", "mean"):
            want = F.cross_entropy(xt, torch.tensor(y), weight=wt, ignore_index=255,
                                   label_smoothing=eps, reduction=red)
            got = fa.softmax_cross_entropy(xt, torch.tensor(y), class_weights=wt,
                                           ignore_index=255, label_smoothing=eps,
                                           reduction=red)
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
            want = F.cross_entropy(xt, torch.tensor(soft), weight=wt, label_smoothing=eps,
                                   reduction=red)
            got = fa.softmax_cross_entropy(xt, torch.tensor(soft), class_weights=wt,
                                           label_smoothing=eps, reduction=red)
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)


def test_optax_peer():
    """optax's softmax_cross_entropy (probability targets) and its integer-label twin."""
    optax = require("optax")
    jnp = require("jax.numpy")
    x, y, _, soft = _case(10)
    y = np.where(y == 255, 0, y)
    xj = jnp.asarray(x, jnp.float32)
    want = optax.softmax_cross_entropy(xj, jnp.asarray(soft, jnp.float32))
    got = fa.softmax_cross_entropy(xj, jnp.asarray(soft, jnp.float32))
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=2e-6)
    want = optax.softmax_cross_entropy_with_integer_labels(xj, jnp.asarray(y))
    got = fa.softmax_cross_entropy(xj, jnp.asarray(y))
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=2e-6)


def test_bad_inputs(xp):
    x = asarray(xp, np.zeros((4, 3)), "float32")
    labels = asarray(xp, np.array([0, 1, 2, 255]))
    with pytest.raises(TypeError, match="ignore_index must be None or an integer"):
        fa.softmax_cross_entropy(x, labels, ignore_index=2.5)
    with pytest.raises(TypeError, match="ignore_index must be None or an integer"):
        fa.softmax_cross_entropy(x, labels, ignore_index=True)
    with pytest.raises(ValueError, match=r"labels must be < num_classes = 3 \(negative "
                                         r"labels and labels equal to ignore_index = 7"):
        fa.softmax_cross_entropy(x, labels, ignore_index=7)
    with pytest.raises(ValueError, match=r"class_weights as a per-class vector must have "
                                         r"shape \(3,\)"):
        fa.softmax_cross_entropy(x, labels, ignore_index=255, class_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="class_weights must be finite and >= 0"):
        fa.softmax_cross_entropy(x, labels, ignore_index=255,
                                 class_weights=asarray(xp, np.array([1.0, -1.0, 1.0]),
                                                       "float32"))
    with pytest.raises(ValueError, match=r"class_weights\[1\] must be in"):
        fa.softmax_cross_entropy(x, labels, ignore_index=255, class_weights=[1.0, -1.0, 1.0])
    with pytest.raises(TypeError, match="class_weights must be None"):
        fa.softmax_cross_entropy(x, labels, ignore_index=255, class_weights="balanced")
    soft = asarray(xp, np.full((4, 3), 1 / 3), "float32")
    with pytest.raises(ValueError, match="ignore_index applies to integer class labels only"):
        fa.softmax_cross_entropy(x, soft, ignore_index=255)
    with pytest.raises(ValueError, match="targets must be in"):
        fa.softmax_cross_entropy(x, asarray(xp, np.full((4, 3), 1.5), "float32"))
    with pytest.raises(TypeError, match="labels must have an integer dtype for class indices"):
        fa.softmax_cross_entropy(x, asarray(xp, np.zeros(4), "float32"))
    with pytest.raises(ValueError, match=r"labels must have shape \(4, 3\)"):
        fa.softmax_cross_entropy(x, asarray(xp, np.zeros((4, 2)), "float32"))
