"""Fast path of the sigmoid focal loss on jax (see :mod:`focal_array._fused`)."""

from __future__ import annotations

from typing import Any


def sigmoid_focal(x: Any, y: Any, *, alpha: float | None, gamma: float) -> Any:
    """Elementwise loss, or None where this fast path does not apply."""
    return None


def sigmoid_focal_value_and_grad(x: Any, y: Any, *, alpha: float | None,
                                 gamma: float) -> Any:
    """(loss, dloss/dx) elementwise, or None where this fast path does not apply."""
    return None
