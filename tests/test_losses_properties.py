"""Property tests: every backend agrees with NumPy; autodiff agrees with finite differences."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import focal_array as fa
from tests.helpers import asarray, library, to_numpy, value_and_grad
from tests.strategies import sigmoid_case, softmax_case

SETTINGS = settings(max_examples=int(os.environ.get("FOCAL_ARRAY_EXAMPLES", "15")),
                    deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
TOL = {"float32": (1e-5, 1e-30), "float64": (1e-12, 1e-300)}


def _run(xp, fn, data, dtype):
    logits, targets, weights, options = data
    args = [asarray(xp, logits, dtype)]
    args.append(asarray(xp, targets) if targets.dtype.kind == "i" else asarray(xp, targets,
                                                                                 dtype))
    w = None if weights is None else asarray(xp, weights, dtype)
    return fn(*args, weights=w, **options)


def _check_agreement(xp, fn, data):
    import array_api_compat.numpy as npx

    for dtype in ("float32", "float64"):
        want = to_numpy(_run(npx, fn, data, dtype)).astype(np.float64)
        got = _run(xp, fn, data, dtype)
        assert got.dtype == getattr(xp, dtype)
        rtol, atol = TOL[dtype]
        np.testing.assert_allclose(to_numpy(got).astype(np.float64), want, rtol=rtol,
                                   atol=atol, err_msg=f"{library(xp)} {dtype}")


@SETTINGS
@given(data=sigmoid_case())
def test_sigmoid_backends_agree(xp, data):
    _check_agreement(xp, fa.sigmoid_focal_loss, data)


@SETTINGS
@given(data=softmax_case())
def test_softmax_backends_agree(xp, data):
    _check_agreement(xp, fa.softmax_focal_loss, data)


def _finite_difference(fn, x, eps=1e-6):
    grad = np.zeros_like(x)
    flat = grad.reshape(-1)
    for i in range(x.size):
        step = np.zeros(x.size)
        step[i] = eps
        step = step.reshape(x.shape)
        flat[i] = (np.sum(fn(x + step)) - np.sum(fn(x - step))) / (2 * eps)
    return grad


def _autodiff_backends():
    out = []
    for name in ("jax", "torch"):
        try:
            __import__(name)
            out.append(name)
        except ImportError:
            if os.environ.get("CI"):
                raise
    return out


def _namespace(name):
    if name == "jax":
        import jax.numpy as jnp

        return jnp
    import array_api_compat.torch as tx

    return tx


@pytest.mark.parametrize("head", ["sigmoid", "softmax"])
@settings(max_examples=int(os.environ.get("FOCAL_ARRAY_EXAMPLES", "15")), deadline=None)
@given(data=sigmoid_case() | softmax_case())
def test_gradients_agree_with_each_other_and_finite_differences(head, data):
    logits, targets, weights, options = data
    is_softmax = targets.dtype.kind == "i"
    if is_softmax != (head == "softmax"):
        return
    fn = fa.softmax_focal_loss if is_softmax else fa.sigmoid_focal_loss
    # keep finite differences well-conditioned: moderate logits, no kinks
    logits = np.clip(logits, -15, 15)
    import array_api_compat.numpy as npx

    def numpy_loss(z):
        return to_numpy(_run(npx, fn, (z, targets, weights, options), "float64"))

    fd = _finite_difference(numpy_loss, logits)
    grads = {}
    for name in _autodiff_backends():
        xp = _namespace(name)
        x = asarray(xp, logits, "float64")
        t = asarray(xp, targets) if is_softmax else asarray(xp, targets, "float64")
        w = None if weights is None else asarray(xp, weights, "float64")
        _, g = value_and_grad(xp, lambda z, t=t, w=w: fn(z, t, weights=w, **options), x)
        grads[name] = to_numpy(g)
        scale = max(1.0, float(np.max(np.abs(fd))))
        np.testing.assert_allclose(grads[name], fd, rtol=1e-5, atol=1e-6 * scale,
                                   err_msg=name)
    if len(grads) == 2:
        np.testing.assert_allclose(grads["jax"], grads["torch"], rtol=1e-12, atol=1e-300)
