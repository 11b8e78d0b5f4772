"""The Faster R-CNN box coder on the Array API: :func:`encode` boxes as regression deltas
relative to anchors, :func:`decode` deltas back into boxes (re-exported by
:mod:`focal_array.boxes`).

Both are finite for every finite input they accept. :func:`encode` needs anchors and boxes
of positive width and height (``log(w / w_a)`` and ``/ w_a`` are undefined otherwise): on
eager backends a degenerate one is an error naming its index, and so is a delta whose exact
value lies beyond the dtype's range; inside a trace such entries are 0 and ±max. Extreme
but representable cases (sides that overflow, width ratios beyond the range) are computed
in a rescaled form, so they stay exact up to rounding. :func:`decode` saturates: a
coordinate beyond the dtype's range comes out as ±``finfo(dtype).max``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

from ._box_common import _batch_shape, _common_dtype, _coords, _prepare, check_boxes, quiet
from ._namespace import constant, device_of, is_tracing, namespace
from ._typing import ArrayT, Number
from ._validate import eager_check, first_true_index

__all__ = ["DEFAULT_DECODE_CLAMP", "decode", "encode"]

#: Largest log-scale delta :func:`decode` lets through, ``log(1000 / 16)`` as in
#: Detectron and torchvision: a box may grow at most 62.5 times its anchor.
DEFAULT_DECODE_CLAMP = math.log(1000.0 / 16)


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


def _halves(boxes: Any, xp: Any) -> tuple[Any, Any, Any, Any]:
    """Centres and half sides that never overflow: ``(x1 + x2) / 2`` and ``(x2 - x1) / 2``
    from halved coordinates (halving is exact for normal numbers)."""
    x1, y1, x2, y2 = _coords(boxes)
    half = constant(xp, 0.5, boxes)
    return (half * x1 + half * x2, half * y1 + half * y2, half * x2 - half * x1,
            half * y2 - half * y1)


def _encode_deltas(anchors: Any, boxes: Any, weights: Sequence[float], xp: Any, *,
                   saturate: bool) -> Any:
    """The deltas of pairs with positive sides, finite wherever their exact value is
    representable (and clipped to ±``finfo.max`` where it is not, with ``saturate``).

    The plain formulas first (the bits :func:`encode` always had); where one of the four
    is not finite (a side, a centre difference or ``w / w_a`` overflowed, or the ratio
    underflowed to 0), the same delta from halved coordinates and ``log w - log w_a``.
    Eagerly that second pass runs only when some delta needs it.
    """
    wx, wy, ww, wh = (constant(xp, v, anchors) for v in weights)
    with quiet(xp):  # an overflow here only sends the delta to the second pass
        acx, acy, aw, ah = _centers(anchors, xp)
        cx, cy, w, h = _centers(boxes, xp)
        deltas = xp.stack((wx * (cx - acx) / aw, wy * (cy - acy) / ah,
                           ww * xp.log(w / aw), wh * xp.log(h / ah)), axis=-1)
    finite = xp.isfinite(deltas)
    if is_tracing(deltas) or not bool(xp.all(finite)):
        half = constant(xp, 0.5, anchors)
        acx, acy, haw, hah = _halves(anchors, xp)
        cx, cy, hw, hh = _halves(boxes, xp)
        # (c - c_a) / w_a = (c / 2 - c_a / 2) / (w_a / 2): every term is representable
        with quiet(xp):
            wide = xp.stack((wx * (half * cx - half * acx) / haw,
                             wy * (half * cy - half * acy) / hah,
                             ww * (xp.log(hw) - xp.log(haw)), wh * (xp.log(hh) - xp.log(hah))),
                            axis=-1)
        deltas = xp.where(finite, deltas, wide)
    if saturate:
        big = float(xp.finfo(deltas.dtype).max)
        deltas = xp.clip(deltas, -big, big)
    return deltas


def _positive_sides(boxes: Any, xp: Any) -> Any:
    x1, y1, x2, y2 = _coords(boxes)
    return (x2 > x1) & (y2 > y1)


def _check_positive_sides(xp: Any, boxes: Any, name: str, why: str) -> None:
    """Eagerly: every box has ``x2 > x1`` and ``y2 > y1``; else name the first that has not."""
    if math.prod(boxes.shape) == 0:
        return
    bad = ~_positive_sides(boxes, xp)

    def message() -> str:
        index = first_true_index(xp, bad)
        values = [float(boxes[(*index, k)]) for k in range(4)]
        side = "width" if values[2] <= values[0] else "height"
        where = ", ".join(map(str, index))
        return (f"{name}[{where}] = {values} has zero {side}; {why} needs {name} with "
                "positive width and height")

    eager_check([boxes], lambda: xp.any(bad), message)


def encode(anchors: ArrayT, boxes: ArrayT, /, *,
           weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)) -> ArrayT:
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
        Finite: sides or centre differences that overflow the dtype and width ratios
        beyond its range are computed from halved coordinates and ``log w - log w_a``.
        Inside a trace (no value checks) a pair whose anchor or box has a zero (or
        inverted) side gets deltas 0, and a delta beyond the dtype's range is clipped to
        ±``finfo(dtype).max``.

    Raises:
        ValueError: bad weights, shapes that do not broadcast; on eager backends a
            malformed box, an anchor or box with zero width or height (naming its index),
            or a delta whose exact value is beyond the dtype's range (naming its index).
        TypeError: non-floating arrays, or arrays from different libraries.

    Examples:
        >>> import numpy as np
        >>> encode(np.asarray([0.0, 0.0, 2.0, 2.0]), np.asarray([1.0, 0.0, 3.0, 4.0]))
        array([0.5       , 0.5       , 0.        , 0.69314718])
    """
    xp = namespace(anchors=anchors, boxes=boxes)
    weights = _check_weights(weights)
    anchors = _prepare(xp, anchors, "anchors")
    boxes = _prepare(xp, boxes, "boxes")
    _batch_shape("anchors", anchors.shape[:-1], "boxes", boxes.shape[:-1])
    anchors, boxes = _common_dtype(xp, anchors, boxes, "anchors", "boxes")
    check_boxes(xp, anchors, "anchors")
    check_boxes(xp, boxes, "boxes")
    _check_positive_sides(xp, anchors, "anchors", "encode divides by the anchor's sides and")
    _check_positive_sides(xp, boxes, "boxes", "encode takes log(w / w_a) and")
    traced = is_tracing(anchors, boxes)
    if traced:
        # unchecked: a degenerate pair becomes a unit box on a unit anchor (deltas exactly
        # 0), so no 0/0 or log(0) is ever formed, even in a gradient
        usable = (_positive_sides(anchors, xp) & _positive_sides(boxes, xp))[..., None]
        unit = xp.asarray([0.0, 0.0, 1.0, 1.0], dtype=anchors.dtype,
                          device=device_of(anchors))
        anchors, boxes = xp.where(usable, anchors, unit), xp.where(usable, boxes, unit)
    deltas = _encode_deltas(anchors, boxes, weights, xp, saturate=traced)

    def message() -> str:
        index = first_true_index(xp, ~xp.isfinite(deltas))[:-1]
        values = [float(deltas[(*index, k)]) for k in range(4)]
        where = ", ".join(map(str, index))
        return (f"encode: the deltas [{where}] = {values} are beyond the range of "
                f"{deltas.dtype}: the box is too far from, or too large for, its anchor")

    eager_check([deltas], lambda: ~xp.all(xp.isfinite(deltas)), message)
    return deltas


def decode(anchors: ArrayT, deltas: ArrayT, /, *,
           weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
           clamp: Number | None = DEFAULT_DECODE_CLAMP) -> ArrayT:
    """Decode Faster R-CNN regression deltas into ``xyxy`` boxes (inverse of :func:`encode`).

    .. math::

        c_x = \\frac{d_x}{w_x} w^a + c^a_x, \\quad
        w = w^a \\exp\\bigl(\\min(\\tfrac{d_w}{w_w}, \\text{clamp})\\bigr), \\quad
        (x_1, x_2) = c_x \\mp \\tfrac{w}{2} \\quad (\\text{same for } y, h)

    Computed at reduced scale, ``x_1 = 2 (c_x / 2 - w / 4)`` with
    ``c_x / 2 = \\tfrac{d_x}{w_x} \\tfrac{w^a}{2} + \\tfrac{c^a_x}{2}`` and
    ``w / 4 = e^{d_w / w_w} \\tfrac{w^a}{4}`` (powers of two: each rounds exactly as the
    formula above wherever that stays finite), so a box whose corners are representable
    comes out right even when its width or its anchor's overflows; and saturating: a
    coordinate beyond the dtype's range is ±``finfo(dtype).max`` (``x1 <= x2`` still
    holds), so every finite input decodes to finite boxes, with or without ``clamp``.

    Args:
        anchors: ``(..., 4)`` ``xyxy`` anchors.
        deltas: ``(..., 4)`` finite ``[dx, dy, dw, dh]``; broadcasts against ``anchors``.
        weights: as in :func:`encode`.
        clamp: upper bound on ``dw / w_w`` and ``dh / w_h`` before the exponential
            (``log(1000 / 16)`` by default, as in torchvision) so a wild prediction cannot
            grow a box more than 62.5 times; ``None`` disables it.

    Returns:
        ``(..., 4)`` ``xyxy`` boxes in the inputs' (promoted) dtype, float32 for half inputs.
        Inside a trace (no value checks) a non-finite delta gives a non-finite box.

    Raises:
        ValueError: bad weights or clamp, shapes that do not broadcast, malformed anchors;
            on eager backends a non-finite delta (naming its index).
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
    _check_finite_deltas(xp, deltas)
    c = lambda v: constant(xp, v, anchors)  # noqa: E731
    half = c(0.5)
    big = float(xp.finfo(anchors.dtype).max)
    x1, y1, x2, y2 = _coords(anchors)
    # half sides from halved coordinates (exact): w_a / 2 never overflows, and
    # x1 + w_a / 2 is the centre the plain formula computes
    haw, hah = half * x2 - half * x1, half * y2 - half * y1
    acx, acy = x1 + haw, y1 + hah
    dx, dy, dw, dh = _coords(deltas)
    dx = dx / c(wx)
    dy = dy / c(wy)
    dw = dw / c(ww)
    dh = dh / c(wh)
    if clamp is not None:
        dw = xp.minimum(dw, c(float(clamp)))
        dh = xp.minimum(dh, c(float(clamp)))
    with quiet(xp):  # overflow to inf below is expected: it saturates
        # half centres and quarter sides (c / 2 -+ w / 4 = corner / 2); a centre beyond the
        # range stays +-inf (its corners are too), a quarter side is clipped to the range,
        # so no inf - inf can form
        hcx = dx * haw + half * acx
        hcy = dy * hah + half * acy
        qw = xp.minimum(xp.minimum(xp.exp(dw), c(big)) * (half * haw), c(big))
        qh = xp.minimum(xp.minimum(xp.exp(dh), c(big)) * (half * hah), c(big))
        two = c(2.0)
        corners = (two * (hcx - qw), two * (hcy - qh), two * (hcx + qw), two * (hcy + qh))
        return xp.clip(xp.stack(corners, axis=-1), -big, big)


def _check_finite_deltas(xp: Any, deltas: Any) -> None:
    if math.prod(deltas.shape) == 0:
        return
    bad = ~xp.all(xp.isfinite(deltas), axis=-1)

    def message() -> str:
        index = first_true_index(xp, bad)
        values = [float(deltas[(*index, k)]) for k in range(4)]
        return (f"deltas[{', '.join(map(str, index))}] = {values} is not finite; decode "
                "needs finite deltas (a diverged prediction?)")

    eager_check([deltas], lambda: xp.any(bad), message)
