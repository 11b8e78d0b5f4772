"""``focal-array inspect``'s memory estimate: refuse, before anything is allocated, a
dataset whose largest image would need more memory than allowed.
"""

from __future__ import annotations

import os
from typing import Any

from . import coco
from ._cli_stats import Backend, UsageError, _input_size, _padded_boxes
from .anchors import anchors_per_level

__all__ = ["available_memory", "check_memory", "memory_needed"]

#: Memory estimate of matching one image: bytes per anchor (the float32 anchors on the host
#: and on the backend, their grid extents, the matched indices, the rows handed over) and
#: per anchor-box slot (the matcher's float32 IoU matrices and tie scores). Measured peaks
#: of 4000 x 4000 images (3.0 M anchors) with 1 and 50 boxes stay below this on NumPy,
#: PyTorch and JAX (~8 B per pair).
BYTES_PER_ANCHOR = 64
BYTES_PER_PAIR = 12
#: Share of the available memory one image may take unless --max-memory says otherwise.
MEMORY_SHARE = 0.5
#: The limit where the available memory cannot be read (not Linux, no sysconf).
FALLBACK_MEMORY_LIMIT = 8 * 2**30


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``, else the free
    physical pages from ``sysconf``), or None where neither can be read."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):
        return None


def memory_needed(ds: coco.CocoDataset, image_size: tuple[int, int] | None, backend: Backend,
                  ) -> tuple[int, dict[str, Any]]:
    """The largest memory estimate of matching one image of ``ds``, and what makes it up.

    Per image: ``anchors × (BYTES_PER_ANCHOR + BYTES_PER_PAIR × slots)`` with ``slots``
    the box slots the matcher gets (:func:`_padded_boxes`). Reads only sizes and counts
    (no array is made), so an absurd size is refused before anything is allocated.
    """
    counts: dict[tuple[int, int], int] = {}
    worst: tuple[int, dict[str, Any]] = (0, {})
    for info in ds.images:
        size, _ = _input_size(info, image_size)
        anchors = counts.get(size)
        if anchors is None:
            anchors = counts[size] = sum(g.num_anchors for g in anchors_per_level(size))
        n = len(ds.annotations(info.id))
        slots = _padded_boxes(n, backend) if n else 0
        need = anchors * (BYTES_PER_ANCHOR + BYTES_PER_PAIR * slots)
        if need > worst[0]:
            worst = (need, {"image_id": info.id, "size": size, "anchors": anchors,
                            "slots": slots})
    return worst


def _bytes(n: float) -> str:
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:,.3g} {unit}" if n < 1000 * 2**40 else f"{n / 2**40:.3g} TiB"
    return f"{n:.0f} B"


def check_memory(ds: coco.CocoDataset, image_size: tuple[int, int] | None,
                 backend: Backend, max_memory: float | None) -> None:
    """Refuse up front (UsageError) a dataset whose largest image would need more memory
    than allowed: ``max_memory`` bytes (``math.inf``: no limit), or by default
    :data:`MEMORY_SHARE` of the available memory."""
    if max_memory is None:
        available = available_memory()
        if available is None:
            limit, what = float(FALLBACK_MEMORY_LIMIT), "the default limit"
        else:
            limit = MEMORY_SHARE * available
            what = f"half of the {_bytes(available)} available"
    else:
        limit, what = max_memory, "--max-memory"
    need, where = memory_needed(ds, image_size, backend)
    if need <= limit:
        return
    h, w = where["size"]
    raise UsageError(
        f"matching image {where['image_id']} at width × height = {w} × {h} pixels "
        f"would need about "
        f"{_bytes(need)} ({where['anchors']:,} anchors × ({BYTES_PER_ANCHOR} B + "
        f"{BYTES_PER_PAIR} B × {where['slots']} box slots)), more than the limit of "
        f"{_bytes(limit)} ({what}); pass a smaller --image-size, or --max-memory to "
        "raise the limit")
