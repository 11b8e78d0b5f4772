"""Every loss under jax.jit / jax.vmap / jax.grad and torch.compile(fullgraph=True)."""

from __future__ import annotations

import numpy as np
import pytest

import focal_array as fa
from tests.helpers import require

RNG = np.random.default_rng(0)
X = RNG.normal(0, 3, (4, 6, 5)).astype(np.float32)
Y = (RNG.random((4, 6, 5)) < 0.2).astype(np.float32)
LABELS = RNG.integers(-1, 5, (4, 6))
W = RNG.random((4, 6, 1)).astype(np.float32)

# (name, callable(x, y_or_labels, weights)); every option family appears at least once
CASES = [
    ("sigmoid_focal", lambda x, y, w, lab: fa.sigmoid_focal_loss(x, y)),
    ("sigmoid_focal_mean_norm", lambda x, y, w, lab: fa.sigmoid_focal_loss(
        x, y, gamma=0.5, weights=w, reduction="mean", normalizer=7.0)),
    ("sigmoid_focal_smooth_sum", lambda x, y, w, lab: fa.sigmoid_focal_loss(
        x, y, alpha=None, gamma=3.0, label_smoothing=0.1, reduction="sum")),
    ("bce_mean", lambda x, y, w, lab: fa.binary_cross_entropy(x, y, weights=w,
                                                              reduction="mean")),
    ("softmax_focal", lambda x, y, w, lab: fa.softmax_focal_loss(x, lab, alpha=0.25)),
    ("softmax_focal_vec_mean", lambda x, y, w, lab: fa.softmax_focal_loss(
        x, lab, alpha=[0.1, 0.2, 0.3, 0.2, 0.2], gamma=1.5, reduction="mean")),
    ("softmax_focal_smooth", lambda x, y, w, lab: fa.softmax_focal_loss(
        x, lab, label_smoothing=0.1, gamma=0.5)),
    ("softmax_ce_sum", lambda x, y, w, lab: fa.softmax_cross_entropy(x, lab, reduction="sum")),
    ("softmax_ce_axis", lambda x, y, w, lab: fa.softmax_cross_entropy(
        x, lab[..., :5] % 6, axis=-2, label_smoothing=0.05)),
]


@pytest.mark.parametrize("name,fn", CASES, ids=[c[0] for c in CASES])
def test_jax_jit_vmap_grad(name, fn):
    jax = require("jax")
    import jax.numpy as jnp

    x, y, w, lab = (jnp.asarray(a) for a in (X, Y, W, LABELS))
    eager = fn(x, y, w, lab)
    jitted = jax.jit(fn)(x, y, w, lab)
    assert jitted.dtype == jnp.float32 and jitted.shape == eager.shape
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), rtol=2e-6, atol=1e-30)
    # vmap over the leading (image) axis equals a loop over images
    mapped = jax.vmap(fn)(x, y, w, lab)
    looped = jnp.stack([fn(x[i], y[i], w[i], lab[i]) for i in range(x.shape[0])])
    np.testing.assert_allclose(np.asarray(mapped), np.asarray(looped), rtol=2e-6, atol=1e-30)
    g_eager = jax.grad(lambda z: jnp.sum(fn(z, y, w, lab)))(x)
    g_jit = jax.jit(jax.grad(lambda z: jnp.sum(fn(z, y, w, lab))))(x)
    np.testing.assert_allclose(np.asarray(g_jit), np.asarray(g_eager), rtol=1e-5, atol=1e-30)
    assert np.all(np.isfinite(np.asarray(g_jit)))


def test_jax_second_derivative_finite_moderate_logits():
    jax = require("jax")
    import jax.numpy as jnp

    # second derivatives at saturated logits (|x| ≳ 40) may overflow for γ < 1: see docs
    x = jnp.asarray(np.array([-20.0, -5.0, 0.0, 5.0, 20.0], dtype=np.float32))
    for gamma in (0.0, 0.5, 2.0):
        for target in (0.0, 1.0):
            y = jnp.full_like(x, target)
            h = jax.vmap(jax.grad(jax.grad(lambda z, y=y, g=gamma: fa.sigmoid_focal_loss(
                z, y, gamma=g))))(x, y)
            assert np.all(np.isfinite(np.asarray(h))), (gamma, target, h)


# a graph without autograd is a second compile (~5 s each on 2 cores): one per formula kind
INFERENCE_GRAPH_CASES = {"sigmoid_focal", "softmax_focal", "softmax_focal_smooth"}


@pytest.mark.parametrize("name,fn", CASES, ids=[c[0] for c in CASES])
def test_torch_compile_fullgraph(name, fn):
    torch = require("torch")
    torch._dynamo.reset()
    x, y, w = (torch.from_numpy(a) for a in (X, Y, W))
    lab = torch.from_numpy(LABELS)
    eager = fn(x, y, w, lab)
    compiled = torch.compile(fn, fullgraph=True)
    if name in INFERENCE_GRAPH_CASES:
        out = compiled(x, y, w, lab)
        assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
        assert out.device == x.device and out.shape == eager.shape
        np.testing.assert_allclose(out.numpy(), eager.numpy(), rtol=1e-5, atol=1e-30)
    xg = x.clone().requires_grad_(True)
    out = compiled(xg, y, w, lab)
    assert out.dtype == torch.float32 and out.shape == eager.shape
    np.testing.assert_allclose(out.detach().numpy(), eager.numpy(), rtol=1e-5, atol=1e-30)
    out.sum().backward()
    xe = x.clone().requires_grad_(True)
    fn(xe, y, w, lab).sum().backward()
    np.testing.assert_allclose(xg.grad.numpy(), xe.grad.numpy(), rtol=1e-5, atol=1e-30)
