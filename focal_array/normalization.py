"""Running normalizers for the detection losses, as pure functions (state in, state out).

RetinaNet divides the summed loss by the number of positive anchors. That count jumps from
batch to batch (and is 0 for a batch without objects), so detectron2 divides instead by an
exponential moving average of it. Here the average is an array the caller carries — in a
JAX train state, a torch module buffer, or a local variable — so the update works on every
backend and under ``jax.jit`` / ``torch.compile`` with no hidden globals.
"""

from __future__ import annotations

from typing import Any

import array_api_compat

from . import _validate as v
from ._namespace import constant, namespace

__all__ = ["ema_normalizer", "init_ema_normalizer"]


def init_ema_normalizer(value: float = 100.0, /, *, xp: Any = None, dtype: Any = None,
                        device: Any = None) -> Any:
    """The initial state of an EMA normalizer: a 0-d array holding ``value``.

    detectron2's RetinaNet starts its average at 100 (a typical positive count per batch),
    so the first steps are not divided by a tiny count.

    Args:
        value: initial count, > 0.
        xp: array namespace or library module (NumPy's by default).
        dtype: floating dtype of that library (float32 by default).
        device: device to create it on.

    Returns:
        0-d array.

    Examples:
        >>> import numpy as np
        >>> init_ema_normalizer()
        array(100., dtype=float32)
    """
    value = v.check_number("value", value, low=0.0, low_open=True)
    if xp is None:
        import array_api_compat.numpy as xp
    else:
        xp = array_api_compat.array_namespace(xp.asarray(0.0))
    dtype = xp.float32 if dtype is None else dtype
    return xp.asarray(value, dtype=dtype, device=device)


def ema_normalizer(state: Any, count: Any, /, *, momentum: float = 0.9) -> Any:
    r"""One step of the running normalizer: the new state, to use as ``normalizer`` now.

    .. math::

        n_t = m \, n_{t-1} + (1 - m) \max(\text{count}_t, 1)

    Pass the returned value both as this step's ``normalizer`` (or ``normalize`` of
    :func:`~focal_array.dense_detection_loss`) and as next step's ``state``. For several
    devices, all-reduce ``count`` first so every replica carries the same state.

    Args:
        state: 0-d floating array, the previous average (see :func:`init_ema_normalizer`).
        count: this step's count (number of positive anchors): a 0-d array of the same
            library (any real dtype) or a Python number, ``>= 0``.
        momentum: m in [0, 1); detectron2 uses 0.9.

    Returns:
        0-d array in ``state``'s dtype and device. No gradient flows through it in a
        meaningful way: counts are data.

    Examples:
        >>> import numpy as np
        >>> s = init_ema_normalizer(100.0)
        >>> s = ema_normalizer(s, np.asarray(20))
        >>> float(s)
        92.0
    """
    xp = namespace(state=state, count=count if array_api_compat.is_array_api_obj(count)
                   else None)
    v.check_floating(xp, state, "state")
    if state.ndim != 0:
        raise ValueError(f"state must be a 0-d array, got shape {tuple(state.shape)}")
    momentum = v.check_number("momentum", momentum, low=0.0, high=1.0, high_open=True)
    if array_api_compat.is_array_api_obj(count):
        if count.ndim != 0:
            raise ValueError(f"count must be a number or a 0-d array, got shape "
                             f"{tuple(count.shape)}")
        v.eager_check([count], lambda: count < 0, lambda: f"count must be >= 0, got {count!r}")
        c = xp.astype(count, state.dtype)
    else:
        c = constant(xp, v.check_number("count", count, low=0.0), state)
    one = constant(xp, 1.0, state)
    return momentum * state + (1.0 - momentum) * xp.maximum(c, one)
