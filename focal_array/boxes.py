"""Box geometry on the Array API: formats, area, pairwise IoU / GIoU / IoA, and the box coder.

Boxes are ``(..., 4)`` arrays of a real floating dtype. Inside the library boxes are
``xyxy`` = ``[x1, y1, x2, y2]`` with ``x1 <= x2`` and ``y1 <= y2``; :func:`convert` moves
between ``xyxy``, ``xywh`` (COCO's ``bbox``) and ``cxcywh``. Leading batch dimensions
broadcast, so a batch of images is one call. float16/bfloat16 boxes are computed and
returned in float32.

A box of zero area (``x1 == x2`` or ``y1 == y2``) has IoU 0 with every box, itself
included — never NaN. On eager backends every function that reads ``xyxy`` boxes checks
them (finite, ``x2 >= x1``, ``y2 >= y1``) and names the first offending box; inside a
``jax.jit`` trace or a ``torch.compile`` graph that check is skipped and a malformed box
counts as empty.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Sequence
from typing import Any

from ._namespace import (
    compute_dtype,
    constant,
    is_numpy,
    is_strict,
    is_torch,
    is_tracing,
    namespace,
)
from ._validate import check_choice, check_floating, eager_check, first_true_index

__all__ = [
    "DEFAULT_DECODE_CLAMP",
    "FORMATS",
    "area",
    "box_ioa",
    "box_iou",
    "convert",
    "decode",
    "encode",
    "generalized_box_iou",
]

#: The box formats :func:`convert` understands.
FORMATS = ("xyxy", "xywh", "cxcywh")

#: Largest log-scale delta :func:`decode` lets through, ``log(1000 / 16)`` as in
#: Detectron and torchvision: a box may grow at most 62.5 times its anchor.
DEFAULT_DECODE_CLAMP = math.log(1000.0 / 16)


# --------------------------------------------------------------------------- helpers


def _prepare(xp: Any, boxes: Any, name: str) -> Any:
    """Check a box array statically and return it in its compute dtype."""
    check_floating(xp, boxes, name)
    if boxes.ndim < 1 or boxes.shape[-1] != 4:
        raise ValueError(
            f"{name} must have shape (..., 4) with the last dimension holding 4 coordinates, "
            f"got shape {tuple(boxes.shape)}"
        )
    dtype = compute_dtype(xp, boxes.dtype)
    if dtype != boxes.dtype:
        boxes = xp.astype(boxes, dtype)
    return boxes


def _coords(boxes: Any) -> tuple[Any, Any, Any, Any]:
    return boxes[..., 0], boxes[..., 1], boxes[..., 2], boxes[..., 3]


def _common_dtype(xp: Any, a: Any, b: Any, name_a: str, name_b: str) -> tuple[Any, Any]:
    """Bring two float arrays to one dtype (the wider of the two)."""
    if a.dtype == b.dtype:
        return a, b
    dtype = xp.result_type(a.dtype, b.dtype)
    return xp.astype(a, dtype), xp.astype(b, dtype)


def _batch_shape(name_a: str, shape_a: Sequence[int], name_b: str,
                 shape_b: Sequence[int]) -> tuple[int, ...]:
    """Broadcast two leading batch shapes, or raise a ValueError naming both arguments."""
    a, b = tuple(shape_a), tuple(shape_b)
    n = max(len(a), len(b))
    a = (1,) * (n - len(a)) + a
    b = (1,) * (n - len(b)) + b
    out = []
    for da, db in zip(a, b, strict=True):
        if da != db and da != 1 and db != 1:
            raise ValueError(
                f"the batch dimensions of {name_a} {tuple(shape_a)} and {name_b} "
                f"{tuple(shape_b)} do not broadcast"
            )
        out.append(db if da == 1 else da)
    return tuple(out)


def _coordinate_rows(xp: Any, boxes: Any) -> Any:
    """``(4, ..., N)`` coordinate rows of ``(..., N, 4)`` boxes, each contiguous along N on
    NumPy and PyTorch: over strided columns their kernels run 3-7x slower."""
    if is_numpy(xp):
        import numpy

        return numpy.ascontiguousarray(numpy.moveaxis(boxes, -1, 0))
    if is_torch(xp):
        import torch

        return torch.stack(torch.unbind(boxes, dim=-1))
    return xp.moveaxis(boxes, -1, 0)


def _all_sides_finite_nonnegative(xp: Any, boxes: Any) -> bool:
    """Cheap screen (two reductions over the sides, not seven passes): boxes are well formed
    exactly when every side ``x2 - x1``, ``y2 - y1`` is finite and >= 0 (a non-finite
    coordinate makes a side inf or NaN, which min/max propagate); a side overflowing to
    inf only sends the boxes on to the exact scan."""
    quiet = contextlib.nullcontext()
    if is_numpy(xp) or is_strict(xp):  # inf - inf here is expected, not worth a warning
        import numpy

        quiet = numpy.errstate(invalid="ignore", over="ignore")
    with quiet:
        rows = _coordinate_rows(xp, boxes)
        sides = rows[2:, ...] - rows[:2, ...]
        ok = (xp.min(sides) >= constant(xp, 0.0, sides)) & \
            (xp.max(sides) < constant(xp, math.inf, sides))
    return not is_tracing(ok) and bool(ok)


def _first_bad_box(xp: Any, boxes: Any, valid: Any) -> tuple[tuple[int, ...], str] | None:
    """Eagerly find the first box that is non-finite or has x2 < x1 or y2 < y1."""
    if valid is None and _all_sides_finite_nonnegative(xp, boxes):
        return None
    x1, y1, x2, y2 = _coords(boxes)
    nonfinite = ~xp.all(xp.isfinite(boxes), axis=-1)
    bad = nonfinite | (x2 < x1) | (y2 < y1)
    if valid is not None:
        bad = bad & valid
    anything = xp.any(bad)
    # a concrete array used inside a trace (e.g. anchors closed over by a jitted function)
    # still yields abstract results: the check is skipped then
    if is_tracing(anything) or not bool(anything):
        return None
    index = first_true_index(xp, bad)
    if bool(nonfinite[index]):
        reason = "a non-finite coordinate"
    elif bool(x2[index] < x1[index]):
        reason = "x2 < x1"
    else:
        reason = "y2 < y1"
    return index, reason


def check_boxes(xp: Any, boxes: Any, name: str, *, valid: Any = None) -> None:
    """On eager backends, raise ValueError naming the first malformed ``xyxy`` box.

    A box is malformed when a coordinate is not finite or ``x2 < x1`` or ``y2 < y1``.
    ``valid`` (boolean, ``boxes.shape[:-1]``) restricts the check to real boxes (padding
    may hold anything). Skipped inside a trace.
    """
    if math.prod(boxes.shape) == 0:
        return
    found: list[Any] = []

    def bad() -> Any:
        result = _first_bad_box(xp, boxes, valid)
        if result is None:
            return False
        found.append(result)
        return True

    def message() -> str:
        index, reason = found[0]
        values = [float(boxes[(*index, k)]) for k in range(4)]
        where = ", ".join(str(i) for i in index)
        return (
            f"{name}[{where}] = {values} has {reason}; boxes must be finite xyxy "
            "[x1, y1, x2, y2] with x1 <= x2 and y1 <= y2 (use convert() for xywh/cxcywh)"
        )

    arrays = [boxes] if valid is None else [boxes, valid]
    eager_check(arrays, bad, message)


def _pairwise(a: Any, b: Any) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """Coordinates shaped to broadcast to (..., N, M): a's along N, b's along M."""
    ca = tuple(c[..., :, None] for c in _coords(a))
    cb = tuple(c[..., None, :] for c in _coords(b))
    return ca, cb


def _area(boxes: Any, xp: Any) -> Any:
    """Area of xyxy boxes, a malformed (inverted) side counting as 0."""
    x1, y1, x2, y2 = _coords(boxes)
    zero = constant(xp, 0.0, boxes)
    return xp.maximum(x2 - x1, zero) * xp.maximum(y2 - y1, zero)


def _intersection(a: Any, b: Any, xp: Any) -> Any:
    """Pairwise intersection area (..., N, M), built per coordinate (no corner tensors)."""
    (ax1, ay1, ax2, ay2), (bx1, by1, bx2, by2) = _pairwise(a, b)
    zero = constant(xp, 0.0, a)
    w = xp.maximum(xp.minimum(ax2, bx2) - xp.maximum(ax1, bx1), zero)
    h = xp.maximum(xp.minimum(ay2, by2) - xp.maximum(ay1, by1), zero)
    return w * h


def _safe_divide(num: Any, den: Any, xp: Any) -> Any:
    """num / den where den > 0, else 0 — with finite gradients (double-where)."""
    zero = constant(xp, 0.0, den)
    one = constant(xp, 1.0, den)
    positive = den > zero
    return xp.where(positive, num / xp.where(positive, den, one), zero)


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


# --------------------------------------------------------------------------- formats


def convert(boxes: Any, /, src: str, dst: str) -> Any:
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


def area(boxes: Any, /) -> Any:
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


def box_iou(boxes1: Any, boxes2: Any, /) -> Any:
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
    inter = _intersection(a, b, xp)
    union = _area(a, xp)[..., :, None] + _area(b, xp)[..., None, :] - inter
    return _safe_divide(inter, union, xp)


def generalized_box_iou(boxes1: Any, boxes2: Any, /) -> Any:
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
    inter = _intersection(a, b, xp)
    union = _area(a, xp)[..., :, None] + _area(b, xp)[..., None, :] - inter
    iou = _safe_divide(inter, union, xp)
    (ax1, ay1, ax2, ay2), (bx1, by1, bx2, by2) = _pairwise(a, b)
    zero = constant(xp, 0.0, a)
    cw = xp.maximum(xp.maximum(ax2, bx2) - xp.minimum(ax1, bx1), zero)
    ch = xp.maximum(xp.maximum(ay2, by2) - xp.minimum(ay1, by1), zero)
    enclosing = cw * ch
    return iou - _safe_divide(enclosing - union, enclosing, xp)


def box_ioa(boxes1: Any, boxes2: Any, /) -> Any:
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
    inter = _intersection(a, b, xp)
    return _safe_divide(inter, _area(a, xp)[..., :, None], xp)


# --------------------------------------------------------------------------- box coder


def _check_weights(weights: Any) -> tuple[float, float, float, float]:
    if not isinstance(weights, Sequence) or len(weights) != 4:
        raise ValueError(f"weights must be a sequence of 4 numbers (wx, wy, ww, wh), got "
                         f"{weights!r}")
    out = []
    for w in weights:
        if isinstance(w, bool) or not isinstance(w, numbers.Real) or not (
                math.isfinite(float(w)) and float(w) > 0):
            raise ValueError(f"weights must be 4 finite positive numbers, got {weights!r}")
        out.append(float(w))
    return out[0], out[1], out[2], out[3]


def _centers(boxes: Any, xp: Any) -> tuple[Any, Any, Any, Any]:
    x1, y1, x2, y2 = _coords(boxes)
    half = constant(xp, 0.5, boxes)
    w = x2 - x1
    h = y2 - y1
    return x1 + half * w, y1 + half * h, w, h


def encode(anchors: Any, boxes: Any, /, *,
           weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)) -> Any:
    """Encode ``xyxy`` boxes as Faster R-CNN regression deltas relative to anchors.

    .. math::

        d_x = w_x \\frac{c_x - c^a_x}{w^a}, \\quad d_y = w_y \\frac{c_y - c^a_y}{h^a}, \\quad
        d_w = w_w \\log \\frac{w}{w^a}, \\quad d_h = w_h \\log \\frac{h}{h^a}

    Args:
        anchors: ``(..., 4)`` ``xyxy`` anchors with positive width and height.
        boxes: ``(..., 4)`` ``xyxy`` target boxes with positive width and height;
            broadcasts against ``anchors``.
        weights: ``(w_x, w_y, w_w, w_h)``, positive; ``(1, 1, 1, 1)`` as in RetinaNet,
            ``(10, 10, 5, 5)`` as in Faster R-CNN's box head.

    Returns:
        ``(..., 4)`` deltas ``[dx, dy, dw, dh]`` in the inputs' (promoted) dtype, float32
        for half inputs. Inverse of :func:`decode` (when the decode clamp is not hit).

    Raises:
        ValueError: bad weights, shapes that do not broadcast, or (eager) malformed boxes.
        TypeError: non-floating arrays, or arrays from different libraries.

    Examples:
        >>> import numpy as np
        >>> encode(np.asarray([0.0, 0.0, 2.0, 2.0]), np.asarray([1.0, 0.0, 3.0, 4.0]))
        array([0.5       , 0.5       , 0.        , 0.69314718])
    """
    xp = namespace(anchors=anchors, boxes=boxes)
    wx, wy, ww, wh = _check_weights(weights)
    anchors = _prepare(xp, anchors, "anchors")
    boxes = _prepare(xp, boxes, "boxes")
    _batch_shape("anchors", anchors.shape[:-1], "boxes", boxes.shape[:-1])
    anchors, boxes = _common_dtype(xp, anchors, boxes, "anchors", "boxes")
    check_boxes(xp, anchors, "anchors")
    check_boxes(xp, boxes, "boxes")
    acx, acy, aw, ah = _centers(anchors, xp)
    cx, cy, w, h = _centers(boxes, xp)
    c = lambda v: constant(xp, v, anchors)  # noqa: E731
    dx = c(wx) * (cx - acx) / aw
    dy = c(wy) * (cy - acy) / ah
    dw = c(ww) * xp.log(w / aw)
    dh = c(wh) * xp.log(h / ah)
    return xp.stack((dx, dy, dw, dh), axis=-1)


def decode(anchors: Any, deltas: Any, /, *,
           weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
           clamp: float | None = DEFAULT_DECODE_CLAMP) -> Any:
    """Decode Faster R-CNN regression deltas into ``xyxy`` boxes (inverse of :func:`encode`).

    .. math::

        c_x = \\frac{d_x}{w_x} w^a + c^a_x, \\quad
        w = w^a \\exp\\bigl(\\min(\\tfrac{d_w}{w_w}, \\text{clamp})\\bigr), \\quad
        (x_1, x_2) = c_x \\mp \\tfrac{w}{2} \\quad (\\text{same for } y, h)

    Args:
        anchors: ``(..., 4)`` ``xyxy`` anchors.
        deltas: ``(..., 4)`` ``[dx, dy, dw, dh]``; broadcasts against ``anchors``.
        weights: as in :func:`encode`.
        clamp: upper bound on ``dw / w_w`` and ``dh / w_h`` before the exponential
            (``log(1000 / 16)`` by default, as in torchvision) so a wild prediction cannot
            overflow; ``None`` disables it.

    Returns:
        ``(..., 4)`` ``xyxy`` boxes in the inputs' (promoted) dtype, float32 for half inputs.

    Raises:
        ValueError: bad weights or clamp, shapes that do not broadcast, malformed anchors.
        TypeError: non-floating arrays, or arrays from different libraries.

    Examples:
        >>> import numpy as np
        >>> decode(np.asarray([0.0, 0.0, 2.0, 2.0]), np.asarray([0.5, 0.5, 0.0, 0.0]))
        array([1., 1., 3., 3.])
    """
    xp = namespace(anchors=anchors, deltas=deltas)
    wx, wy, ww, wh = _check_weights(weights)
    if clamp is not None and (isinstance(clamp, bool) or not isinstance(clamp, numbers.Real)
                              or math.isnan(float(clamp))):
        raise ValueError(f"clamp must be a number or None, got {clamp!r}")
    anchors = _prepare(xp, anchors, "anchors")
    deltas = _prepare(xp, deltas, "deltas")
    _batch_shape("anchors", anchors.shape[:-1], "deltas", deltas.shape[:-1])
    anchors, deltas = _common_dtype(xp, anchors, deltas, "anchors", "deltas")
    check_boxes(xp, anchors, "anchors")
    acx, acy, aw, ah = _centers(anchors, xp)
    c = lambda v: constant(xp, v, anchors)  # noqa: E731
    dx, dy, dw, dh = _coords(deltas)
    dx = dx / c(wx)
    dy = dy / c(wy)
    dw = dw / c(ww)
    dh = dh / c(wh)
    if clamp is not None:
        dw = xp.minimum(dw, c(float(clamp)))
        dh = xp.minimum(dh, c(float(clamp)))
    cx = dx * aw + acx
    cy = dy * ah + acy
    half = c(0.5)
    w = xp.exp(dw) * aw
    h = xp.exp(dh) * ah
    return xp.stack((cx - half * w, cy - half * h, cx + half * w, cy + half * h), axis=-1)
