"""Property tests: every backend agrees with NumPy; autodiff agrees with finite differences."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import focal_array as fa
from tests.helpers import asarray, has_autodiff, library, to_numpy, value_and_grad
from tests.strategies import sigmoid_case, softmax_case

SETTINGS = settings(max_examples=int(os.environ.get("FOCAL_ARRAY_EXAMPLES", "10")),
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

    # JAX compiles every drawn shape and dtype anew (~2 s each here): float32 only there,
    # its float64 route is checked against the reference in test_losses
    dtypes = ("float32",) if library(xp) == "jax" else ("float32", "float64")
    for dtype in dtypes:
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
@settings(max_examples=int(os.environ.get("FOCAL_ARRAY_EXAMPLES", "10")), deadline=None)
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


# --------------------------------------------------------------------------- non-finite search

# float32 logits anywhere in its range, the extremes and the −inf of masking drawn often
EXTREME = st.one_of(
    st.floats(width=32, allow_nan=False, allow_infinity=False, allow_subnormal=False),
    st.sampled_from([0.0, 1e-3, -1e-3, 50.0, -50.0, 104.0, -104.0, 1e10, -1e10, 1e30, -1e30,
                     3e38, -3e38, 3.4e38, -3.4e38]),
)
EXTREME_OPTIONS = {
    "gamma": st.sampled_from([0.0, 1e-3, 0.5, 1.0, 2.0, 50.0]),
    "reduction": st.sampled_from(["none", "sum", "mean"]),
    "label_smoothing": st.sampled_from([0.0, 0.1]),
}
# counts: 0 (counted as 1), tiny, huge, integer
COUNTS = st.one_of(st.none(), st.sampled_from([0.0, 1e-30, 1.0, 7.0, 1e30, 3.4e38]),
                   st.integers(0, 2**31 - 1))


@st.composite
def extreme_softmax_case(draw):
    """(float32 logits with −inf on some non-target classes, labels, options)."""
    # one shape: JAX compiles each new shape anew, which would dominate the budget
    rows, classes = 3, 4
    logits = draw(hnp.arrays(np.float32, (rows, classes), elements=EXTREME))
    labels = draw(hnp.arrays(np.int64, (rows,), elements=st.integers(-1, classes - 1)))
    masked = draw(hnp.arrays(np.bool_, (rows, classes)))
    masked[np.arange(rows), np.maximum(labels, 0)] = False  # never the target
    logits = np.where(masked, np.float32(-np.inf), logits)
    options = {k: draw(s) for k, s in EXTREME_OPTIONS.items()}
    options["alpha"] = draw(st.one_of(st.none(), st.sampled_from([0.0, 1.0, 0.25]),
                                      st.lists(st.sampled_from([0.0, 1e-30, 0.5, 1.0]),
                                               min_size=classes, max_size=classes)))
    options["gamma"] = draw(st.sampled_from([0.0, 1e-3, 0.5, 2.0, 50.0]))
    if options["reduction"] == "mean":
        options["normalizer"] = draw(COUNTS)
    return logits, labels, options


@st.composite
def extreme_sigmoid_case(draw):
    """(float32 logits of any size, 0/1 or soft targets, options)."""
    shape = (2, 4)
    logits = draw(hnp.arrays(np.float32, shape, elements=EXTREME))
    targets = draw(hnp.arrays(np.float32, shape, elements=st.sampled_from([0.0, 1.0, 0.3,
                                                                          1e-30, 1 - 1e-7])))
    options = {k: draw(s) for k, s in EXTREME_OPTIONS.items()}
    options["alpha"] = draw(st.one_of(st.none(), st.sampled_from([0.0, 1.0, 0.25])))
    if options["reduction"] == "mean":
        options["normalizer"] = draw(COUNTS)
    return logits, targets, options


def _no_nan_and_finite_gradient(xp, fn, x, aux, options):
    xs = asarray(xp, x, "float32")
    loss = to_numpy(fn(xs, aux, **options))
    # a loss may overflow to +inf (a margin past float32's largest number, or a masked
    # class under label smoothing); a NaN from these inputs is a bug
    assert not np.any(np.isnan(loss)), (x, options, loss)
    if has_autodiff(xp):
        _, g = value_and_grad(xp, lambda z: fn(z, aux, **options), xs)
        g = to_numpy(g)
        assert np.all(np.isfinite(g)), (x, options, g)
    return loss


EXTREME_SETTINGS = settings(max_examples=int(os.environ.get("FOCAL_ARRAY_EXAMPLES", "10")),
                            deadline=None,
                            suppress_health_check=[HealthCheck.function_scoped_fixture])


@EXTREME_SETTINGS
@given(data=extreme_softmax_case())
@np.errstate(over="ignore")  # a sum past float32's largest number overflows, as it should
def test_softmax_extreme_and_masked_logits_never_give_nan(xp, data):
    logits, labels, options = data
    ls = asarray(xp, labels)
    loss = _no_nan_and_finite_gradient(xp, fa.softmax_focal_loss, logits, ls, options)
    if options["reduction"] == "none" and not options["label_smoothing"]:
        # finite wherever −log p_t is: the masked classes have probability 0
        rows = np.where(np.isneginf(logits), -np.inf, logits.astype(np.float64))
        with np.errstate(all="ignore"):
            m = np.max(np.where(np.arange(logits.shape[1]) == labels[:, None], -np.inf,
                                rows), axis=1)
            margin = m - rows[np.arange(len(labels)), np.maximum(labels, 0)]
        representable = (labels < 0) | (margin < 3e38)
        assert np.all(np.isfinite(loss[representable])), (logits, labels, options, loss)
    if not options["label_smoothing"]:
        _, g = fa.softmax_focal_loss_value_and_grad(
            asarray(xp, logits, "float32"), ls,
            **{k: v for k, v in options.items() if k != "label_smoothing"})
        assert np.all(np.isfinite(to_numpy(g))), (logits, labels, options)


@EXTREME_SETTINGS
@given(data=extreme_sigmoid_case())
@np.errstate(over="ignore")
def test_sigmoid_extreme_logits_are_finite(xp, data):
    logits, targets, options = data
    ys = asarray(xp, targets, "float32")
    loss = _no_nan_and_finite_gradient(xp, fa.sigmoid_focal_loss, logits, ys, options)
    if options["reduction"] == "none":
        # ℓ ≤ BCE ≤ |x| + log 2: finite below float32's largest number
        assert np.all(np.isfinite(loss[np.abs(logits) < 3e38])), (logits, options, loss)
    _, g = fa.sigmoid_focal_loss_value_and_grad(
        asarray(xp, logits, "float32"), ys, **options)
    assert np.all(np.isfinite(to_numpy(g))), (logits, targets, options)
