"""Assertions and conversions shared by the tests."""

from __future__ import annotations

import array_api_compat
import numpy as np


def library(xp) -> str:
    """Name of the library behind a namespace: numpy, array_api_strict, jax or torch."""
    for name in ("numpy", "array_api_strict", "jax", "torch"):
        if getattr(array_api_compat, f"is_{name}_namespace")(xp):
            return name
    return xp.__name__


def to_numpy(x) -> np.ndarray:
    """Copy any backend's array to a NumPy array (detached, on the host)."""
    if array_api_compat.is_torch_array(x):
        return x.detach().cpu().numpy()
    if array_api_compat.is_numpy_array(x) or array_api_compat.is_jax_array(x):
        return np.asarray(x)
    return np.from_dlpack(x)


def asarray(xp, value, dtype=None):
    """Make an array of ``xp`` from NumPy data (``dtype`` a name such as "float32")."""
    value = np.asarray(value)
    if dtype is not None:
        value = value.astype(dtype if dtype != "bfloat16" else np.float32)
        target = getattr(xp, dtype)
        return xp.asarray(xp.asarray(value), dtype=target)
    return xp.asarray(value)


def assert_close(actual, expected, xp, *, dtype=None, rtol=1e-6, atol=0.0, shape=None):
    """Check namespace, dtype and shape, then values against a NumPy float64 expectation.

    ``dtype`` is a dtype name ("float32"); when given, the result must have it in ``xp``.
    """
    got_ns = array_api_compat.array_namespace(actual)
    got, want = library(got_ns), library(xp)
    assert got == want, f"result is a {got} array, not {want}"
    if dtype is not None:
        assert actual.dtype == getattr(xp, dtype), f"dtype {actual.dtype} != {dtype}"
    expected = np.asarray(expected, dtype=np.float64)
    want_shape = expected.shape if shape is None else tuple(shape)
    assert tuple(actual.shape) == want_shape, f"shape {tuple(actual.shape)} != {want_shape}"
    got = to_numpy(actual).astype(np.float64)
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol)


def has_autodiff(xp) -> bool:
    """True for the backends with automatic differentiation (jax, torch)."""
    return library(xp) in ("jax", "torch")


def value_and_grad(xp, f, x):
    """(f(x), d Σ f(x) / dx) on an autodiff backend; f maps an array to an array."""
    lib = library(xp)
    if lib == "jax":
        import jax
        import jax.numpy as jnp

        out = f(x)
        return out, jax.grad(lambda z: jnp.sum(f(z)))(x)
    if lib == "torch":
        x = x.detach().clone().requires_grad_(True)
        out = f(x)
        (g,) = __import__("torch").autograd.grad(out.sum(), x)
        return out.detach(), g
    raise ValueError(f"{lib} has no autodiff")


def require(name: str):
    """Import a backend module; skip if missing, but fail in CI where all must exist."""
    import importlib
    import os

    import pytest

    try:
        return importlib.import_module(name)
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail(f"{name} must be installed in CI")
        pytest.skip(f"{name} not installed")
