"""The one ``xp`` fixture every numerical test runs through.

Backends are data: numpy, array_api_strict, jax, torch. ``FOCAL_ARRAY_BACKENDS`` (comma
separated) narrows the list. A backend that is not installed is skipped on a user's machine
and is a failure in CI (``CI`` set), where all four must run.
"""

from __future__ import annotations

import importlib
import os

import pytest

BACKENDS = ["numpy", "array_api_strict", "jax", "torch"]
_selected = os.environ.get("FOCAL_ARRAY_BACKENDS")
if _selected:
    BACKENDS = [b for b in BACKENDS if b in _selected.split(",")]


def _load(name: str):
    try:
        if name == "numpy":
            import array_api_compat.numpy as xp
        elif name == "array_api_strict":
            xp = importlib.import_module("array_api_strict")
            # code that would break jax.jit (boolean indexing, data-dependent shapes) fails here
            xp.set_array_api_strict_flags(boolean_indexing=False, data_dependent_shapes=False)
        elif name == "jax":
            import jax

            jax.config.update("jax_enable_x64", True)
            import jax.numpy as xp
        elif name == "torch":
            import array_api_compat.torch as xp
        else:  # pragma: no cover
            raise ValueError(name)
    except ImportError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"backend {name} is not installed in CI: {exc}")
        pytest.skip(f"backend {name} not installed: {exc}")
    return xp


@pytest.fixture(params=BACKENDS)
def xp(request):
    """The Array API namespace of one backend."""
    return _load(request.param)


def pytest_configure(config):
    # JAX must see x64 before any array is made, whichever test imports it first
    try:
        import jax

        jax.config.update("jax_enable_x64", True)
    except ImportError:
        pass
