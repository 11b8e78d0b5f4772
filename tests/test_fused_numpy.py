"""The NumPy fast path of the sigmoid focal loss (focal_array._fused_numpy).

It must give the generic formula's numbers (focal_array.losses / focal_array.gradients,
run with the fast paths switched off) to a few ulps, and the float64 references of
tests/reference.py within the accuracy contract, for every shape, layout and block
boundary; it must never write to the caller's arrays nor allocate full-size temporaries.
NumPy only: this is NumPy's fast path.
"""

from __future__ import annotations

import tracemalloc

import array_api_compat.numpy as xp
import numpy as np
import pytest

import focal_array as fa
from focal_array import _fused
from focal_array import _fused_numpy as fast
from focal_array.gradients import (
    _sigmoid_hard_value_and_grad,
    _sigmoid_soft_value_and_grad,
    sigmoid_focal_loss_value_and_grad,
)
from focal_array.losses import _sigmoid_elementwise, sigmoid_hard_elementwise
from tests import reference as ref

BLOCK = fast._BLOCK
GAMMAS = [0.0, 0.5, 1.0, 2.0, 5.0]
DTYPES = [np.float32, np.float64]
TARGETS = ["bool", "hard", "soft"]  # bool mask, 0/1 floats, soft floats in [0, 1]
# fast vs generic: the same operations, but float32 log1p is computed through log there
RTOL = {np.float32: 1e-6, np.float64: 1e-14}


def _tiny(dtype) -> float:
    return float(np.finfo(dtype).smallest_normal)


def _logits(n: int, dtype, seed: int = 0) -> np.ndarray:
    """n logits over [−100, 100]: wide and near-zero values, exact zeros of both signs."""
    rng = np.random.default_rng(seed)
    x = np.where(rng.random(n) < 0.5, rng.normal(0.0, 4.0, n), rng.uniform(-100, 100, n))
    x[: min(n, 4)] = [0.0, -0.0, 100.0, -100.0][: min(n, 4)]
    return x.astype(dtype)


def _targets(kind: str, shape, dtype, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "soft":
        y = rng.random(shape)
        y[rng.random(shape) < 0.2] = 1.0  # exact 0/1 among the soft ones too
        y[rng.random(shape) < 0.2] = 0.0
        return y.astype(dtype)
    positive = rng.random(shape) < 0.3
    return positive if kind == "bool" else positive.astype(dtype)


def _generic(monkeypatch, x, y, *, alpha, gamma):
    """(loss, (loss, grad)) from the generic xp formulas, the fast paths switched off."""
    with monkeypatch.context() as m:
        m.setattr(_fused, "ENABLED", False)
        if y.dtype == np.bool_:
            loss = sigmoid_hard_elementwise(x, y, alpha=alpha, gamma=gamma, xp=xp)
            both = _sigmoid_hard_value_and_grad(x, y, alpha=alpha, gamma=gamma, xp=xp)
        else:
            loss = _sigmoid_elementwise(x, y, alpha=alpha, gamma=gamma, from_logits=True,
                                        xp=xp)
            both = _sigmoid_soft_value_and_grad(x, y, alpha=alpha, gamma=gamma, xp=xp)
    return np.asarray(loss), tuple(np.asarray(a) for a in both)


def _gradient_scale(x, y, *, alpha, gamma) -> np.ndarray:
    """Σ |terms| of dℓ/dx in float64: the size of what a rounding error is relative to.

    For 0/1 targets this is |dℓ/dx| itself; for soft targets the two terms of
    α_t q^γ (γ (1 − 2y) (p s / q) B + (1 − y) p − y s) can cancel, and the float32
    formula (the generic one as much as the fast one) is only accurate relative to them.
    """
    x = x.astype(np.float64)
    y = y.astype(np.float64)
    p, s = np.exp(-np.logaddexp(0.0, -x)), np.exp(-np.logaddexp(0.0, x))  # no overflow
    bce = y * np.logaddexp(0.0, -x) + (1 - y) * np.logaddexp(0.0, x)
    q = y * s + (1 - y) * p
    at = 1.0 if alpha is None else alpha * y + (1 - alpha) * (1 - y)
    ratio = p * s / np.maximum(q, 1e-300)
    return at * q**gamma * (gamma * np.abs(1 - 2 * y) * ratio * bce + (1 - y) * p + y * s)


def _assert_close(got, want, *, rtol, atol, scale=None):
    assert got.dtype == want.dtype and got.shape == want.shape
    got64, want64 = got.astype(np.float64), want.astype(np.float64)
    bound = rtol * (np.abs(want64) if scale is None else scale) + atol
    err = np.abs(got64 - want64)
    bad = ~(err <= bound)  # NaN counts as bad
    assert not bad.any(), (
        f"{bad.sum()} elements off, worst at x index {np.argmax(np.where(bad, err, 0))}: "
        f"got {got64[bad][:3]}, want {want64[bad][:3]}")


def _check_against_generic(monkeypatch, x, y, *, alpha, gamma):
    dtype = x.dtype.type
    want_loss, (want_loss2, want_grad) = _generic(monkeypatch, x, y, alpha=alpha, gamma=gamma)
    loss = fast.sigmoid_focal(x, y, alpha=alpha, gamma=gamma)
    loss2, grad = fast.sigmoid_focal_value_and_grad(x, y, alpha=alpha, gamma=gamma)
    rtol, atol = RTOL[dtype], _tiny(dtype)
    _assert_close(loss, want_loss, rtol=rtol, atol=atol)
    _assert_close(loss2, want_loss2, rtol=rtol, atol=atol)
    assert np.array_equal(loss2, loss)  # one formula for the value, with or without grad
    scale = _gradient_scale(x, y, alpha=alpha, gamma=gamma)
    _assert_close(grad, want_grad, rtol=rtol, atol=atol, scale=scale)


# --------------------------------------------------------------------------- vs generic


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("alpha", [None, 0.25])
@pytest.mark.parametrize("targets", TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_generic_formula(monkeypatch, dtype, targets, alpha, gamma):
    n = 2 * BLOCK + 17  # several blocks and a remainder
    x = _logits(n, dtype)
    _check_against_generic(monkeypatch, x, _targets(targets, n, dtype), alpha=alpha,
                           gamma=gamma)


@pytest.mark.parametrize("n", [0, 1, 2, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK])
@pytest.mark.parametrize("targets", TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_block_boundaries(monkeypatch, dtype, targets, n):
    x = _logits(n, dtype, seed=n)
    y = _targets(targets, n, dtype, seed=n + 1)
    for gamma in (0.5, 2.0):
        _check_against_generic(monkeypatch, x, y, alpha=0.25, gamma=gamma)


@pytest.mark.parametrize("dtype", DTYPES)
def test_float_targets_some_blocks_zero_one(monkeypatch, dtype):
    # one-hot float blocks take the boolean kernel, the others blend; each must be right
    n = 4 * BLOCK + 100
    x = _logits(n, dtype, seed=3)
    y = _targets("hard", n, dtype, seed=4)
    y[BLOCK + 17] = 0.25  # the second block is soft
    y[-1] = 0.5  # and the remainder
    y[2 * BLOCK:3 * BLOCK] = 1.0  # all positives, then all negatives
    y[3 * BLOCK:4 * BLOCK] = 0.0
    for gamma in (0.0, 0.5, 2.0):
        for alpha in (None, 0.25):
            _check_against_generic(monkeypatch, x, y, alpha=alpha, gamma=gamma)


@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_one_float_targets_equal_bool_targets(dtype):
    # at y ∈ {0, 1} the soft blend is the boolean select: the same bits
    n = 2 * BLOCK + 5
    x = _logits(n, dtype, seed=7)
    yb = _targets("bool", n, dtype, seed=8)
    for gamma in GAMMAS:
        got = fast.sigmoid_focal(x, yb.astype(dtype), alpha=0.25, gamma=gamma)
        assert np.array_equal(got, fast.sigmoid_focal(x, yb, alpha=0.25, gamma=gamma))


def test_position_in_block_does_not_matter():
    # every element is computed on its own: the same logit gives the same bits anywhere
    x = np.full(2 * BLOCK + 5, 1.5, dtype=np.float32)
    x[::3] = -7.25
    y = np.zeros(x.shape, dtype=bool)
    y[::3] = True
    loss, grad = fast.sigmoid_focal_value_and_grad(x, y, alpha=0.25, gamma=2.0)
    for a in (loss, grad):
        assert np.unique(a[::3]).size == 1
        assert np.unique(np.delete(a, np.s_[::3])).size == 1


# --------------------------------------------------------------------------- vs float64


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("targets", TARGETS)
def test_float32_matches_float64_reference(targets, gamma):
    # the project's accuracy contract: 2e-6 relative, floor at float32's smallest normal
    x = np.concatenate([np.linspace(-100, 100, 4001, dtype=np.float32),
                        _logits(BLOCK + 3000, np.float32, seed=5)])
    y = _targets(targets, x.shape, np.float32, seed=6)
    want, want_grad = ref.sigmoid_focal(x, y, alpha=0.25, gamma=gamma)
    loss, grad = fast.sigmoid_focal_value_and_grad(x, y, alpha=0.25, gamma=gamma)
    tiny = _tiny(np.float32)
    _assert_close(loss, want.astype(np.float32), rtol=2e-6, atol=tiny)
    scale = None if targets != "soft" else _gradient_scale(x, y, alpha=0.25, gamma=gamma)
    _assert_close(grad, want_grad.astype(np.float32), rtol=2e-6, atol=tiny, scale=scale)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("targets", TARGETS)
def test_extreme_logits_finite_and_generic(monkeypatch, dtype, targets):
    x = np.array([1e4, -1e4, 100.0, -100.0, 88.0, -88.0, 745.0, -745.0, 50.0, -50.0] * 3,
                 dtype=dtype)
    y = _targets(targets, x.shape, dtype)
    if targets != "soft":  # each extreme logit with both labels
        y[:10], y[10:20] = y.dtype.type(1), y.dtype.type(0)
    for gamma in GAMMAS:
        loss, grad = fast.sigmoid_focal_value_and_grad(x, y, alpha=0.25, gamma=gamma)
        assert np.isfinite(loss).all() and np.isfinite(grad).all()
        _check_against_generic(monkeypatch, x, y, alpha=0.25, gamma=gamma)


# --------------------------------------------------------------------------- NaN


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("targets", TARGETS)
def test_nan_propagates(dtype, targets):
    n = 2 * BLOCK + 9
    x = _logits(n, dtype)
    nan_at = np.array([0, 7, BLOCK - 1, BLOCK, n - 1])  # both ends of blocks, the remainder
    x[nan_at] = np.nan
    x[8] = -np.nan  # a NaN with its sign bit set goes through the bitwise selections too
    nan_at = np.append(nan_at, 8)
    y = _targets(targets, n, dtype)
    for gamma in GAMMAS:
        for alpha in (None, 0.25):
            loss, grad = fast.sigmoid_focal_value_and_grad(x, y, alpha=alpha, gamma=gamma)
            only = fast.sigmoid_focal(x, y, alpha=alpha, gamma=gamma)
            for a in (loss, grad, only):
                isnan = np.isnan(a)
                assert isnan[nan_at].all()
                assert np.isfinite(a[~np.isin(np.arange(n), nan_at)]).all()


# --------------------------------------------------------------------------- layouts


def _layouts(dtype, targets):
    """(name, x, y) with every shape and memory layout the blocks must cope with."""
    base_x = _logits(6 * 7 * 50, dtype).reshape(6, 7, 50)
    base_y = _targets(targets, base_x.shape, dtype)
    x2, y2 = base_x.reshape(42, 50), base_y.reshape(42, 50)
    big_x = _logits(3 * BLOCK + 40, dtype).reshape(-1, 8)
    big_y = _targets(targets, big_x.shape, dtype)
    return [
        ("0-d", np.asarray(x2[3, 4]), np.asarray(y2[3, 4])),
        ("empty", x2[:0], y2[:0]),
        ("empty-middle", base_x[:, :0, :], base_y[:, :0, :]),
        ("3-d", base_x, base_y),
        ("transposed", x2.T, y2.T),
        ("transposed-big", big_x.T, big_y.T),
        ("strided", x2[:, ::3], y2[:, ::3]),
        ("reversed", big_x[::-1, ::-1], big_y[::-1, ::-1]),
        ("mixed", big_x, np.asfortranarray(big_y)),
        ("3-d-permuted", np.moveaxis(base_x, 0, 2), np.moveaxis(base_y, 0, 2)),
        ("3-d-permuted-copied-y", np.moveaxis(base_x, 0, 2),
         np.ascontiguousarray(np.moveaxis(base_y, 0, 2))),
    ]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("targets", TARGETS)
def test_shapes_and_layouts(monkeypatch, dtype, targets):
    for name, x, y in _layouts(dtype, targets):
        loss, grad = fast.sigmoid_focal_value_and_grad(x, y, alpha=0.25, gamma=2.0)
        only = fast.sigmoid_focal(x, y, alpha=0.25, gamma=2.0)
        for a in (loss, grad, only):
            assert type(a) is np.ndarray and a.shape == x.shape and a.dtype == x.dtype, name
        # elementwise: the same bits as on a C-contiguous copy (itself checked vs generic)
        xc, yc = np.array(x, order="C"), np.array(y, order="C")  # (0-d stays 0-d)
        want_loss, want_grad = fast.sigmoid_focal_value_and_grad(xc, yc, alpha=0.25,
                                                                 gamma=2.0)
        for got, want in ((loss, want_loss), (grad, want_grad), (only, want_loss)):
            assert np.array_equal(got, want), name
        _check_against_generic(monkeypatch, xc, yc, alpha=0.25, gamma=2.0)


def test_callers_arrays_are_not_written():
    x = _logits(2 * BLOCK + 3, np.float32)
    for y in (_targets("bool", x.shape, np.float32), _targets("soft", x.shape, np.float32)):
        x0, y0 = x.copy(), y.copy()
        x.flags.writeable = False  # any write into them would raise
        y.flags.writeable = False
        fast.sigmoid_focal(x, y, alpha=0.25, gamma=0.5)
        fast.sigmoid_focal_value_and_grad(x, y, alpha=0.25, gamma=2.0)
        # and the results are fresh arrays, not views of the inputs
        loss, grad = fast.sigmoid_focal_value_and_grad(x, y, alpha=None, gamma=0.0)
        assert not np.shares_memory(loss, x) and not np.shares_memory(grad, x)
        assert not np.shares_memory(loss, grad)
        assert np.array_equal(x, x0) and np.array_equal(y, y0)
        x.flags.writeable = True


# --------------------------------------------------------------------------- what it takes


@pytest.mark.parametrize("x, y", [
    (np.zeros(3, np.float16), np.zeros(3, np.float16)),  # not a compute dtype
    (np.zeros(3, np.float32), np.zeros(3, np.float64)),  # targets in another dtype
    (np.zeros(3, np.float32), np.zeros(3, np.int64)),
    (np.zeros(3, np.float32), np.zeros(4, bool)),  # shapes differ
    (np.zeros(3, np.float32), np.zeros((1, 3), bool)),  # broadcastable is not enough
    (np.zeros(3, ">f8"), np.zeros(3, ">f8")),  # non-native byte order
    (np.ma.zeros(3, np.float32), np.zeros(3, bool)),  # an ndarray subclass
])
def test_returns_none_where_it_does_not_apply(x, y):
    assert fast.sigmoid_focal(x, y, alpha=0.25, gamma=2.0) is None
    assert fast.sigmoid_focal_value_and_grad(x, y, alpha=0.25, gamma=2.0) is None


@pytest.mark.parametrize("targets", TARGETS)
def test_public_functions_run_it(monkeypatch, targets):
    calls = []
    for name in ("sigmoid_focal", "sigmoid_focal_value_and_grad"):
        original = getattr(fast, name)

        def spy(*args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(fast, name, spy)
    x = _logits(500, np.float32).reshape(50, 10)
    y = _targets(targets, x.shape, np.float32)
    loss = fa.sigmoid_focal_loss(x, y, reduction="sum")
    value, grad = sigmoid_focal_loss_value_and_grad(x, y, reduction="mean")
    assert calls == ["sigmoid_focal", "sigmoid_focal_value_and_grad"]
    with monkeypatch.context() as m:
        m.setattr(_fused, "ENABLED", False)
        want = fa.sigmoid_focal_loss(x, y, reduction="sum")
        want_value, want_grad = sigmoid_focal_loss_value_and_grad(x, y, reduction="mean")
    np.testing.assert_allclose(loss, want, rtol=1e-6)
    np.testing.assert_allclose(value, want_value, rtol=1e-6)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-6, atol=1e-12)


def test_no_full_size_temporaries():
    # the point of the blocks: the only full-size allocations are the results
    x = _logits(2**21, np.float32)
    y = _targets("soft", x.shape, np.float32)
    fast.sigmoid_focal(x[:10], y[:10], alpha=0.25, gamma=2.0)  # warm up
    scratch = fast._N_FLOAT * BLOCK * 8 + 2**16
    for call, n_out in ((fast.sigmoid_focal, 1), (fast.sigmoid_focal_value_and_grad, 2)):
        tracemalloc.start()
        try:
            call(x, y, alpha=0.25, gamma=2.0)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak <= n_out * x.nbytes + scratch, peak / x.nbytes
