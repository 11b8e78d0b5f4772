"""Static-shape balanced sampling behind :func:`focal_array.rcnn.sample_balanced`: the
random sources it accepts and the rank-based selection kernel.

Every proposal gets a random integer key of :data:`KEY_BITS` bits and a category (0
foreground, 1 background, 2 neither) in the bits above them; sorted, the composite keys
``category · 2**KEY_BITS + key`` list each image's foreground in a uniformly random order,
then its background in a uniformly random order, then the rest. The sample is the first
``num_pos`` foreground and ``num_neg`` background proposals of that (stable) order: every
proposal whose key is below the ``num_pos``-th foreground key (``num_neg``-th background
key), and of those equal to it the lowest indices — one value sort, no inverse
permutation. Integer keys and the tie rule make the counts exact whatever the keys; equal
keys (two proposals of one category drawing the same 29 bits, probability ``2**-29`` per
pair) are ordered by index, which changes a proposal's chance of being chosen by at most
about ``n · 2**-29`` (``4e-6`` for ``n = 2000``).
"""

from __future__ import annotations

import numbers
from typing import Any

from ._matching import _index_dtype, _run
from ._namespace import (
    _library_key,
    device_of,
    is_jax,
    is_numpy,
    is_strict,
    is_torch,
    library_name,
)
from ._validate import eager_check, is_array

#: Random bits per proposal key: the category (0, 1, 2) fits in the bits above them within
#: an int32 (``3 · 2**29 - 1 < 2**31``), the one integer type every backend sorts natively.
KEY_BITS = 29


def _library(xp: Any) -> str:
    if is_jax(xp):
        return "jax"
    if is_torch(xp):
        return "torch"
    if is_strict(xp):
        return "array_api_strict"
    return "numpy" if is_numpy(xp) else getattr(xp, "__name__", str(xp))


_EXPECTED = {
    "jax": "a JAX PRNG key (jax.random.key(seed) or jax.random.PRNGKey(seed))",
    "torch": "a torch.Generator on the labels' device",
    "numpy": "a numpy.random.Generator (numpy.random.default_rng(seed))",
    "array_api_strict": "a numpy.random.Generator (numpy.random.default_rng(seed))",
}


def _rng_error(xp: Any, rng: Any, why: str = "") -> TypeError:
    lib = _library(xp)
    expected = _EXPECTED.get(lib, "a random generator of the labels' library")
    extra = f" ({why})" if why else ""
    got = library_name(rng) if is_array(rng) else \
        f"{type(rng).__module__}.{type(rng).__qualname__}"
    return TypeError(
        f"rng for {lib} arrays must be {expected}, or an array of uniform random keys in "
        f"[0, 1) of the labels' shape and library; got {got}{extra}"
    )


def _is_jax_key(rng: Any) -> bool:
    import jax
    import jax.numpy as jnp

    if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
        return rng.ndim == 0
    return rng.dtype == jnp.uint32 and tuple(rng.shape) == (2,)


def resolve_rng(xp: Any, rng: Any, labels: Any) -> tuple[str, Any]:
    """Check ``rng`` against the labels' backend: ``("jax_key" | "numpy" | "torch" |
    "keys", rng)``. Raises TypeError naming what the backend expects."""
    lib = _library(xp)
    if is_array(rng):
        if _library_key(rng) != _library_key(labels):
            raise _rng_error(xp, rng, "an array of another library")
        if lib == "jax" and _is_jax_key(rng):
            return "jax_key", rng
        if not xp.isdtype(rng.dtype, "real floating"):
            raise _rng_error(xp, rng, f"an array of dtype {rng.dtype}, neither a key nor "
                                      "floating keys")
        if tuple(rng.shape) != tuple(labels.shape):
            raise ValueError(f"rng as an array of random keys must have the labels' shape "
                             f"{tuple(labels.shape)}, got {tuple(rng.shape)}")
        eager_check([rng], lambda: xp.any(~((rng >= 0) & (rng < 1))),
                    lambda: "rng as an array of random keys must hold values in [0, 1) "
                            "(e.g. uniform random numbers); found values outside, or NaN")
        return "keys", rng
    if lib == "torch":
        import torch

        if not isinstance(rng, torch.Generator):
            raise _rng_error(xp, rng)
        if torch.device(rng.device) != labels.device:
            raise ValueError(f"rng is a torch.Generator on {rng.device} but the labels are "
                             f"on {labels.device}; make the generator on the labels' device "
                             "(torch.Generator(device=labels.device))")
        return "torch", rng
    if lib in ("numpy", "array_api_strict"):
        import numpy

        if not isinstance(rng, numpy.random.Generator):
            raise _rng_error(xp, rng)
        return "numpy", rng
    raise _rng_error(xp, rng)


def draw_keys(kind: str, rng: Any, labels: Any, xp: Any) -> Any:
    """Eagerly drawn int32 keys in ``[0, 2**KEY_BITS)`` of the labels' shape (NumPy and
    torch generators); JAX keys and key arrays are turned into keys inside the kernel."""
    shape = tuple(labels.shape)
    if kind == "numpy":
        import numpy

        keys = rng.integers(0, 2**KEY_BITS, size=shape, dtype=numpy.int32)
        return xp.asarray(keys, device=device_of(labels))
    if kind == "torch":
        import torch

        return torch.randint(0, 2**KEY_BITS, shape, generator=rng, dtype=torch.int32,
                             device=labels.device)
    return rng


def _keys_from(source: Any, kind: str, shape: tuple[int, ...], xp: Any) -> Any:
    if kind == "jax_key":
        import jax
        import jax.numpy as jnp

        bits = jax.random.bits(source, shape, dtype=jnp.uint32)
        return jnp.astype(bits >> (32 - KEY_BITS), jnp.int32)
    if kind == "keys":
        k = source if source.dtype == xp.float64 else xp.astype(source, xp.float32)
        scaled = xp.floor(k * float(2**KEY_BITS))
        scaled = xp.clip(scaled, 0.0, float(2**KEY_BITS - 1))  # unchecked inside a trace
        return xp.astype(scaled, xp.int32)
    return source  # already int32 keys


def check_count(name: str, value: Any, *, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def max_positives(num_samples: int, positive_fraction: float) -> int:
    """torchvision's ``int(batch_size_per_image * positive_fraction)`` (Python floats)."""
    return int(num_samples * positive_fraction)


def _first_of(member: Any, comp: Any, ordered: Any, start: Any, count: Any, index: Any,
              xp: Any) -> Any:
    """The ``count`` smallest composite keys of one category, ties to the lowest index.

    The category's keys occupy the sorted positions ``[start, start + size)``, so the
    ``count``-th smallest is ``ordered[start + count - 1]``: take every member below it and,
    of the members equal to it, the first ``count - below`` by index (what a stable
    ``argsort`` would list first).
    """
    n = comp.shape[-1]
    last = xp.clip(start + count - xp.asarray(1, dtype=index, device=device_of(count)), 0,
                   n - 1)
    threshold = xp.take_along_axis(ordered, last, axis=-1)
    below = member & (comp < threshold)
    tied = member & (comp == threshold)
    need = count - xp.sum(xp.astype(below, index), axis=-1, keepdims=True)

    def first_tied() -> Any:
        return tied & (xp.cumulative_sum(xp.astype(tied, index), axis=-1) <= need)

    if is_jax(xp):
        # more members equal to the threshold than needed (two keys drawn equal) is rare:
        # only then the running count (an XLA:CPU scan as costly as the rest together)
        import jax

        excess = xp.any(xp.sum(xp.astype(tied, index), axis=-1, keepdims=True) > need)
        chosen = jax.lax.cond(excess, first_tied, lambda: tied)
    else:
        chosen = first_tied()
    return (below | chosen) & (count > xp.asarray(0, dtype=index, device=device_of(count)))


def sample_kernel(labels: Any, source: Any, *, kind: str, num_samples: int, max_pos: int,
                  return_indices: bool, xp: Any) -> Any:
    """The balanced sample of validated labels ``(..., N)``: the mask, and with
    ``return_indices`` the ``(..., num_samples)`` indices and their validity.

    One sort of the composite keys per image: a value sort where only the mask is wanted
    (several times cheaper than an ``argsort`` on XLA:CPU), an ``argsort`` where the
    indices are. The choice is the same either way: the first ``num_pos`` foreground and
    ``num_neg`` background proposals of the stable order.
    """
    n = labels.shape[-1]
    index = _index_dtype(xp, labels)
    dev = device_of(labels)
    fg = labels >= xp.asarray(1, dtype=labels.dtype, device=dev)
    bg = labels == xp.asarray(0, dtype=labels.dtype, device=dev)
    c = lambda v: xp.asarray(v, dtype=index, device=dev)  # noqa: E731
    n_fg = xp.sum(xp.astype(fg, index), axis=-1, keepdims=True)
    n_bg = xp.sum(xp.astype(bg, index), axis=-1, keepdims=True)
    num_pos = xp.minimum(n_fg, c(max_pos))
    num_neg = xp.minimum(n_bg, c(num_samples) - num_pos)
    batch = labels.shape[:-1]
    if n == 0:
        mask = xp.zeros(labels.shape, dtype=xp.bool, device=dev)
        if not return_indices:
            return mask
        shape = (*batch, num_samples)
        return (mask, xp.zeros(shape, dtype=index, device=dev),
                xp.zeros(shape, dtype=xp.bool, device=dev))
    keys = _keys_from(source, kind, tuple(labels.shape), xp)
    i32 = lambda v: xp.asarray(v, dtype=xp.int32, device=dev)  # noqa: E731
    category = xp.where(fg, i32(0), xp.where(bg, i32(1), i32(2)))
    comp = category * i32(2**KEY_BITS) + keys
    order = None
    if return_indices:
        order = xp.argsort(comp, axis=-1, stable=True)
        ordered = xp.take_along_axis(comp, order, axis=-1)
    else:
        ordered = xp.sort(comp, axis=-1)
    mask = (_first_of(fg, comp, ordered, c(0), num_pos, index, xp)
            | _first_of(bg, comp, ordered, n_fg, num_neg, index, xp))
    if not return_indices:
        return mask
    slot = xp.arange(num_samples, dtype=index, device=dev)
    valid = slot < num_pos + num_neg
    # slot j < num_pos reads the j-th foreground of ``order``, later slots the background
    # that starts at position n_fg; unused slots read position 0 and are marked invalid
    place = xp.where(slot < num_pos, slot, n_fg + slot - num_pos)
    place = xp.where(valid, place, c(0))
    indices = xp.take_along_axis(order, place, axis=-1)
    return mask, xp.where(valid, indices, c(0)), valid


def run_sample(xp: Any, labels: Any, kind: str, source: Any, *, num_samples: int,
               max_pos: int, return_indices: bool) -> Any:
    return _run(sample_kernel, xp, labels, source, kind=kind, num_samples=num_samples,
                max_pos=max_pos, return_indices=return_indices)
