"""Resolve the caller's array namespace once per call, and the dtype/device helpers.

Every public function calls :func:`namespace` at its boundary and then computes with the
returned ``xp`` only. Nothing here imports jax or torch: a framework is only looked at when
the caller's arrays already come from it (it is then in ``sys.modules``).
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Iterator
from typing import Any

import array_api_compat

__all__ = [
    "compute_dtype",
    "constant",
    "constants_scaled_by",
    "device_of",
    "is_jax",
    "is_numpy",
    "is_strict",
    "is_torch",
    "is_tracing",
    "library_name",
    "namespace",
    "stop_gradient",
]


def library_name(x: Any) -> str:
    """Name the library an array comes from, for error messages (e.g. ``"torch.Tensor"``)."""
    t = type(x)
    module = t.__module__.split(".")[0]
    if module == "jaxlib" or module == "jax":
        return "jax.Array"
    return f"{module}.{t.__qualname__}"


def _library_key(x: Any) -> str:
    """Group arrays by the library that owns them (jax tracers count as jax)."""
    if array_api_compat.is_jax_array(x):
        return "jax"
    if array_api_compat.is_torch_array(x):
        return "torch"
    if array_api_compat.is_numpy_array(x):
        return "numpy"
    return type(x).__module__.split(".")[0]


def namespace(**arrays: Any) -> Any:
    """Return the Array API namespace shared by the named arrays (``None`` values skipped).

    Raises:
        TypeError: an argument is not an array, or the arrays come from different libraries
            (the message names the arguments and their libraries).
    """
    present = {name: a for name, a in arrays.items() if a is not None}
    for name, a in present.items():
        if not array_api_compat.is_array_api_obj(a):
            raise TypeError(
                f"{name} must be an array (NumPy, JAX, PyTorch or another Array API library), "
                f"got {type(a).__name__}"
            )
    keys: dict[Any, str] = {}
    for name, a in present.items():
        keys.setdefault(_library_key(a), name)
    if len(keys) > 1:
        described = ", ".join(
            f"{name!r} is a {library_name(present[name])}" for name in keys.values()
        )
        raise TypeError(
            f"arrays from different libraries were mixed: {described}; "
            "pass all array arguments from one library"
        )
    return array_api_compat.array_namespace(*present.values())


def is_numpy(xp: Any) -> bool:
    """True for NumPy's namespace (as wrapped by array-api-compat)."""
    return array_api_compat.is_numpy_namespace(xp)


def is_jax(xp: Any) -> bool:
    """True for JAX's namespace."""
    return array_api_compat.is_jax_namespace(xp)


def is_torch(xp: Any) -> bool:
    """True for PyTorch's namespace (as wrapped by array-api-compat)."""
    return array_api_compat.is_torch_namespace(xp)


def is_strict(xp: Any) -> bool:
    """True for the array_api_strict reference namespace."""
    return array_api_compat.is_array_api_strict_namespace(xp)


def is_tracing(*arrays: Any) -> bool:
    """True when any array is abstract: a JAX tracer, or a tensor seen by a torch compiler
    or a functorch transform. Value checks (which read data) must be skipped then."""
    # look only at frameworks already imported (a None entry means "blocked": skip it)
    jax = sys.modules.get("jax")
    if jax is not None and hasattr(jax, "core"):
        if any(isinstance(a, jax.core.Tracer) for a in arrays):
            return True
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "compiler"):
        if torch.compiler.is_compiling():
            return True
        tensors = [a for a in arrays if isinstance(a, torch.Tensor)]
        if tensors:
            functorch = getattr(torch._C, "_functorch", None)
            wrapped = getattr(functorch, "is_functorch_wrapped_tensor", None)
            if wrapped is not None and any(wrapped(t) for t in tensors):
                return True
            if any(getattr(t, "is_meta", False) for t in tensors):
                return True
            if any(type(t).__name__ == "FakeTensor" for t in tensors):
                return True
    return False


def device_of(x: Any) -> Any:
    """The device an array lives on."""
    return array_api_compat.device(x)


def compute_dtype(xp: Any, dtype: Any) -> Any:
    """The floating dtype losses are computed in: float16/bfloat16 are upcast to float32."""
    half = [getattr(xp, name, None) for name in ("float16", "bfloat16")]
    if any(h is not None and dtype == h for h in half):
        return xp.float32
    return dtype


def stop_gradient(xp: Any, x: Any) -> Any:
    """``x`` with no gradient flowing back through it (identity without autodiff).

    Used for quantities the result is mathematically invariant to, such as the max shift
    of a softmax: letting autodiff differentiate them adds terms that cancel exactly in
    theory and leave rounding noise in practice.
    """
    if is_jax(xp):
        import jax

        return jax.lax.stop_gradient(x)
    if is_torch(xp):
        return x.detach()
    return x


#: [unit] while :func:`constants_scaled_by` is active: the 0-d array every :func:`constant`
#: is multiplied by. A plain module list, not a ContextVar: torch.compile traces this code
#: and Dynamo cannot trace ``ContextVar.get``; it is only set while JAX traces (one thread).
_UNIT: list[Any] = []


def constant(xp: Any, value: float, like: Any) -> Any:
    """A 0-d array holding ``value`` with ``like``'s dtype and device.

    Making constants explicitly (rather than mixing Python floats into expressions) keeps
    dtypes from promoting and keeps ``torch.compile`` graphs whole; formulas make all of
    theirs here, so an executor can tell them apart (:func:`constants_scaled_by`).
    """
    if _UNIT:
        return xp.asarray(value, dtype=like.dtype, device=device_of(like)) * _UNIT[-1]
    if is_numpy(xp):
        # an eager executor makes the same few constants for every block; NumPy's 0-d
        # arrays are cached (nothing writes to them) instead of made afresh each time
        return _numpy_constant(float(value), like.dtype)
    return xp.asarray(value, dtype=like.dtype, device=device_of(like))


@functools.lru_cache(maxsize=1024)
def _numpy_constant(value: float, dtype: Any) -> Any:
    import numpy as np

    c = np.asarray(value, dtype=dtype)
    c.flags.writeable = False
    return c


@contextlib.contextmanager
def constants_scaled_by(unit: Any) -> Iterator[None]:
    """Within the block, every :func:`constant` is ``value · unit``.

    For a compiler that merges equal constants across the computations that use them: the
    JAX executor traces a formula's derivative with ``unit`` an opaque 1 (an optimization
    barrier's output), so its constants are not the loss's, and XLA:CPU does not
    materialize their broadcasts at full size to share them between two fused loops.
    """
    _UNIT.append(unit)
    try:
        yield
    finally:
        _UNIT.pop()


def pinned(x: Any, xp: Any) -> Any:
    """``x`` (a product of two floats) passed through a select, so that no compiler can
    contract it into the add or subtract that reads it as one fused multiply-add.

    XLA (JAX on every device) and Triton (``torch.compile`` on GPU) contract ``a·b + c``
    into ``fma(a, b, c)`` where their fusion allows, which depends on the loop shape; a
    ``select`` between the two breaks the pattern. ``x == x`` is false only for NaN (then
    0), so for every number the value is ``x``, bit for bit. Eager NumPy, array_api_strict
    and PyTorch run one IEEE operation per call and never contract: there it is ``x``.
    """
    if not compiled(xp):
        return x
    return xp.where(x == x, x, constant(xp, 0.0, x))


def compiled(xp: Any) -> bool:
    """True where a compiler may fuse the operations being traced: always on JAX (where
    user code is usually under ``jit``, and the library's matching kernels always are),
    and under ``torch.compile`` on PyTorch."""
    if is_jax(xp):
        return True
    if is_torch(xp):
        import torch

        return bool(torch.compiler.is_compiling())
    return False
