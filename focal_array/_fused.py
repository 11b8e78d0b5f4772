"""Backend fast paths for the sigmoid focal loss's elementwise terms.

The loss math is written once, with ``xp`` only, in :mod:`focal_array.losses` and
:mod:`focal_array.gradients`; every backend runs it. Where a backend has a faster way to
evaluate the *same* formula, it is used here instead, with the same accuracy contract
(float32 within 2e-6 relative of float64, values and gradients, every finite logit, every
γ ≥ 0):

- NumPy (:mod:`focal_array._fused_numpy`): the formula evaluated block by block into a
  preallocated result, so the temporaries stay in cache and no full-size intermediate is
  allocated.
- JAX (:mod:`focal_array._fused_jax`): a select-free form of the formula (XLA:CPU runs
  ``select`` several times slower than ``max``/``min``) behind a ``jax.custom_jvp`` whose
  derivative is the analytic gradient; ``jit``, ``vmap``, ``jvp`` and higher-order
  ``grad`` keep working.
- PyTorch (:mod:`focal_array._fused_torch`): a ``torch.autograd.Function`` built from
  PyTorch's own accurate kernels, its backward the analytic gradient.

Each entry point returns ``None`` where no fast path applies (another backend, a dtype or
a situation the fast path does not cover); the caller then runs the generic formula.
:data:`ENABLED` switches the fast paths off (tests compare both).
"""

from __future__ import annotations

from typing import Any

from ._namespace import is_jax, is_numpy, is_torch

__all__ = ["ENABLED", "sigmoid_focal_elementwise", "sigmoid_focal_labels_elementwise",
           "sigmoid_focal_value_and_grad_elementwise"]

#: Set to False to run the generic ``xp`` formula on every backend.
ENABLED = True


def _backend(xp: Any) -> Any:
    if not ENABLED:
        return None
    if is_numpy(xp):
        from . import _fused_numpy

        return _fused_numpy
    if is_jax(xp):
        from . import _fused_jax

        return _fused_jax
    if is_torch(xp):
        from . import _fused_torch

        return _fused_torch
    return None


def sigmoid_focal_elementwise(x: Any, y: Any, *, alpha: float | None, gamma: float,
                              xp: Any) -> Any:
    """α_t (1 − p_t)^γ BCE(x, y) elementwise on the backend's fast path, or None.

    ``x``: logits in the compute dtype (float32/float64); ``y``: a boolean mask of x's
    shape (0/1 targets) or targets in [0, 1] in x's dtype (label smoothing already
    applied). Differentiable with respect to ``x`` (and ``y`` where it is floating) by the
    backend's autodiff.
    """
    backend = _backend(xp)
    if backend is None:
        return None
    return backend.sigmoid_focal(x, y, alpha=alpha, gamma=gamma)


def sigmoid_focal_value_and_grad_elementwise(x: Any, y: Any, *, alpha: float | None,
                                             gamma: float, xp: Any) -> Any:
    """(ℓ, ∂ℓ/∂x) elementwise on the backend's fast path, or None; arguments as above."""
    backend = _backend(xp)
    if backend is None:
        return None
    return backend.sigmoid_focal_value_and_grad(x, y, alpha=alpha, gamma=gamma)


def sigmoid_focal_labels_elementwise(x: Any, labels: Any, *, alpha: float | None, gamma: float,
                                     xp: Any) -> Any:
    """The elementwise loss of ``(..., C)`` logits against integer ``labels`` ``(...)``
    (targets: the labels' one-hot, none for a label outside [0, C)), or None.

    For backends whose compiler would materialize the boolean mask
    ``labels[..., None] == arange(C)`` at full size (JAX on CPU); elsewhere None, and the
    caller passes that mask to :func:`sigmoid_focal_elementwise`.
    """
    backend = _backend(xp)
    fast = getattr(backend, "sigmoid_focal_labels", None)
    if fast is None:
        return None
    return fast(x, labels, alpha=alpha, gamma=gamma)
