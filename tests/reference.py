"""Float64 NumPy references for the losses, written plainly from the definitions.

Nothing here imports focal_array. The formulas are the textbook ones, arranged only so that
float64 is exact enough for |logits| ≤ 100 (every exponent stays far from overflow, and
1 − p is computed as its own sigmoid, not by subtraction). Gradients are derived by hand.
"""

from __future__ import annotations

import numpy as np


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def sigmoid_focal(x, y, *, alpha=0.25, gamma=2.0, from_logits=True, label_smoothing=0.0):
    """Elementwise focal loss and its derivative with respect to ``x`` (float64).

    ℓ = α_t (1 − p_t)^γ BCE with p_t = p y + (1 − p)(1 − y), α_t = α y + (1 − α)(1 − y).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if label_smoothing:
        y = y * (1 - label_smoothing) + label_smoothing / 2
    if from_logits:
        p, omp = _sigmoid(x), _sigmoid(-x)
        bce = y * np.log1p(np.exp(-x)) + (1 - y) * np.log1p(np.exp(x))
        dbce = (1 - y) * p - y * omp  # d/dx
        dp = p * omp
    else:
        p, omp = x, 1 - x
        bce = -(y * np.log(p) + (1 - y) * np.log(omp))
        dbce = -(y / p) + (1 - y) / omp
        dp = np.ones_like(p)
    at = 1.0 if alpha is None else alpha * y + (1 - alpha) * (1 - y)
    q = y * omp + (1 - y) * p
    m = q**gamma
    dq = (1 - 2 * y) * dp
    with np.errstate(divide="ignore", invalid="ignore"):
        dm = np.where(gamma == 0, 0.0, gamma * q ** (gamma - 1) * dq)
    return at * m * bce, at * (dm * bce + m * dbce)


def softmax_rows(x, labels, alpha):
    """(x float64, valid, t, one-hot of t, α_t) of labels over the last axis; ignored
    (negative) labels are read as class 0 and flagged in ``valid``. ``alpha``: None, a
    scalar (α for labels ≥ 1, 1 − α for 0) or a per-class vector."""
    x = np.asarray(x, dtype=np.float64)
    labels = np.asarray(labels)
    valid = labels >= 0
    t = np.where(valid, labels, 0)
    onehot = np.arange(x.shape[-1]) == t[..., None]
    if alpha is None:
        at = np.ones(labels.shape)
    elif np.ndim(alpha) == 0:
        at = np.where(t >= 1, alpha, 1 - alpha)
    else:
        at = np.asarray(alpha, dtype=np.float64)[t]
    return x, valid, t, onehot, at


def softmax_margin(x, t, onehot):
    """(q = 1 − p_t, p_t, probabilities, −log p_t) from logits, without cancellation."""
    x_t = np.take_along_axis(x, t[..., None], -1)
    rel = np.exp(x - x_t)  # e^{x_j - x_t}; |x| ≤ 100 keeps this finite
    r = np.sum(np.where(onehot, 0.0, rel), -1)  # Σ_{j≠t}
    return r / (1 + r), 1 / (1 + r), rel / (1 + r)[..., None], np.log1p(r)


def softmax_focal(x, labels, *, alpha=None, gamma=2.0, from_logits=True):
    """Per-example softmax focal loss over the last axis and its gradient (float64).

    Ignored (negative) labels give 0 loss and 0 gradient. ``alpha``: None, a scalar
    (α for labels ≥ 1, 1 − α for 0) or a per-class vector.
    """
    x, valid, t, onehot, at = softmax_rows(x, labels, alpha)
    if from_logits:
        q, pt, probs, nll = softmax_margin(x, t, onehot)
        log_pt = -nll
        # ℓ = −α q^γ L;  dL/dx_j = δ_jt − p_j;  dq/dx_j = −p_t (δ_jt − p_j)
        with np.errstate(divide="ignore", invalid="ignore"):
            coef = np.where(gamma == 0, 0.0, gamma * q ** (gamma - 1) * pt * log_pt)
        outer = -at * (-coef + q**gamma)
        # δ_jt − p_j, with 1 − p_t taken as q (subtracting p_t from 1 would round to 0)
        grad = outer[..., None] * np.where(onehot, q[..., None], -probs)
    else:
        pt = np.sum(np.where(onehot, x, 0.0), -1)
        q = np.sum(np.where(onehot, 0.0, x), -1)
        log_pt = np.log(pt)
        grad = None
    loss = -at * q**gamma * log_pt
    loss = np.where(valid, loss, 0.0)
    if grad is not None:
        grad = np.where(valid[..., None], grad, 0.0)
    return loss, grad


def softmax_focal_smoothed(x, labels, *, alpha=None, gamma=2.0, label_smoothing=0.1):
    """Σ_j t_j α_j (1 − p_j)^γ (−log p_j) with t = (1 − ε) onehot + ε / C (float64)."""
    x = np.asarray(x, dtype=np.float64)
    c = x.shape[-1]
    valid = labels >= 0
    t = np.where(valid, labels, 0)
    onehot = (np.arange(c) == t[..., None]).astype(np.float64)
    target = (1 - label_smoothing) * onehot + label_smoothing / c
    if alpha is None:
        a = np.ones(c)
    elif np.ndim(alpha) == 0:
        a = np.array([1 - alpha] + [alpha] * (c - 1))
    else:
        a = np.asarray(alpha, dtype=np.float64)
    # log p_j = −log Σ_k e^{x_k − x_j};  1 − p_j = Σ_{k≠j} e^{x_k − x_j} / Σ_k e^{x_k − x_j}
    diff = np.exp(x[..., None, :] - x[..., :, None])  # [..., j, k]
    others = np.sum(np.where(np.eye(c, dtype=bool), 0.0, diff), -1)  # Σ_{k≠j}
    log_p = -np.log1p(others)
    q = others / (1 + others)
    loss = np.sum(target * a * q**gamma * -log_p, -1)
    return np.where(valid, loss, 0.0)
