"""Box geometry on the Array API: formats, area, pairwise IoU / GIoU / IoA; the box coder.

Boxes are ``(..., 4)`` arrays of a real floating dtype. Inside the library boxes are
``xyxy`` = ``[x1, y1, x2, y2]`` with ``x1 <= x2`` and ``y1 <= y2``; :func:`convert` moves
between ``xyxy``, ``xywh`` (COCO's ``bbox``) and ``cxcywh``. Leading batch dimensions
broadcast, so a batch of images is one call. float16/bfloat16 boxes are computed and
returned in float32. The box coder, :func:`encode` and :func:`decode`, lives in
:mod:`focal_array.box_coder` and is re-exported here.

A box of zero area (``x1 == x2`` or ``y1 == y2``) has IoU 0 with every box, itself
included — never NaN. On eager backends every function that reads ``xyxy`` boxes checks
them (finite, ``x2 >= x1``, ``y2 >= y1``) and names the first offending box; inside a
``jax.jit`` trace or a ``torch.compile`` graph that check is skipped, an inverted side
counts as empty, and a pair with a non-finite coordinate gets IoU, GIoU and IoA 0.

**Every finite box works, at any scale.** IoU, GIoU and IoA are ratios of areas, which do
not change when x and y are scaled by separate factors; each pair is computed with its
coordinates scaled, per axis, by an exact power of two that brings the pair's extent near
1, so no side, area or union can overflow and the areas of boxes from ~1e-38 to 3e38
(float32) stay in the normal range. Identical non-empty boxes have IoU exactly 1 at every
scale. On "ordinary" boxes (every non-zero coordinate of magnitude between 2^-39 ≈ 1.8e-12
and 2^61 ≈ 2.3e18 in float32, 2^-458 and 2^509 in float64; COCO pixels always) the
rescaling changes no bit, so eager calls skip it after one cheap screen of the boxes;
traced calls always rescale (about 1.8x the plain arithmetic) and give the same numbers.
:func:`area` itself is not rescaled: an area beyond the dtype's range is ``inf``, its
correctly rounded value.
"""

from __future__ import annotations

from typing import Any

# the private primitives are re-exported (``x as x``): focal_array._matching builds its
# memory-lean IoU from the same operations
from ._box_common import _area as _area
from ._box_common import _batch_shape as _batch_shape
from ._box_common import _common_dtype as _common_dtype
from ._box_common import _coordinate_rows as _coordinate_rows
from ._box_common import _coords as _coords
from ._box_common import _first_bad_box as _first_bad_box
from ._box_common import _intersection as _intersection
from ._box_common import _pairwise as _pairwise
from ._box_common import _prepare as _prepare
from ._box_common import _safe_divide as _safe_divide
from ._box_common import (
    axis_scale,
    check_boxes,
    finite_boxes,
    ordinary,
    quiet,
    scaled_area,
)
from ._namespace import constant, is_tracing, namespace
from ._typing import ArrayT, BoxFormat
from ._validate import check_choice
from .box_coder import DEFAULT_DECODE_CLAMP, decode, encode

__all__ = [
    "DEFAULT_DECODE_CLAMP",
    "FORMATS",
    "area",
    "box_ioa",
    "box_iou",
    "check_boxes",
    "convert",
    "decode",
    "encode",
    "generalized_box_iou",
]

#: The box formats :func:`convert` understands.
FORMATS = ("xyxy", "xywh", "cxcywh")


def _resolve_pair(a: Any, b: Any, name_a: str, name_b: str) -> tuple[Any, Any, Any]:
    xp = namespace(**{name_a: a, name_b: b})
    a = _prepare(xp, a, name_a)
    b = _prepare(xp, b, name_b)
    if a.ndim < 2 or b.ndim < 2:
        raise ValueError(
            f"{name_a} and {name_b} must have shape (..., N, 4) and (..., M, 4), "
            f"got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    _batch_shape(name_a, a.shape[:-2], name_b, b.shape[:-2])
    a, b = _common_dtype(xp, a, b, name_a, name_b)
    check_boxes(xp, a, name_a)
    check_boxes(xp, b, name_b)
    return xp, a, b


# --------------------------------------------------------------------------- rescaled pairs


def _pair_scales(a: Any, b: Any, xp: Any) -> tuple[Any, ...]:
    """Per-box axis scales of both sets and, per pair, the smaller of each (the scale of
    the pair's larger extent): ``(sxa, sya, sxb, syb, sx, sy)``."""
    sxa, sya = axis_scale(xp, a[..., 0], a[..., 2]), axis_scale(xp, a[..., 1], a[..., 3])
    sxb, syb = axis_scale(xp, b[..., 0], b[..., 2]), axis_scale(xp, b[..., 1], b[..., 3])
    sx = xp.minimum(sxa[..., :, None], sxb[..., None, :])
    sy = xp.minimum(sya[..., :, None], syb[..., None, :])
    return sxa, sya, sxb, syb, sx, sy


def _scaled_inter_union(a: Any, b: Any, xp: Any) -> tuple[Any, Any, Any, Any]:
    """``(inter, union, sx, sy)`` of every pair, each pair scaled by ``sx`` along x and
    ``sy`` along y (exact powers of two, :func:`~focal_array._box_common.axis_scale`).

    Scaled so, every coordinate of the pair has magnitude <= 4: sides <= 8, areas <= 64,
    unions <= 128, never inf. A box's own area is computed at its own scale (never
    underflowing) and moved to the pair's by the exact factor ``(sx / sxa)(sy / sya)``;
    the intersection is clipped to both areas so that ``inter <= union`` holds even where
    that factor underflows (a box ~2^-100 of the other's extent: IoU ~0 either way).
    """
    (ax1, ay1, ax2, ay2), (bx1, by1, bx2, by2) = _pairwise(a, b)
    sxa, sya, sxb, syb, sx, sy = _pair_scales(a, b, xp)
    zero = constant(xp, 0.0, a)
    w = xp.maximum(xp.minimum(ax2, bx2) * sx - xp.maximum(ax1, bx1) * sx, zero)
    h = xp.maximum(xp.minimum(ay2, by2) * sy - xp.maximum(ay1, by1) * sy, zero)
    area_a = scaled_area(a, sxa, sya, xp)[..., :, None] * (
        (sx / sxa[..., :, None]) * (sy / sya[..., :, None]))
    area_b = scaled_area(b, sxb, syb, xp)[..., None, :] * (
        (sx / sxb[..., None, :]) * (sy / syb[..., None, :]))
    inter = xp.minimum(w * h, xp.minimum(area_a, area_b))
    return inter, area_a + area_b - inter, sx, sy


def _finite_pairs(result: Any, a: Any, b: Any, xp: Any) -> Any:
    """Under a trace (no eager check): 0 for every pair with a non-finite coordinate."""
    ok = finite_boxes(xp, a)[..., :, None] & finite_boxes(xp, b)[..., None, :]
    return xp.where(ok, result, constant(xp, 0.0, result))


def _ioa(inter: Any, area_a: Any, xp: Any) -> Any:
    """``inter / area_a`` per pair. The denominator is ``max(area_a, inter)`` (the same
    value: ``inter <= area_a``) so that it is a full ``(..., N, M)`` array: XLA rewrites a
    division by a broadcast as a product with its reciprocal, which puts IoA = 1 (a box
    inside another, or itself) an ulp below 1."""
    return _safe_divide(inter, xp.maximum(area_a[..., :, None], inter), xp)


def _plain(xp: Any, a: Any, b: Any) -> bool:
    """Whether the unscaled formulas give the rescaled ones' bits (eager, ordinary boxes)."""
    return not is_tracing(a, b) and ordinary(xp, a, b)


# --------------------------------------------------------------------------- formats


def convert(boxes: ArrayT, /, src: BoxFormat, dst: BoxFormat) -> ArrayT:
    """Convert boxes between the ``xyxy``, ``xywh`` (COCO) and ``cxcywh`` formats.

    .. math::

        \\text{xywh} = (x_1, y_1, x_2 - x_1, y_2 - y_1), \\qquad
        \\text{cxcywh} = (\\tfrac{x_1 + x_2}{2}, \\tfrac{y_1 + y_2}{2}, x_2 - x_1, y_2 - y_1)

    Args:
        boxes: ``(..., 4)`` real floating array in format ``src``.
        src: format of ``boxes``: ``"xyxy"``, ``"xywh"`` or ``"cxcywh"``.
        dst: format to return.

    Returns:
        ``(..., 4)`` array in format ``dst``, the input's dtype (float32 for half inputs).
        Values are not checked: this is a pure change of coordinates.

    Examples:
        >>> import numpy as np
        >>> convert(np.asarray([[10.0, 20.0, 30.0, 40.0]]), "xywh", "xyxy")
        array([[10., 20., 40., 60.]])
    """
    xp = namespace(boxes=boxes)
    check_choice("src", src, FORMATS)
    check_choice("dst", dst, FORMATS)
    boxes = _prepare(xp, boxes, "boxes")
    if src == dst:
        return boxes
    a, b, c, d = _coords(boxes)
    half = constant(xp, 0.5, boxes)
    if src == "xywh":
        x1, y1, x2, y2 = a, b, a + c, b + d
    elif src == "cxcywh":
        x1, y1, x2, y2 = a - half * c, b - half * d, a + half * c, b + half * d
    else:
        x1, y1, x2, y2 = a, b, c, d
    if dst == "xyxy":
        out = (x1, y1, x2, y2)
    elif dst == "xywh":
        out = (x1, y1, x2 - x1, y2 - y1)
    else:
        out = (half * (x1 + x2), half * (y1 + y2), x2 - x1, y2 - y1)
    return xp.stack(out, axis=-1)


def area(boxes: ArrayT, /) -> ArrayT:
    """Area of ``xyxy`` boxes: ``(x2 - x1) · (y2 - y1)``.

    Args:
        boxes: ``(..., 4)`` real floating ``xyxy`` boxes with ``x1 <= x2``, ``y1 <= y2``.

    Returns:
        ``(...)`` array of areas, the input's dtype (float32 for half inputs).

    Raises:
        ValueError: on eager backends, a box is non-finite or inverted (names the index).

    Examples:
        >>> import numpy as np
        >>> area(np.asarray([[0.0, 0.0, 2.0, 3.0]]))
        array([6.])
    """
    xp = namespace(boxes=boxes)
    boxes = _prepare(xp, boxes, "boxes")
    check_boxes(xp, boxes, "boxes")
    return _area(boxes, xp)


# --------------------------------------------------------------------------- pairwise


def box_iou(boxes1: ArrayT, boxes2: ArrayT, /) -> ArrayT:
    """Pairwise intersection over union of two sets of ``xyxy`` boxes.

    .. math::

        \\mathrm{IoU}(a, b) = \\frac{|a \\cap b|}{|a| + |b| - |a \\cap b|}
        \\quad (0 \\text{ when the union is empty})

    Args:
        boxes1: ``(..., N, 4)`` real floating ``xyxy`` boxes.
        boxes2: ``(..., M, 4)`` boxes of the same library; batch dimensions broadcast.

    Returns:
        ``(..., N, M)`` IoU in [0, 1], the inputs' (promoted) dtype, float32 for half
        inputs. A zero-area box has IoU 0 with everything. Differentiable (finite
        gradients everywhere).

    Raises:
        ValueError: last dimension not 4, batch shapes that do not broadcast, or (eager
            backends) a non-finite or inverted box, naming its index.
        TypeError: non-floating boxes, or arrays from different libraries.

    Examples:
        >>> import numpy as np
        >>> box_iou(np.asarray([[0.0, 0.0, 2.0, 2.0]]), np.asarray([[1.0, 0.0, 3.0, 2.0]]))
        array([[0.33333333]])
    """
    xp, a, b = _resolve_pair(boxes1, boxes2, "boxes1", "boxes2")
    if _plain(xp, a, b):
        inter = _intersection(a, b, xp)
        union = _area(a, xp)[..., :, None] + _area(b, xp)[..., None, :] - inter
        return _safe_divide(inter, union, xp)
    inter, union, _, _ = _scaled_inter_union(a, b, xp)
    iou = _safe_divide(inter, union, xp)
    return _finite_pairs(iou, a, b, xp) if is_tracing(a, b) else iou


def generalized_box_iou(boxes1: ArrayT, boxes2: ArrayT, /) -> ArrayT:
    """Pairwise generalized IoU (Rezatofighi et al., 2019) of ``xyxy`` boxes.

    .. math::

        \\mathrm{GIoU}(a, b) = \\mathrm{IoU}(a, b) - \\frac{|C| - |a \\cup b|}{|C|}

    with ``C`` the smallest box enclosing both (the second term is 0 when ``|C| = 0``).

    Args:
        boxes1: ``(..., N, 4)`` real floating ``xyxy`` boxes.
        boxes2: ``(..., M, 4)`` boxes; batch dimensions broadcast.

    Returns:
        ``(..., N, M)`` GIoU in [-1, 1], dtype as :func:`box_iou`. ``1 - GIoU`` is the
        GIoU loss; gradients are finite.

    Raises:
        ValueError, TypeError: as :func:`box_iou`.

    Examples:
        >>> import numpy as np
        >>> generalized_box_iou(np.asarray([[0.0, 0.0, 1.0, 1.0]]),
        ...                     np.asarray([[2.0, 0.0, 3.0, 1.0]]))
        array([[-0.33333333]])
    """
    xp, a, b = _resolve_pair(boxes1, boxes2, "boxes1", "boxes2")
    (ax1, ay1, ax2, ay2), (bx1, by1, bx2, by2) = _pairwise(a, b)
    zero = constant(xp, 0.0, a)
    one = constant(xp, 1.0, a)
    right, left = xp.maximum(ax2, bx2), xp.minimum(ax1, bx1)
    top, bottom = xp.maximum(ay2, by2), xp.minimum(ay1, by1)
    if _plain(xp, a, b):
        inter = _intersection(a, b, xp)
        union = _area(a, xp)[..., :, None] + _area(b, xp)[..., None, :] - inter
        cw, ch = right - left, top - bottom
    else:
        inter, union, sx, sy = _scaled_inter_union(a, b, xp)
        # scaling after max/min is the same as before it (exact and monotone)
        cw, ch = right * sx - left * sx, top * sy - bottom * sy
    iou = _safe_divide(inter, union, xp)
    enclosing = xp.maximum(cw, zero) * xp.maximum(ch, zero)
    # a rounding can put the union an ulp above the enclosing area: keep GIoU in [-1, 1]
    giou = xp.clip(iou - _safe_divide(enclosing - union, enclosing, xp), -one, one)
    return _finite_pairs(giou, a, b, xp) if is_tracing(a, b) else giou


def box_ioa(boxes1: ArrayT, boxes2: ArrayT, /) -> ArrayT:
    """Pairwise intersection over the *first* box's area (for crowd regions).

    .. math::

        \\mathrm{IoA}(a, b) = \\frac{|a \\cap b|}{|a|} \\quad (0 \\text{ when } |a| = 0)

    Args:
        boxes1: ``(..., N, 4)`` real floating ``xyxy`` boxes (e.g. anchors).
        boxes2: ``(..., M, 4)`` boxes (e.g. crowd regions); batch dimensions broadcast.

    Returns:
        ``(..., N, M)`` IoA in [0, 1]: the fraction of each ``boxes1`` box inside each
        ``boxes2`` box. Dtype as :func:`box_iou`.

    Raises:
        ValueError, TypeError: as :func:`box_iou`.

    Examples:
        >>> import numpy as np
        >>> box_ioa(np.asarray([[0.0, 0.0, 2.0, 2.0]]), np.asarray([[0.0, 0.0, 10.0, 1.0]]))
        array([[0.5]])
    """
    xp, a, b = _resolve_pair(boxes1, boxes2, "boxes1", "boxes2")
    if _plain(xp, a, b):
        inter = _intersection(a, b, xp)
        return _ioa(inter, _area(a, xp), xp)
    # each row at its own box's scale: a tiny box inside a huge one keeps IoA 1 (b's
    # coordinates may overflow to +-inf there, which min/max and the clamp at 0 absorb)
    (ax1, ay1, ax2, ay2), (bx1, by1, bx2, by2) = _pairwise(a, b)
    sxa, sya = axis_scale(xp, a[..., 0], a[..., 2]), axis_scale(xp, a[..., 1], a[..., 3])
    sx, sy = sxa[..., :, None], sya[..., :, None]
    zero = constant(xp, 0.0, a)
    with quiet(xp):
        w = xp.maximum(xp.minimum(ax2, bx2) * sx - xp.maximum(ax1, bx1) * sx, zero)
        h = xp.maximum(xp.minimum(ay2, by2) * sy - xp.maximum(ay1, by1) * sy, zero)
    ioa = _ioa(w * h, scaled_area(a, sxa, sya, xp), xp)
    return _finite_pairs(ioa, a, b, xp) if is_tracing(a, b) else ioa


