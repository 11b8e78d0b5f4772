"""Float64 NumPy references for the focal family, written plainly from each paper's formula.

Nothing here imports focal_array. Each loss is the paper's definition; the only care taken
is what float64 itself needs for |logits| ≤ 100: σ(x) and 1 − σ(x) are two sigmoids (not
a subtraction), softplus is ``np.logaddexp(0, ·)``, a cross-entropy is
``log1p(Σ_{j≠k} e^{x_j − x_k})``, and a difference ``p − y`` of a probability and a
target is taken on the side where ``p`` is not rounded away (``(1 − y) − (1 − p)`` for
p > 1/2). Gradients are derived by hand from the same definitions.
"""

from __future__ import annotations

import numpy as np

from tests.reference import softmax_margin, softmax_rows


def _f64(*arrays):
    return [np.asarray(a, dtype=np.float64) for a in arrays]


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def _softplus(x):
    return np.logaddexp(0.0, x)


def _bce(x, y):
    return y * _softplus(-x) + (1 - y) * _softplus(x)


def _p_minus_y(p, s, y):
    """p − y with p = σ(x), s = 1 − p, without rounding p's complement away."""
    return np.where(p < 0.5, p - y, (1 - y) - s)


def quality_focal(x, y, *, beta=2.0):
    """QFL = BCE(x, y) · |y − σ(x)|^β and d/dx (Li et al. 2020, eq. 5)."""
    x, y = _f64(x, y)
    p, s = _sig(x), _sig(-x)
    bce = _bce(x, y)
    d = -_p_minus_y(p, s, y)  # y − σ(x)
    a = np.abs(d)
    loss = bce * a**beta
    # d/dx: BCE' |d|^β + BCE β |d|^(β−1) sign(d) d',  BCE' = p − y = −d,  d' = −p s
    with np.errstate(divide="ignore", invalid="ignore"):
        dmod = np.where(a > 0, beta * a ** (beta - 1) * np.sign(d) * (-p * s), 0.0)
    grad = -d * a**beta + bce * dmod
    return loss, grad


def varifocal(x, y, *, alpha=0.75, gamma=2.0):
    """VFL = y·BCE for y > 0, α σ^γ·BCE for y = 0 (Zhang et al. 2021, eq. 2); the
    derivative includes that of σ^γ."""
    x, y = _f64(x, y)
    p, s = _sig(x), _sig(-x)
    bce = _bce(x, y)
    pos = y > 0
    w = np.where(pos, y, alpha * p**gamma)
    dw = np.where(pos, 0.0, alpha * gamma * p**gamma * s)  # d(α p^γ)/dx = α γ p^(γ−1) p s
    return w * bce, w * _p_minus_y(p, s, y) + dw * bce


def poly1_sigmoid(x, y, *, epsilon=1.0, alpha=0.25, gamma=2.0):
    """Poly-1 focal = FL + ε (1 − p_t)^(γ+1) (Leng et al. 2022, the paper's code)."""
    x, y = _f64(x, y)
    p, s = _sig(x), _sig(-x)
    bce = _bce(x, y)
    q = y * s + (1 - y) * p  # 1 − p_t
    at = 1.0 if alpha is None else alpha * y + (1 - alpha) * (1 - y)
    dq = (1 - 2 * y) * p * s
    with np.errstate(divide="ignore", invalid="ignore"):
        dqg = np.where(gamma == 0, 0.0, gamma * q ** (gamma - 1) * dq)  # d q^γ / dx
    loss = at * q**gamma * bce + epsilon * q ** (gamma + 1)
    grad = at * (dqg * bce + q**gamma * _p_minus_y(p, s, y)) \
        + epsilon * (gamma + 1) * q**gamma * dq
    return loss, grad


def poly1_softmax(x, labels, *, epsilon=1.0, alpha=None, gamma=2.0):
    """Softmax Poly-1 focal over the last axis: −α_t q^γ log p_t + ε q^(γ+1), q = 1 − p_t;
    negative labels give 0. ``alpha``: None, a scalar (α for labels ≥ 1) or a vector."""
    x, valid, t, onehot, at = softmax_rows(x, labels, alpha)
    q, pt, probs, nll = softmax_margin(x, t, onehot)
    loss = at * q**gamma * nll + epsilon * q ** (gamma + 1)
    # dL/dx_j = p_j − δ_jt;  dq/dx_j = −dp_t/dx_j = p_t (p_j − δ_jt)
    dl = np.where(onehot, -q[..., None], probs)
    with np.errstate(divide="ignore", invalid="ignore"):
        dmod = np.where(gamma == 0, 0.0, gamma * q ** (gamma - 1))
    coef = at * (dmod * pt * nll + q**gamma) + epsilon * (gamma + 1) * q**gamma * pt
    grad = coef[..., None] * dl
    return np.where(valid, loss, 0.0), np.where(valid[..., None], grad, 0.0)


def _ce_all(x):
    """(CE_k = −log p_k, p_k, 1 − p_k) for every k over the last axis, p = softmax(x)."""
    diff = np.exp(x[..., None, :] - x[..., :, None])  # [..., k, j] = e^{x_j − x_k}
    others = np.sum(np.where(np.eye(x.shape[-1], dtype=bool), 0.0, diff), -1)
    return np.log1p(others), 1 / (1 + others), others / (1 + others)


def distribution_focal(x, y):
    """DFL = (r − y) CE(x, l) + (y − l) CE(x, r), l = min(⌊y⌋, n − 2), r = l + 1
    (Li et al. 2020, eq. 6) over the last axis, and its gradient softmax − W."""
    x, y = _f64(x, y)
    n = x.shape[-1]
    left = np.minimum(np.floor(y), n - 2).astype(np.int64)
    right = left + 1
    w_left, w_right = right - y, y - left
    ce, p, q = _ce_all(x)
    ce_l = np.take_along_axis(ce, left[..., None], -1)[..., 0]
    ce_r = np.take_along_axis(ce, right[..., None], -1)[..., 0]
    loss = w_left * ce_l + w_right * ce_r
    bins = np.arange(n)
    w = np.where(bins == left[..., None], w_left[..., None], 0.0) \
        + np.where(bins == right[..., None], w_right[..., None], 0.0)
    grad = np.where(p < 0.5, p - w, (1 - w) - q)
    return loss, grad


def focal_star(x, y, *, gamma=4.0, beta=0.0, alpha=0.25):
    """FL* = −α_t log σ(γ x_t + β) / γ with x_t = (2y − 1) x (Lin et al. 2017, appendix A;
    fvcore's linear 2y − 1 for soft targets)."""
    x, y = _f64(x, y)
    x_t = (2 * y - 1) * x
    z = -(gamma * x_t + beta)
    at = 1.0 if alpha is None else alpha * y + (1 - alpha) * (1 - y)
    loss = at * _softplus(z) / gamma
    grad = at * _sig(z) * (-gamma * (2 * y - 1)) / gamma
    return loss, grad
