"""The JAX fast path of the sigmoid focal loss (``focal_array._fused_jax``).

It must give the generic formula's numbers (values, first and second derivatives, forward
mode, derivatives with respect to soft targets) under jit and vmap; the float64 references
of ``tests/reference.py`` check the values independently.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import require
from reference import sigmoid_focal as ref_sigmoid_focal

import focal_array as fa
from focal_array import _fused

jax = require("jax")
jnp = require("jax.numpy")

RNG = np.random.default_rng(7)
X = np.concatenate([np.array([0.0, -0.0, 1e-30, -1e-30, 100.0, -100.0, 40.0, -40.0]),
                    RNG.normal(scale=6.0, size=56)]).astype(np.float32).reshape(8, 8)
Y_HARD = (RNG.random((8, 8)) < 0.3)
Y_SOFT = RNG.random((8, 8)).astype(np.float32)
TINY = float(np.finfo(np.float32).smallest_normal)
GAMMAS = (0.0, 0.5, 1.0, 2.0, 5.0)


@pytest.fixture
def generic(monkeypatch):
    """Run a function with the fast paths switched off (the generic xp formula)."""
    def run(f, *args):
        monkeypatch.setattr(_fused, "ENABLED", False)
        try:
            return f(*args)
        finally:
            monkeypatch.setattr(_fused, "ENABLED", True)
    return run


def _loss(gamma, alpha):
    return lambda x, y: fa.sigmoid_focal_loss(x, y, gamma=gamma, alpha=alpha)


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("alpha", [0.25, None])
@pytest.mark.parametrize("kind", ["bool", "hard", "soft"])
def test_values_and_gradients_match_reference_and_generic(gamma, alpha, kind, generic):
    y = {"bool": Y_HARD, "hard": Y_HARD.astype(np.float32), "soft": Y_SOFT}[kind]
    x, t = jnp.asarray(X), jnp.asarray(y)
    f = _loss(gamma, alpha)
    grad = jax.jit(jax.grad(lambda z, t: jnp.sum(f(z, t))))
    loss, g = jax.jit(f)(x, t), grad(x, t)
    want, want_g = ref_sigmoid_focal(X, y, alpha=alpha, gamma=gamma)
    # a soft target's gradient crosses zero: an absolute floor at its scale there
    g_floor = TINY if kind != "soft" else 2e-6 * np.max(np.abs(want_g))
    np.testing.assert_allclose(np.asarray(loss), want, rtol=2e-6, atol=TINY)
    np.testing.assert_allclose(np.asarray(g), want_g, rtol=2e-6, atol=g_floor)
    gen_loss = generic(jax.jit(f), x, t)
    gen_g = generic(grad, x, t)
    np.testing.assert_allclose(np.asarray(loss), np.asarray(gen_loss), rtol=1e-6, atol=TINY)
    np.testing.assert_allclose(np.asarray(g), np.asarray(gen_g), rtol=2e-6, atol=g_floor)


def test_gradient_at_zero_is_exact():
    # σ'(0) = 1/4: with γ = 0 and α = None, d BCE/dx at 0 is σ(0) − y = ±1/2
    x = jnp.zeros(2, jnp.float32)
    y = jnp.asarray([1.0, 0.0], jnp.float32)
    g = jax.grad(lambda z: jnp.sum(fa.binary_cross_entropy(z, y)))(x)
    np.testing.assert_array_equal(np.asarray(g), [-0.5, 0.5])
    # second derivative of BCE is σ'(x) = 1/4 at 0, through the custom JVP's own rule
    h = jax.vmap(jax.grad(jax.grad(lambda z, t: fa.binary_cross_entropy(z, t))))(x, y)
    np.testing.assert_array_equal(np.asarray(h), [0.25, 0.25])


@pytest.mark.parametrize("kind", ["bool", "soft"])
def test_second_derivatives_match_generic(kind, generic):
    y = Y_HARD if kind == "bool" else Y_SOFT
    xm = jnp.asarray(np.clip(X, -20, 20))  # the library's γ < 1 limit: docs/math.md
    t = jnp.asarray(y)
    for gamma in (0.5, 2.0):
        f = _loss(gamma, 0.25)
        h = jax.vmap(jax.vmap(jax.grad(jax.grad(f))))
        got = jax.jit(h)(xm, t)
        want = generic(h, xm, t)
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=TINY)
        assert np.all(np.isfinite(np.asarray(got)))


def test_forward_mode_matches_reverse_mode():
    x, t = jnp.asarray(X[0]), jnp.asarray(Y_SOFT[0])
    f = _loss(2.0, 0.25)
    jf = jax.jacfwd(f)(x, t)
    jr = jax.jacrev(f)(x, t)
    np.testing.assert_allclose(np.asarray(jf), np.asarray(jr), rtol=1e-6, atol=TINY)
    assert np.count_nonzero(np.asarray(jf) - np.diag(np.diag(np.asarray(jf)))) == 0


def test_gradient_reaches_soft_targets(generic):
    # soft targets that are themselves differentiated (e.g. a teacher's probabilities)
    x, t = jnp.asarray(X), jnp.asarray(Y_SOFT)
    f = _loss(2.0, 0.25)
    gx, gy = jax.grad(lambda a, b: jnp.sum(f(a, b)), argnums=(0, 1))(x, t)
    want_x, want_y = generic(jax.grad(lambda a, b: jnp.sum(f(a, b)), argnums=(0, 1)), x, t)
    np.testing.assert_allclose(np.asarray(gy), np.asarray(want_y), rtol=1e-6, atol=TINY)
    floor = 2e-6 * np.max(np.abs(np.asarray(want_x)))  # crosses zero: see above
    np.testing.assert_allclose(np.asarray(gx), np.asarray(want_x), rtol=2e-6, atol=floor)
    assert np.any(np.asarray(gy) != 0)


def test_vmap_and_reductions(generic):
    x, t = jnp.asarray(X), jnp.asarray(Y_HARD)

    def f(z, y):
        return fa.sigmoid_focal_loss(z, y, reduction="mean", normalizer=3.0)

    per_row = jax.vmap(jax.value_and_grad(f))(x, t)
    want = generic(jax.vmap(jax.value_and_grad(f)), x, t)
    for a, b in zip(per_row, want, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=TINY)


def test_extremes_and_nan():
    x = jnp.asarray([1e4, -1e4, 3e38, -3e38, np.nan], jnp.float32)
    for y in (jnp.asarray([1.0, 0.0, 1.0, 0.0, 1.0]), jnp.asarray([1, 0, 1, 0, 1], bool)):
        for gamma in (0.0, 0.5, 2.0):
            def total(z, y=y, gamma=gamma, n=5):
                return jnp.sum(fa.sigmoid_focal_loss(z[:n], y[:n], gamma=gamma))

            loss, g = jax.value_and_grad(lambda z, f=total: f(z, n=4))(x)
            assert np.isfinite(float(loss)) and np.all(np.isfinite(np.asarray(g[:4])))
            assert np.isnan(np.asarray(fa.sigmoid_focal_loss(x, y, gamma=gamma))[4])
            assert np.isnan(np.asarray(jax.grad(total)(x))[4])


def test_value_and_grad_function_uses_fast_terms(generic):
    from focal_array.gradients import sigmoid_focal_loss_value_and_grad as vg

    x, t = jnp.asarray(X), jnp.asarray(Y_SOFT)
    loss, g = jax.jit(lambda a, b: vg(a, b, gamma=0.5, reduction="sum"))(x, t)
    want_loss, want_g = generic(lambda a, b: vg(a, b, gamma=0.5, reduction="sum"), x, t)
    np.testing.assert_allclose(float(loss), float(want_loss), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(g), np.asarray(want_g), rtol=1e-6, atol=TINY)


def test_gradient_pass_keeps_no_full_size_intermediates():
    # XLA's memory plan: the value-and-gradient of the summed loss holds the gradient
    # (1× the logits) and nothing else of full size
    x = jnp.zeros((512, 80), jnp.float32)
    for y in (jnp.zeros((512, 80), jnp.float32), jnp.zeros((512, 80), bool)):
        f = jax.jit(jax.value_and_grad(lambda z, t: fa.sigmoid_focal_loss(z, t,
                                                                          reduction="sum")))
        mem = f.lower(x, y).compile().memory_analysis()
        if mem is None:
            pytest.skip("this jaxlib reports no memory analysis")
        extra = mem.temp_size_in_bytes + mem.output_size_in_bytes
        limit = 2 if y.dtype == jnp.bool_ else 1  # bool: one float copy of the mask
        assert extra <= limit * x.nbytes + 4096, (y.dtype, extra / x.nbytes)


def test_labels_path_equals_the_boolean_mask(generic):
    c = 8
    labels = jnp.asarray(np.array([[0, 3, 7, -1, -2, 5, 8, 1]]).repeat(8, axis=0))
    mask = labels[..., None] == jnp.arange(c)  # label 8 (≥ C) and negatives: no class
    x = jnp.asarray(np.broadcast_to(X, (8, 8, c)) * np.float32(0.7))
    for gamma, alpha in ((2.0, 0.25), (0.5, None), (0.0, 0.25)):
        def by_labels(z, gamma=gamma, alpha=alpha):
            return _fused.sigmoid_focal_labels_elementwise(z, labels, alpha=alpha,
                                                           gamma=gamma, xp=jnp)

        def by_mask(z, gamma=gamma, alpha=alpha):
            return fa.sigmoid_focal_loss(z, mask, gamma=gamma, alpha=alpha)

        loss, g = jax.jit(jax.value_and_grad(lambda z, f=by_labels: jnp.sum(f(z))))(x)
        want, want_g = generic(jax.value_and_grad(lambda z, f=by_mask: jnp.sum(f(z))), x)
        np.testing.assert_allclose(float(loss), float(want), rtol=1e-6)
        np.testing.assert_allclose(np.asarray(g), np.asarray(want_g), rtol=2e-6, atol=TINY)
        np.testing.assert_array_equal(np.asarray(by_labels(x)), np.asarray(by_mask(x)))
        xm = jnp.clip(x[0], -20, 20)
        h = jax.vmap(jax.vmap(jax.grad(jax.grad(
            lambda s, t, gamma=gamma, alpha=alpha: fa.sigmoid_focal_loss(
                s, t, gamma=gamma, alpha=alpha)))))
        first = jax.grad(lambda s, f=by_labels: jnp.sum(f(s)))
        hl = jax.grad(lambda z, d=first: jnp.sum(d(z)))(jnp.broadcast_to(xm, x.shape))[0]
        np.testing.assert_allclose(np.asarray(hl), np.asarray(generic(h, xm, mask[0])),
                                   rtol=1e-4, atol=TINY)


def test_dense_detection_loss_forms_no_full_size_class_tensor():
    # the classification term reads the (B, A, C) logits and writes the gradient; nothing
    # else of that size (a one-hot target, a mask, an intermediate) is kept by XLA
    from focal_array.detection import dense_detection_loss

    b, a, c = 2, 4096, 64
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 400, (a, 2)).astype(np.float32)
    anchors = jnp.asarray(np.concatenate([xy, xy + 32], axis=1))
    gts = jnp.asarray(np.tile(np.array([[[10, 10, 60, 60]]], np.float32), (b, 1, 1)))
    labels = jnp.ones((b, 1), jnp.int32)
    logits = jnp.asarray(rng.normal(size=(b, a, c)).astype(np.float32))
    deltas = jnp.zeros((b, a, 4), jnp.float32)

    def total(lg, dl):
        return dense_detection_loss(lg, dl, anchors, gts, labels)["total"]

    for fn in (total, jax.value_and_grad(total, argnums=(0, 1))):
        mem = jax.jit(fn).lower(logits, deltas).compile().memory_analysis()
        if mem is None:
            pytest.skip("this jaxlib reports no memory analysis")
        assert mem.temp_size_in_bytes < logits.nbytes // 2, mem.temp_size_in_bytes / logits.nbytes
