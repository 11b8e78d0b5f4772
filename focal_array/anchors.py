"""RetinaNet-style anchor grids over the levels of a feature pyramid.

Conventions (also in ``docs/anchors.md``):

* **Feature-map size** of level ``l`` with stride ``s``: ``(ceil(H / s), ceil(W / s))``.
* **Anchor centres**: ``((x + offset) * s, (y + offset) * s)`` for grid cell ``(y, x)``,
  ``offset = 0.5`` by default (the centre of the cell).
* **Cell anchors**: for aspect ratio ``r = h / w`` and side ``S = size * scale``,
  ``w = S / sqrt(r)``, ``h = S * sqrt(r)`` (area ``S**2``), not rounded.
* **Order**: level, then y (row), then x (column), then the anchors of one location, which
  run ratio-major: ``k = ratio_index * len(scales) + scale_index``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any, NamedTuple

__all__ = ["LevelGrid", "anchors_per_level", "retinanet_anchors"]

_STRIDES = (8, 16, 32, 64, 128)
_SIZES = (32, 64, 128, 256, 512)
_SCALES = (2**0, 2 ** (1 / 3), 2 ** (2 / 3))
_RATIOS = (0.5, 1.0, 2.0)


class LevelGrid(NamedTuple):
    """The anchor grid of one pyramid level: ``height × width`` locations, each with
    ``anchors_per_location`` anchors (unpacks as ``(H_l, W_l, K)``)."""

    height: int
    width: int
    anchors_per_location: int

    @property
    def num_anchors(self) -> int:
        """Anchors on this level: ``height * width * anchors_per_location``."""
        return self.height * self.width * self.anchors_per_location


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive integer, got {type(value).__name__} "
                        f"{value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_positive_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a positive number, got {type(value).__name__} "
                        f"{value!r}")
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return v


def _check_sequence(name: str, value: Any) -> Sequence[Any]:
    # a bare number or a string is a common slip (``strides=8``); say so rather than iterate
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a non-empty sequence (tuple or list), "
                        f"got {type(value).__name__} {value!r}")
    if len(value) == 0:
        raise ValueError(f"{name} must not be empty")
    return value


def _check_image_size(image_size: Any) -> tuple[int, int]:
    if isinstance(image_size, (str, bytes)) or not isinstance(image_size, Sequence) \
            or len(image_size) != 2:
        raise TypeError(f"image_size must be a pair (height, width) of positive integers, "
                        f"got {image_size!r}")
    return (_check_positive_int("image_size[0] (height)", image_size[0]),
            _check_positive_int("image_size[1] (width)", image_size[1]))


def _check_options(image_size: Any, strides: Any, sizes: Any, scales: Any,
                   aspect_ratios: Any) -> tuple[tuple[int, int], list[int], list[float],
                                                list[float], list[float]]:
    size_hw = _check_image_size(image_size)
    strides_ = [_check_positive_int(f"strides[{i}]", s)
                for i, s in enumerate(_check_sequence("strides", strides))]
    sizes_ = [_check_positive_number(f"sizes[{i}]", s)
              for i, s in enumerate(_check_sequence("sizes", sizes))]
    if len(sizes_) != len(strides_):
        raise ValueError(f"strides and sizes must have one entry per pyramid level, got "
                         f"{len(strides_)} strides {tuple(strides)} and {len(sizes_)} sizes "
                         f"{tuple(sizes)}")
    scales_ = [_check_positive_number(f"scales[{i}]", s)
               for i, s in enumerate(_check_sequence("scales", scales))]
    ratios_ = [_check_positive_number(f"aspect_ratios[{i}]", r)
               for i, r in enumerate(_check_sequence("aspect_ratios", aspect_ratios))]
    return size_hw, strides_, sizes_, scales_, ratios_


def anchors_per_level(
    image_size: Sequence[int],
    *,
    strides: Sequence[int] = _STRIDES,
    sizes: Sequence[float] = _SIZES,
    scales: Sequence[float] = _SCALES,
    aspect_ratios: Sequence[float] = _RATIOS,
) -> tuple[LevelGrid, ...]:
    """The anchor grid of every pyramid level, in the order :func:`retinanet_anchors` uses.

    Takes the same options as :func:`retinanet_anchors` (``sizes`` only for validation, so
    one ``**options`` dict serves both), and reads no arrays.

    Args:
        image_size: ``(H, W)`` of the (padded) network input, positive integers.
        strides: stride of each level, positive integers.
        sizes: base anchor side of each level (same length as ``strides``).
        scales: multipliers of the base size, shared by every level.
        aspect_ratios: ``h / w`` of the anchors, shared by every level.

    Returns:
        One :class:`LevelGrid` ``(H_l, W_l, K)`` per level with ``H_l = ceil(H / stride)``,
        ``W_l = ceil(W / stride)``, ``K = len(scales) * len(aspect_ratios)``. Slice the
        flat anchor array of level ``l`` as
        ``[sum(g.num_anchors for g in grids[:l]) : ... + grids[l].num_anchors]``.

    Examples:
        >>> grids = anchors_per_level((800, 1333))
        >>> [tuple(g) for g in grids]
        [(100, 167, 9), (50, 84, 9), (25, 42, 9), (13, 21, 9), (7, 11, 9)]
        >>> sum(g.num_anchors for g in grids)
        200700
    """
    (height, width), strides_, _, scales_, ratios_ = _check_options(
        image_size, strides, sizes, scales, aspect_ratios)
    k = len(scales_) * len(ratios_)
    # -(-a // b) is ceil(a / b) in exact integer arithmetic (no float rounding at any size)
    return tuple(LevelGrid(-(-height // s), -(-width // s), k) for s in strides_)


def _is_half(xp: Any, dtype: Any) -> bool:
    # not every namespace has float16 (array_api_strict does not), so look it up softly
    return any(getattr(xp, name, None) is not None and dtype == getattr(xp, name)
               for name in ("float16", "bfloat16"))


def _cell_anchors(size: float, scales: list[float], ratios: list[float]) -> list[list[float]]:
    """Anchors of one location centred on (0, 0), ratio-major, as Python floats (float64)."""
    cells = []
    for ratio in ratios:
        root = math.sqrt(ratio)
        for scale in scales:
            side = size * scale
            half_w, half_h = side / root / 2, side * root / 2
            cells.append([-half_w, -half_h, half_w, half_h])
    return cells


def retinanet_anchors(
    image_size: Sequence[int],
    *,
    strides: Sequence[int] = _STRIDES,
    sizes: Sequence[float] = _SIZES,
    scales: Sequence[float] = _SCALES,
    aspect_ratios: Sequence[float] = _RATIOS,
    offset: float = 0.5,
    xp: Any = None,
    dtype: Any = None,
    device: Any = None,
) -> Any:
    """RetinaNet anchors, xyxy, over all pyramid levels of one ``H × W`` input.

    The defaults are RetinaNet's (Lin et al., *Focal Loss for Dense Object Detection*, 2017):
    levels P3–P7 (strides 8…128), base sizes 32…512, three octave scales
    ``2**0, 2**(1/3), 2**(2/3)`` and aspect ratios 1:2, 1:1, 2:1 — 9 anchors per location.

    **Feature-map size.** Level ``l`` has ``H_l = ceil(H / stride_l)`` rows and
    ``W_l = ceil(W / stride_l)`` columns. That is what a ResNet-FPN backbone produces: every
    stride-2 convolution with "same" padding (ResNet's stem, max-pool and stages, and the
    3×3 stride-2 convolutions making P6 and P7) maps ``n`` to ``ceil(n / 2)``, and nested
    ceilings compose, ``ceil(ceil(n / 2) / 2) = ceil(n / 4)``. torchvision's
    ``AnchorGenerator`` and detectron2's ``DefaultAnchorGenerator`` take the sizes from the
    actual feature maps instead; they run on batches padded to a multiple of 32, so pass
    the *padded* size to reproduce them (800×1333 pads to 800×1344: P3 is 100×168 there,
    100×167 here).

    **Centres.** The anchors of cell ``(y, x)`` are centred on
    ``((x + offset) * stride, (y + offset) * stride)``. The default ``offset = 0.5`` puts
    them at the centre of the cell, as the original Detectron RetinaNet did and as
    detectron2 recommends (its ``ANCHOR_GENERATOR.OFFSET``, 0.0 by default only for
    compatibility with old checkpoints); torchvision and mmdetection use ``offset = 0.0``
    (top-left corner of the cell). Pass ``offset=0.0`` to match their pretrained heads.

    **Shapes.** For side ``S = size * scale`` and ratio ``r = h / w``: ``w = S / sqrt(r)``,
    ``h = S * sqrt(r)``, so every anchor of one size and scale has area ``S**2``.
    Coordinates are not rounded (torchvision rounds its cell anchors to whole pixels, and
    its RetinaNet truncates the scaled sizes to integers: 32, 40, 50) and anchors are not
    clipped to the image.

    **Order.** Flattened like a RetinaNet head's output: level, then row ``y``, then column
    ``x``, then the ``K = len(aspect_ratios) * len(scales)`` anchors of the location, which
    are ratio-major, ``k = ratio_index * len(scales) + scale_index`` (torchvision's order;
    detectron2 is size-major). Anchor ``i`` of level ``l`` therefore matches channel
    ``k`` at ``(y, x)`` of a head output reshaped ``(H_l, W_l, K, ...)``.

    Args:
        image_size: ``(H, W)`` of the network input in pixels, positive integers.
        strides: stride of each pyramid level, positive integers.
        sizes: base anchor side of each level in pixels (same length as ``strides``).
        scales: multipliers of the base size, shared by every level.
        aspect_ratios: anchor ``h / w`` ratios, shared by every level.
        offset: centre of the first anchor as a fraction of the stride, in ``[0, 1)``.
        xp: Array API namespace of the result; NumPy (``array_api_compat.numpy``) if None.
        dtype: real floating dtype of ``xp``; ``xp.float32`` if None. Half-precision
            results are computed in float32 and cast at the end.
        device: device of the result; ``xp``'s default device if None.

    Returns:
        ``anchors (Array[A, 4])`` of ``xp``, ``dtype`` and ``device``: rows
        ``(x1, y1, x2, y2)`` with ``x1 < x2`` and ``y1 < y2``, where
        ``A = sum_l ceil(H / s_l) * ceil(W / s_l) * K``. An 800×1333 input gives
        ``(100·167 + 50·84 + 25·42 + 13·21 + 7·11) · 9 = 22,300 · 9 = 200,700`` anchors.

    Raises:
        TypeError: an option has the wrong type, or ``dtype`` is not a real floating dtype.
        ValueError: an option is out of range, empty, or ``strides``/``sizes`` differ in
            length.

    Examples:
        >>> import focal_array.anchors as fa
        >>> a = fa.retinanet_anchors((800, 1333))
        >>> a.shape, str(a.dtype)
        ((200700, 4), 'float32')
        >>> a[4]  # level P3, cell (0, 0), ratio 1:1, scale 2**(1/3): centred on (4, 4)
        array([-16.158737, -16.158737,  24.158737,  24.158737], dtype=float32)
    """
    size_hw, strides_, sizes_, scales_, ratios_ = _check_options(
        image_size, strides, sizes, scales, aspect_ratios)
    if isinstance(offset, bool) or not isinstance(offset, numbers.Real) \
            or not 0.0 <= float(offset) < 1.0:
        raise ValueError(f"offset must be a number in [0, 1) (a fraction of the stride), "
                         f"got {offset!r}")
    if xp is None:
        import array_api_compat.numpy as xp
    if dtype is None:
        dtype = xp.float32
    elif not xp.isdtype(dtype, "real floating"):
        raise TypeError(f"dtype must be a real floating dtype of {xp.__name__}, got {dtype}")
    # float16 cannot hold 1333.5 exactly; build in float32 and round once at the end
    work = xp.float32 if _is_half(xp, dtype) else dtype

    levels = []
    grids = anchors_per_level(size_hw, strides=strides_, sizes=sizes_, scales=scales_,
                              aspect_ratios=ratios_)
    for (h_l, w_l, k), stride, size in zip(grids, strides_, sizes_, strict=True):
        # centres are (i + offset) * stride: small integers and halves, exact in float32
        cx = (xp.arange(w_l, dtype=work, device=device) + offset) * stride
        cy = (xp.arange(h_l, dtype=work, device=device) + offset) * stride
        cx = xp.broadcast_to(xp.reshape(cx, (1, w_l, 1)), (h_l, w_l, 1))
        cy = xp.broadcast_to(xp.reshape(cy, (h_l, 1, 1)), (h_l, w_l, 1))
        centres = xp.stack([cx, cy, cx, cy], axis=-1)  # (H_l, W_l, 1, 4)
        cells = xp.asarray(_cell_anchors(size, scales_, ratios_), dtype=work, device=device)
        grid = centres + xp.reshape(cells, (1, 1, k, 4))  # (H_l, W_l, K, 4)
        levels.append(xp.reshape(grid, (h_l * w_l * k, 4)))
    anchors = xp.concat(levels, axis=0)
    if work != dtype:
        anchors = xp.astype(anchors, dtype)
    return anchors
