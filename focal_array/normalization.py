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
from ._typing import ArrayLike, ArrayT, Number

__all__ = ["ema_normalizer", "init_ema_normalizer"]


def init_ema_normalizer(value: Number = 100.0, /, *, xp: Any = None, dtype: Any = None,
                        device: Any = None) -> Any:
    """The initial state of an EMA normalizer: a 0-d array holding ``value``.

    detectron2's RetinaNet starts its average at 100 (a typical positive count per batch),
    so the first steps are not divided by a tiny count.

    Args:
        value: initial count, > 0 and finite.
        xp: array namespace or library module (NumPy's by default).
        dtype: floating dtype of that library (float32 by default). An integer dtype is
            accepted for an integer ``value`` only: a ValueError rather than truncating
            100.7 to 100 (and :func:`ema_normalizer` needs a floating state anyway); a
            value beyond the dtype's range is a ValueError too.
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
    if xp.isdtype(dtype, "bool") or not xp.isdtype(dtype, ("integral", "real floating")):
        raise TypeError(f"dtype must be a real floating dtype (or an integer one), got {dtype}")
    if xp.isdtype(dtype, "integral"):
        # a cast would truncate (100.7 -> 100) or wrap silently
        info = xp.iinfo(dtype)
        if value != int(value) or not info.min <= value <= info.max:
            raise ValueError(
                f"value must be a whole number at most {info.max} for dtype {dtype}, "
                f"got {value!r}; use a floating dtype (ema_normalizer needs one) or round it"
            )
        return xp.asarray(int(value), dtype=dtype, device=device)
    if value > float(xp.finfo(dtype).max):
        raise ValueError(f"value must be at most {float(xp.finfo(dtype).max)!r} (the largest "
                         f"{dtype}), got {value!r}")
    return xp.asarray(value, dtype=dtype, device=device)


def ema_normalizer(state: ArrayT, count: ArrayLike | Number, /, *, momentum: Number = 0.9
                   ) -> ArrayT:
    r"""One step of the running normalizer: the new state, to use as ``normalizer`` now.

    .. math::

        n_t = m \, n_{t-1} + (1 - m) \max(\text{count}_t, 1)

    Pass the returned value both as this step's ``normalizer`` (or ``normalize`` of
    :func:`~focal_array.dense_detection_loss`) and as next step's ``state``. For several
    devices, all-reduce ``count`` first so every replica carries the same state.

    Args:
        state: 0-d floating array, the previous average (see :func:`init_ema_normalizer`).
        count: this step's count (number of positive anchors): a 0-d array of the same
            library (any real dtype) or a Python number, finite and ``>= 0`` (inf or NaN
            is a ValueError for both, the array's checked where it is concrete).
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
    xp = namespace(state=state, count=count if v.is_array(count) else None)
    v.check_floating(xp, state, "state")
    if state.ndim != 0:
        raise ValueError(f"state must be a 0-d array, got shape {tuple(state.shape)}")
    momentum = v.check_number("momentum", momentum, low=0.0, high=1.0, high_open=True)
    if v.is_array(count):
        if count.ndim != 0:
            raise ValueError(f"count must be a number or a 0-d array, got shape "
                             f"{tuple(count.shape)}")
        if not (xp.isdtype(count.dtype, "integral") or xp.isdtype(count.dtype, "real floating")):
            raise TypeError(f"count must be integer or real floating, got {count.dtype}")
        # the same range as for a Python number: a finite count >= 0 (NaN fails >= 0)
        v.eager_check([count], lambda: v.not_finite_count(xp, count),
                      lambda: f"count must be a finite number >= 0, got "
                      f"{v.describe_scalar(count)}")
        c = xp.astype(count, state.dtype)
    else:
        c = constant(xp, v.check_number("count", count, low=0.0), state)
    one = constant(xp, 1.0, state)
    previous: Any = state  # its operators are its library's (the TypeVar's bound has none)
    return momentum * previous + (1.0 - momentum) * xp.maximum(c, one)
