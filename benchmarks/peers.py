"""The implementations focal_array is measured against, and the float64 references.

- :func:`naive_sigmoid_focal_numpy` — torchvision's ``sigmoid_focal_loss`` formula written
  plainly in NumPy (the baseline a NumPy user would write).
- :func:`torchvision_formula` — the same formula in PyTorch, transcribed from
  ``torchvision.ops.sigmoid_focal_loss`` (BSD-3); it stands in for torchvision where
  torchvision is not installed (its own row then says so).
- :func:`fused_stable` — a hand-written fused, stable log-space formula on any ``xp``
  (``jax.numpy`` under ``jit`` is the "best hand-fused reference" of the issue; NumPy is
  the "stable formula in NumPy").
- :func:`plain_match` — torchvision's ``box_iou`` + ``Matcher`` rule written plainly on
  any ``xp`` (NumPy, ``jax.numpy``, torch through array-api-compat).
- :func:`naive_softmax_focal_numpy`, :func:`naive_softmax_ce_numpy` — log-softmax focal
  loss and cross-entropy written plainly in NumPy.
- :func:`log_softmax_focal_torch`, :func:`log_softmax_focal_jnp` — the softmax focal loss
  a PyTorch / JAX user would write on top of ``F.log_softmax`` / ``jax.nn.log_softmax``.
- :func:`reference_sigmoid_grad64` — float64 gradient of the sigmoid focal loss, for the
  accuracy column.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def naive_sigmoid_focal_numpy(x: np.ndarray, y: np.ndarray, alpha: float = 0.25,
                              gamma: float = 2.0) -> np.ndarray:
    """torchvision's formula: BCE-with-logits × (1 − p_t)^γ × α_t, elementwise."""
    with np.errstate(over="ignore"):
        p = 1.0 / (1.0 + np.exp(-x))
    ce = np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))
    p_t = p * y + (1 - p) * (1 - y)
    loss = ce * ((1 - p_t) ** gamma)
    alpha_t = alpha * y + (1 - alpha) * (1 - y)
    return alpha_t * loss


def torchvision_formula(x: Any, y: Any, alpha: float = 0.25, gamma: float = 2.0) -> Any:
    """``torchvision.ops.sigmoid_focal_loss(x, y, alpha, gamma, reduction="none")``."""
    import torch
    import torch.nn.functional as F

    p = torch.sigmoid(x)
    ce_loss = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    p_t = p * y + (1 - p) * (1 - y)
    loss = ce_loss * ((1 - p_t) ** gamma)
    alpha_t = alpha * y + (1 - alpha) * (1 - y)
    return alpha_t * loss


def fused_stable(xp: Any, x: Any, y: Any, alpha: float = 0.25, gamma: float = 2.0) -> Any:
    """Stable log-space focal loss for 0/1 targets, one exp and one log1p per element.

    log p = −(max(−x, 0) + log1p(e^−|x|)), log(1 − p) = −(max(x, 0) + log1p(e^−|x|));
    log(1 − p_t) picks the other one; (1 − p_t)^γ = exp(γ log(1 − p_t)).
    """
    e = xp.exp(-xp.abs(x))
    l1 = xp.log1p(e)
    log_p = -(xp.maximum(-x, 0.0) + l1)
    log_1mp = -(xp.maximum(x, 0.0) + l1)
    bce = -(y * log_p + (1.0 - y) * log_1mp)
    log_q = y * log_1mp + (1.0 - y) * log_p
    alpha_t = alpha * y + (1.0 - alpha) * (1.0 - y)
    return alpha_t * xp.exp(gamma * log_q) * bce


def _naive_log_softmax_t(x: np.ndarray, labels: np.ndarray, axis: int) -> np.ndarray:
    z = x - x.max(axis=axis, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=axis, keepdims=True))
    return np.take_along_axis(logp, np.expand_dims(labels, axis), axis=axis).squeeze(axis)


def naive_softmax_focal_numpy(x: np.ndarray, labels: np.ndarray, gamma: float = 2.0,
                              axis: int = -1) -> np.ndarray:
    """−(1 − p_t)^γ log p_t with log p from a max-shifted log-softmax."""
    lp_t = _naive_log_softmax_t(x, labels, axis)
    return -((1 - np.exp(lp_t)) ** gamma) * lp_t


def naive_softmax_ce_numpy(x: np.ndarray, labels: np.ndarray, axis: int = -1) -> np.ndarray:
    """−log p_t with log p from a max-shifted log-softmax."""
    return -_naive_log_softmax_t(x, labels, axis)


def log_softmax_focal_torch(x: Any, labels: Any, gamma: float = 2.0, dim: int = -1) -> Any:
    """−(1 − p_t)^γ log p_t, log p_t from ``F.log_softmax``, p_t = exp(log p_t)."""
    import torch.nn.functional as F

    lp_t = F.log_softmax(x, dim=dim).gather(dim, labels.unsqueeze(dim)).squeeze(dim)
    return -((1 - lp_t.exp()) ** gamma) * lp_t


def log_softmax_focal_jnp(x: Any, labels: Any, gamma: float = 2.0, axis: int = -1) -> Any:
    """The same on ``jax.nn.log_softmax``."""
    import jax
    import jax.numpy as jnp

    logp = jax.nn.log_softmax(x, axis=axis)
    lp_t = jnp.take_along_axis(logp, jnp.expand_dims(labels, axis), axis=axis).squeeze(axis)
    return -((1 - jnp.exp(lp_t)) ** gamma) * lp_t


def plain_box_iou(xp: Any, a: Any, b: Any) -> Any:
    """torchvision ``box_iou``: (A, 4) × (G, 4) → (A, G)."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = xp.maximum(a[:, None, :2], b[None, :, :2])
    rb = xp.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = xp.clip(rb - lt, min=0.0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def plain_match(xp: Any, anchors: Any, gts: Any, high: float = 0.5, low: float = 0.4) -> Any:
    """torchvision ``Matcher(high, low, allow_low_quality_matches=True)`` on box_iou.

    Works on a (G, A) quality matrix as torchvision does; −1 below ``low``, −2 between.
    """
    q = xp.permute_dims(plain_box_iou(xp, anchors, gts), (1, 0))  # (G, A)
    matched_vals = xp.max(q, axis=0)
    matches = xp.argmax(q, axis=0)
    below = xp.full_like(matches, -1)
    between = xp.full_like(matches, -2)
    out = xp.where(matched_vals < low, below, xp.where(matched_vals < high, between, matches))
    best_per_gt = xp.max(q, axis=1)
    tied = xp.any(q == best_per_gt[:, None], axis=0)
    return xp.where(tied, matches, out)


def reference_sigmoid_grad64(x: np.ndarray, y: np.ndarray, alpha: float = 0.25,
                             gamma: float = 2.0) -> np.ndarray:
    """d/dx of α_t (1 − p_t)^γ BCE in float64, 0/1 targets, from the textbook derivative."""
    x = x.astype(np.float64)
    y = y.astype(np.float64)
    p = 1.0 / (1.0 + np.exp(-x))
    s = 1.0 / (1.0 + np.exp(x))
    bce = y * np.logaddexp(0.0, -x) + (1 - y) * np.logaddexp(0.0, x)
    q = y * s + (1 - y) * p
    at = alpha * y + (1 - alpha) * (1 - y)
    # d q / dx = (1 − 2y) p s; q^(γ−1) p s written as q^γ · (p s / q)
    dm = gamma * q**gamma * (1 - 2 * y) * (p * s / q)
    return at * (dm * bce + q**gamma * ((1 - y) * p - y * s))
