"""The EMA normalizer on every backend and under jit/compile."""

from __future__ import annotations

import numpy as np
import pytest

from focal_array.normalization import ema_normalizer, init_ema_normalizer
from tests.helpers import asarray, assert_close, library, require


def test_sequence_matches_hand_computation(xp):
    state = init_ema_normalizer(100.0, xp=xp, dtype=xp.float64)
    assert state.dtype == xp.float64 and state.shape == ()
    want = 100.0
    for count in (20, 0, 7, 150):
        state = ema_normalizer(state, asarray(xp, count), momentum=0.9)
        want = 0.9 * want + 0.1 * max(count, 1)  # a count of 0 counts as 1
        assert_close(state, want, xp, dtype="float64", rtol=1e-15)
    state = ema_normalizer(state, 3.0, momentum=0.5)
    assert_close(state, 0.5 * want + 0.5 * 3.0, xp, dtype="float64", rtol=1e-15)


def test_float32_default_and_errors(xp):
    state = init_ema_normalizer(xp=xp)
    assert state.dtype == xp.float32
    assert_close(state, 100.0, xp, dtype="float32")
    with pytest.raises(ValueError, match="momentum must be in"):
        ema_normalizer(state, 1.0, momentum=1.0)
    with pytest.raises(ValueError, match="count must be a finite number >= 0"):
        ema_normalizer(state, asarray(xp, -3))
    with pytest.raises(ValueError, match="count must be in"):
        ema_normalizer(state, -3.0)
    with pytest.raises(ValueError, match="state must be a 0-d array"):
        ema_normalizer(asarray(xp, [1.0, 2.0], "float32"), 1.0)
    with pytest.raises(ValueError, match="value must be in"):
        init_ema_normalizer(0.0, xp=xp)
    if library(xp) != "numpy":
        with pytest.raises(TypeError, match="different libraries"):
            ema_normalizer(state, np.asarray(3))


def test_under_jit_and_compile():
    jax = require("jax")
    import jax.numpy as jnp

    step = jax.jit(lambda s, c: ema_normalizer(s, c))
    s = init_ema_normalizer(xp=jnp)
    s = step(s, jnp.asarray(20))
    np.testing.assert_allclose(float(s), 92.0, rtol=1e-6)
    torch = require("torch")
    torch._dynamo.reset()
    compiled = torch.compile(lambda s, c: ema_normalizer(s, c), fullgraph=True)
    out = compiled(torch.tensor(100.0), torch.tensor(20))
    np.testing.assert_allclose(float(out), 92.0, rtol=1e-6)
