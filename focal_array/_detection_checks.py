"""Shape and option checks of the detection loss's head outputs and its device reducer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import _validate as v
from ._namespace import is_jax

__all__ = ["check_centerness_logits", "check_head", "count_reducer"]


def check_head(xp: Any, cls_logits: Any, box_deltas: Any, anchors: Any, softmax: bool
                ) -> tuple[int, int, int]:
    v.check_floating(xp, cls_logits, "cls_logits")
    v.check_floating(xp, box_deltas, "box_deltas")
    v.check_floating(xp, anchors, "anchors")
    if cls_logits.ndim != 3:
        raise ValueError(f"cls_logits must have shape (B, A, C), got {tuple(cls_logits.shape)}")
    b, a, c = cls_logits.shape
    v.check_same_shape("(B, A, 4) from cls_logits", (b, a, 4), "box_deltas", box_deltas.shape)
    if tuple(anchors.shape) not in ((a, 4), (b, a, 4)):
        raise ValueError(
            f"anchors must have shape ({a}, 4) or ({b}, {a}, 4) to match cls_logits "
            f"{tuple(cls_logits.shape)}, got {tuple(anchors.shape)}"
        )
    if softmax and c < 2:
        raise ValueError("softmax losses need cls_logits with C + 1 >= 2 classes (index 0 = "
                         f"background), got {c}")
    return b, a, c


def count_reducer(count_reducer: Any, axis_name: Any, xp: Any
                   ) -> Callable[[Any], Any] | None:
    if count_reducer is not None and axis_name is not None:
        raise ValueError("give count_reducer or axis_name, not both")
    if count_reducer is not None:
        if not callable(count_reducer):
            raise TypeError(f"count_reducer must be callable, got {count_reducer!r}")
        return count_reducer
    if axis_name is None:
        return None
    if not is_jax(xp):
        raise ValueError("axis_name is for JAX arrays inside shard_map/pmap; for other "
                         "libraries pass count_reducer (e.g. a torch.distributed "
                         "all_reduce)")
    import jax

    return lambda n: jax.lax.psum(n, axis_name)


def check_centerness_logits(xp: Any, logits: Any, b: int, a: int) -> None:
    if logits is None:
        return
    v.check_floating(xp, logits, "centerness_logits")
    v.check_same_shape("(B, A) from cls_logits", (b, a), "centerness_logits", logits.shape)
