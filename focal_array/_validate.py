"""Checks on shapes, dtypes and option values, with messages that name the argument.

Static checks (dtype kind, shapes, option ranges) always run. Value checks read data, so
they run only where the backend is eager (:func:`eager_check`), never inside a JAX trace
or a ``torch.compile`` graph.
"""

from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeGuard, overload

import array_api_compat

from ._namespace import is_tracing

__all__ = [
    "check_bool",
    "check_bool_or_number_array",
    "check_broadcasts_to",
    "check_choice",
    "check_floating",
    "check_int",
    "check_integer",
    "check_number",
    "check_same_shape",
    "describe_scalar",
    "eager_check",
    "first_true_index",
    "is_array",
    "is_number",
    "normalize_axis",
    "not_finite_count",
]


def _kind(xp: Any, dtype: Any) -> str:
    for kind in ("bool", "signed integer", "unsigned integer", "real floating"):
        if xp.isdtype(dtype, kind):
            return kind
    return "complex floating" if xp.isdtype(dtype, "complex floating") else str(dtype)


def check_floating(xp: Any, x: Any, name: str) -> None:
    """Require a real floating dtype (logits, probabilities, boxes)."""
    if not xp.isdtype(x.dtype, "real floating"):
        raise TypeError(
            f"{name} must have a real floating dtype (float16, bfloat16, float32 or float64), "
            f"got {x.dtype} ({_kind(xp, x.dtype)})"
        )


def check_integer(xp: Any, x: Any, name: str) -> None:
    """Require an integer dtype (class labels, indices)."""
    if not xp.isdtype(x.dtype, "integral"):
        raise TypeError(
            f"{name} must have an integer dtype (class indices), got {x.dtype} "
            f"({_kind(xp, x.dtype)})"
        )


def check_bool_or_number_array(xp: Any, x: Any, name: str) -> None:
    """Require a boolean, integer or real floating dtype (targets, weights, masks)."""
    if not (xp.isdtype(x.dtype, "bool") or xp.isdtype(x.dtype, "integral")
            or xp.isdtype(x.dtype, "real floating")):
        raise TypeError(f"{name} must be boolean, integer or real floating, got {x.dtype}")


def check_same_shape(name_a: str, shape_a: Sequence[int], name_b: str,
                     shape_b: Sequence[int], *, hint: str = "") -> None:
    """Require two shapes to be equal."""
    if tuple(shape_a) != tuple(shape_b):
        extra = f"; {hint}" if hint else ""
        raise ValueError(
            f"{name_b} must have shape {tuple(shape_a)} (the shape of {name_a}), "
            f"got {tuple(shape_b)}{extra}"
        )


def check_broadcasts_to(name: str, shape: Sequence[int], target: Sequence[int],
                        target_name: str) -> None:
    """Require ``shape`` to broadcast to ``target`` without growing it."""
    shape, target = tuple(shape), tuple(target)
    ok = len(shape) <= len(target) and all(
        s == 1 or s == t for s, t in zip(reversed(shape), reversed(target), strict=False)
    )
    if not ok:
        raise ValueError(
            f"{name} with shape {shape} does not broadcast to {target_name} shape {target}"
        )


def check_number(name: str, value: Any, *, low: float | None = None,
                 high: float | None = None, low_open: bool = False,
                 high_open: bool = False) -> float:
    """Require a finite real number within a range; return it as a float.

    Written with comparisons only (no ``math.isfinite``, no ``float()``), so that a
    symbolic float passes through unchanged: ``torch.compile`` turns a Python float option
    that changes between calls (γ, α) into a ``SymFloat``, on which ``math.isfinite`` is a
    graph break and ``float()`` a specialization. The comparisons become guards of the
    compiled graph instead, and the checks still run for every value it is called with.
    """
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, *_symbolic_types())):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    number: Any = value  # a real number: a float, or a symbolic one kept as it is
    v: Any = number if isinstance(number, _symbolic_types()) else float(number)
    lo = "(" if low_open else "["
    hi = ")" if high_open else "]"
    interval = f"{lo}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi}"
    # NaN fails both comparisons; ±inf fails one
    ok = -math.inf < v < math.inf
    if low is not None:
        ok = ok and (v > low if low_open else v >= low)
    if high is not None:
        ok = ok and (v < high if high_open else v <= high)
    if not ok:
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return v


def _symbolic_types() -> tuple[type, ...]:
    """The symbolic number types of an imported torch (none otherwise)."""
    torch = sys.modules.get("torch")
    if torch is None or getattr(torch, "SymFloat", None) is None:
        return ()
    return (torch.SymFloat, torch.SymInt)


def is_number(value: Any) -> bool:
    """True for a real Python number (bool excluded), or a symbolic one under a compiler."""
    if isinstance(value, bool):
        return False
    return isinstance(value, (numbers.Real, *_symbolic_types()))


def is_array(value: Any) -> TypeGuard[Any]:
    """True for an array of some Array API library; never for a (symbolic) number, which
    ``array_api_compat.is_array_api_obj`` would probe with ``hasattr`` (a graph break
    under ``torch.compile``)."""
    return not is_number(value) and array_api_compat.is_array_api_obj(value)


def not_finite_count(xp: Any, count: Any) -> Any:
    """0-d boolean array: ``count`` (a 0-d integer or floating array) is not a finite
    number >= 0. NaN fails ``>= 0``; an integer is always finite."""
    if xp.isdtype(count.dtype, "integral"):
        return count < 0
    return ~((count >= 0) & (count < float("inf")))


def describe_scalar(a: Any) -> str:
    """A 0-d array's value and dtype for a message (reads data: eager only)."""
    try:
        value = a.item() if hasattr(a, "item") else float(a)
    except (TypeError, ValueError):  # pragma: no cover - a library without item()
        value = a
    return f"{value!r} ({a.dtype})"


def check_bool(name: str, value: Any) -> bool:
    """Require ``True`` or ``False`` (not a truthy value)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


@overload
def check_int(name: str, value: Any, *, optional: Literal[False] = False,
              what: str = "") -> int: ...
@overload
def check_int(name: str, value: Any, *, optional: bool, what: str = "") -> int | None: ...


def check_int(name: str, value: Any, *, optional: bool = False, what: str = "") -> int | None:
    """Require a Python or NumPy integer (not a bool), or None where ``optional``;
    ``what`` says what the integer is, for the message."""
    if optional and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        kind = "None or an integer" if optional else "an integer"
        raise TypeError(f"{name} must be {kind}{f' ({what})' if what else ''}, got {value!r}")
    return int(value)


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """Require one of a fixed set of strings."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def normalize_axis(axis: Any, ndim: int, name: str = "axis") -> int:
    """Turn a possibly negative axis into a non-negative one, checking it is in range."""
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {axis!r}")
    index = int(axis)
    if not -ndim <= index < ndim:
        raise ValueError(f"{name}={axis} is out of range for an array with {ndim} dimensions")
    return index % ndim


def first_true_index(xp: Any, mask: Any) -> tuple[int, ...]:
    """The index (row-major) of the first True in a concrete boolean array, for messages.

    Only for eager error reporting: it reads data. The caller knows some entry is True.
    """
    flat = xp.reshape(xp.astype(mask, xp.int8), (-1,))
    i = int(xp.argmax(flat))
    index = []
    for size in reversed(mask.shape):
        index.append(i % size)
        i //= size
    return tuple(reversed(index))


def eager_check(arrays: Sequence[Any], bad: Callable[[], Any],
                message: Callable[[], str]) -> None:
    """Raise ``ValueError(message())`` if ``bad()`` is true, unless the arrays are traced.

    ``bad`` returns a 0-d boolean array; it is only evaluated (which reads data and, on an
    accelerator, waits for it) when every array is concrete.
    """
    if is_tracing(*arrays):
        return
    result = bad()
    # concrete inputs still give a traced result when closed over inside jax.jit
    if is_tracing(result):
        return
    if bool(result):
        raise ValueError(message())
