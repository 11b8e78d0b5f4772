"""Boxes at every finite scale (issue 11): IoU / GIoU / IoA finite and right from 1e-30 to
3e38, the box coder's degenerate and extreme inputs, on every backend.

Expected values come from exact rational arithmetic (:mod:`fractions` on the float32
coordinates themselves) or from hand derivations, never from the implementation.
"""

from __future__ import annotations

import math
from fractions import Fraction

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from focal_array import box_coder
from focal_array import boxes as fb
from tests.helpers import asarray, assert_close, require, to_numpy

F32_MAX = float(np.finfo(np.float32).max)
SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def f32(xp, value):
    return asarray(xp, np.asarray(value, dtype=np.float32), "float32")


# --------------------------------------------------------------------------- exact reference


def _exact(a, b):
    """(IoU, GIoU, IoA) of two xyxy boxes in exact rational arithmetic (0 for empty unions,
    the GIoU term 0 for an empty enclosing box), as Python floats."""
    ax1, ay1, ax2, ay2 = map(Fraction, map(float, a))
    bx1, by1, bx2, by2 = map(Fraction, map(float, b))
    iw = max(min(ax2, bx2) - max(ax1, bx1), 0)
    ih = max(min(ay2, by2) - max(ay1, by1), 0)
    inter = iw * ih
    area_a = (ax2 - ax1) * (ay2 - ay1)
    area_b = (bx2 - bx1) * (by2 - by1)
    union = area_a + area_b - inter
    iou = inter / union if union > 0 else Fraction(0)
    enclosing = (max(ax2, bx2) - min(ax1, bx1)) * (max(ay2, by2) - min(ay1, by1))
    giou = iou - (enclosing - union) / enclosing if enclosing > 0 else iou
    ioa = inter / area_a if area_a > 0 else Fraction(0)
    return float(iou), float(giou), float(ioa)


def _exact_matrices(a, b):
    out = np.array([[_exact(x, y) for y in b] for x in a], dtype=np.float64)
    return out[..., 0], out[..., 1], out[..., 2]


# --------------------------------------------------------------------------- the reported case


@pytest.mark.parametrize("v", [1e-30, 1e-20, 1.0, 1e20, 1e30, 3e38])
def test_identical_and_nested_boxes_at_every_scale(xp, v):
    # the issue: [0, 0, v, v] with itself gave IoU 0 and GIoU NaN from v ~ 1e20 (the area
    # overflows float32); by hand: IoU = GIoU = IoA = 1 for a box with itself, and the
    # quarter box [0, 0, v, v] inside [-v, -v, v, v] has IoU 1/4, GIoU 1/4 (it is enclosed),
    # IoA 1 one way and 1/4 the other
    boxes = f32(xp, [[0.0, 0.0, v, v], [-v, -v, v, v]])
    quarter = [[1.0, 0.25], [0.25, 1.0]]
    assert_close(fb.box_iou(boxes, boxes), quarter, xp, dtype="float32", rtol=0)
    assert_close(fb.generalized_box_iou(boxes, boxes), quarter, xp, dtype="float32", rtol=0)
    assert_close(fb.box_ioa(boxes, boxes), [[1.0, 1.0], [0.25, 1.0]], xp, dtype="float32",
                 rtol=0)


def test_tiny_box_inside_huge_box(xp):
    # IoA of a 1e-30 box inside a 3e38 one is 1 (the fraction of it inside); its IoU is
    # (1e-30)^2 / (3e38)^2 ~ 1e-137, 0 in float32; GIoU = IoU - (C - U) / C with C = U
    tiny, huge = [0.0, 0.0, 1e-30, 1e-30], [0.0, 0.0, 3e38, 3e38]
    a, b = f32(xp, [tiny]), f32(xp, [huge])
    assert_close(fb.box_ioa(a, b), [[1.0]], xp, rtol=0)
    assert_close(fb.box_iou(a, b), [[0.0]], xp, atol=1e-37)
    assert_close(fb.generalized_box_iou(a, b), [[0.0]], xp, atol=1e-37)


def test_sides_that_overflow_the_dtype(xp):
    # x2 - x1 = 6e38 is beyond float32 even though both corners are finite: the pair
    # [-3e38, 3e38] x [0, 1] against its right half [0, 3e38] x [0, 1]: IoU 1/2 (up to the
    # rounding of the union's sum, an ulp), GIoU the same (enclosed), IoA 1
    a = f32(xp, [[-3e38, 0.0, 3e38, 1.0]])
    b = f32(xp, [[0.0, 0.0, 3e38, 1.0]])
    assert_close(fb.box_iou(a, b), [[0.5]], xp, rtol=3e-7)
    assert_close(fb.generalized_box_iou(a, b), [[0.5]], xp, rtol=3e-7)
    assert_close(fb.box_ioa(b, a), [[1.0]], xp, rtol=0)


def test_ordinary_boxes_keep_the_plain_formula_bits():
    # on ordinary (COCO-like) boxes the rescaled arithmetic rounds exactly as the plain one:
    # force the rescaled route on eager NumPy and compare bit for bit
    import array_api_compat.numpy as xp

    rng = np.random.default_rng(11)
    xy = rng.uniform(0, 1000, size=(2, 40, 2))
    wh = rng.uniform(0.5, 300, size=(2, 40, 2))
    a, b = (np.concatenate([xy[i], xy[i] + wh[i]], axis=-1).astype(np.float32) for i in (0, 1))
    assert fb.ordinary(xp, a, b)
    inter, union, _, _ = fb._scaled_inter_union(a, b, xp)
    np.testing.assert_array_equal(fb._safe_divide(inter, union, xp), fb.box_iou(a, b))


# --------------------------------------------------------------------------- properties


def _magnitude():
    # coordinates from 1e-30 to 3e38, both signs, and exact zeros
    return st.one_of(
        st.just(0.0),
        st.builds(lambda m, e, s: s * m * 10.0 ** e, st.floats(1.0, 9.99),
                  st.integers(-30, 37), st.sampled_from([-1.0, 1.0])),
        st.sampled_from([3e38, -3e38, F32_MAX, -F32_MAX]))


@st.composite
def extreme_boxes(draw, n=3):
    """(n, 4) float32 xyxy boxes: huge, tiny, degenerate, touching, repeated."""
    out = []
    for _ in range(n):
        x1, x2 = sorted(np.float32([draw(_magnitude()), draw(_magnitude())]))
        y1, y2 = sorted(np.float32([draw(_magnitude()), draw(_magnitude())]))
        out.append([x1, y1, x2, y2])
    kind = draw(st.sampled_from(["free", "repeat", "touch"]))
    if kind == "repeat":
        out[1] = list(out[0])
    elif kind == "touch":  # the second box starts where the first ends
        out[1][0] = out[0][2]
        out[1][2] = max(out[1][2], out[0][2])
    return np.asarray(out, dtype=np.float32)


@SETTINGS
@given(a=extreme_boxes(), b=extreme_boxes())
def test_extreme_boxes_finite_in_range_symmetric_and_exact(xp, a, b):
    xa, xb = f32(xp, a), f32(xp, b)
    iou, giou, ioa = (to_numpy(f(xa, xb)).astype(np.float64)
                      for f in (fb.box_iou, fb.generalized_box_iou, fb.box_ioa))
    for name, v, lo in (("IoU", iou, 0.0), ("GIoU", giou, -1.0), ("IoA", ioa, 0.0)):
        assert np.all(np.isfinite(v)), f"{name} not finite: {v}"
        assert np.all((v >= lo) & (v <= 1.0)), f"{name} out of range: {v}"
    np.testing.assert_array_equal(to_numpy(fb.box_iou(xb, xa)).T, iou)
    np.testing.assert_array_equal(to_numpy(fb.generalized_box_iou(xb, xa)).T, giou)
    exact_iou, exact_giou, exact_ioa = _exact_matrices(a, b)
    # a few float32 roundings of values in [-1, 1]; pairs 2^100 apart in size lose the
    # smaller box's area to underflow, an absolute error far below this
    np.testing.assert_allclose(iou, exact_iou, atol=2e-6)
    np.testing.assert_allclose(giou, exact_giou, atol=2e-6)
    np.testing.assert_allclose(ioa, exact_ioa, atol=2e-6)
    # IoU of a non-empty box with itself is exactly 1
    self_iou = np.diag(to_numpy(fb.box_iou(xa, xa)))
    nonempty = (a[:, 2] > a[:, 0]) & (a[:, 3] > a[:, 1])
    np.testing.assert_array_equal(self_iou[nonempty], 1.0)
    np.testing.assert_array_equal(self_iou[~nonempty], 0.0)


def test_jit_matches_eager_and_guards_non_finite_boxes():
    jax = require("jax")
    import jax.numpy as jnp

    # traced calls always rescale: on ordinary boxes that is the eager plain result, on
    # extreme ones still finite and exact; a NaN or inf box (unchecked inside the trace)
    # gives 0, never NaN
    boxes = np.asarray([[0, 0, 10.5, 20.25], [3, 4, 9, 30], [0, 0, 3e38, 3e38],
                        [-3e38, -3e38, 3e38, 3e38], [0, 0, 1e-30, 1e-30]], dtype=np.float32)
    x = jnp.asarray(boxes)
    for f in (fb.box_iou, fb.generalized_box_iou, fb.box_ioa):
        jitted, eager = np.asarray(jax.jit(f)(x, x)), np.asarray(f(x, x))
        np.testing.assert_allclose(jitted, eager, atol=1e-7, rtol=0)
    bad = jnp.asarray(np.asarray([[0, 0, 1, 1], [np.nan, 0, 1, 1], [0, 0, np.inf, 1]],
                                 dtype=np.float32))
    for f in (fb.box_iou, fb.generalized_box_iou, fb.box_ioa):
        got = np.asarray(jax.jit(f)(bad, bad))
        assert got[0, 0] == 1.0
        np.testing.assert_array_equal(got[1:, :], 0.0)
        np.testing.assert_array_equal(got[:, 1:], 0.0)


# --------------------------------------------------------------------------- box coder


def test_encode_degenerate_anchor_or_box_named(xp):
    good = f32(xp, [[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 2.0, 2.0]])
    flat = f32(xp, [[0.0, 0.0, 1.0, 1.0], [5.0, 1.0, 5.0, 2.0]])  # anchors[1]: zero width
    with pytest.raises(ValueError, match=r"anchors\[1\] = \[5\.0, 1\.0, 5\.0, 2\.0\] has zero "
                                         r"width.*positive width and height"):
        fb.encode(flat, good)
    low = f32(xp, [[0.0, 3.0, 1.0, 3.0], [0.0, 0.0, 1.0, 1.0]])  # boxes[0]: zero height
    with pytest.raises(ValueError, match=r"boxes\[0\] = .* has zero height"):
        fb.encode(good, low)


def test_encode_extreme_but_representable(xp):
    # the anchor's width 6e38 overflows float32, the box is its full-width 1e-30-high strip
    # through the centre: dx = 0, dy = (5e-31 - 0) / 6e38 (0 in float32), dw = log 1 = 0,
    # dh = log(1e-30 / 6e38), about -158.37 (a ratio below float32's range)
    anchors = f32(xp, [[-3e38, -3e38, 3e38, 3e38]])
    boxes = f32(xp, [[-3e38, 0.0, 3e38, 1e-30]])
    h = float(np.float32(1e-30))
    expected = [0.0, 0.0, 0.0, math.log(h / (2 * float(np.float32(3e38))))]
    assert_close(fb.encode(anchors, boxes), [expected], xp, dtype="float32", rtol=1e-6,
                 atol=1e-30)


def test_encode_delta_beyond_the_range_is_an_error(xp):
    # dx = (3.1e38 - 5e-31) / 1e-30 ~ 3e68: not a float32
    with pytest.raises(ValueError, match=r"deltas \[0\] = \[inf, .*beyond the range"):
        fb.encode(f32(xp, [[0.0, 0.0, 1e-30, 1e-30]]), f32(xp, [[3e38, 0.0, 3.2e38, 1.0]]))


def test_encode_under_jit_is_finite():
    jax = require("jax")
    import jax.numpy as jnp

    # unchecked inside the trace: a zero-width anchor gives deltas 0, an out-of-range delta
    # saturates at the float32 maximum
    anchors = jnp.asarray([[0.0, 0.0, 0.0, 2.0], [0.0, 0.0, 1e-30, 1e-30]], dtype=jnp.float32)
    boxes = jnp.asarray([[0.0, 0.0, 1.0, 1.0], [3e38, 0.0, 3.2e38, 1.0]], dtype=jnp.float32)
    got = np.asarray(jax.jit(fb.encode)(anchors, boxes))
    np.testing.assert_array_equal(got[0], 0.0)
    assert got[1, 0] == F32_MAX and np.all(np.isfinite(got))


def test_decode_anchor_whose_width_overflows(xp):
    # zero deltas give the anchor back, although its width 6e38 is not a float32
    anchors = f32(xp, [[-3e38, -1.0, 3e38, 1.0]])
    got = fb.decode(anchors, f32(xp, [[0.0, 0.0, 0.0, 0.0]]))
    assert_close(got, to_numpy(anchors), xp, dtype="float32", rtol=0)


def test_decode_saturates(xp):
    # anchor [0, 3e38]^2, deltas (1e30, 0, 1, 1): c_x = 1e30 * 3e38 + 1.5e38 is beyond the
    # range, so x1 = x2 = max; y: c_y = 1.5e38, h = e * 3e38, y1 = 1.5e38 - e * 1.5e38
    # (representable), y2 = 1.5e38 + e * 1.5e38 (beyond: max)
    a = float(np.float32(3e38))
    got = to_numpy(fb.decode(f32(xp, [[0.0, 0.0, 3e38, 3e38]]),
                             f32(xp, [[1e30, 0.0, 1.0, 1.0]])))
    assert np.all(np.isfinite(got))
    assert got[0, 0] == got[0, 2] == F32_MAX and got[0, 3] == F32_MAX
    np.testing.assert_allclose(got[0, 1], a / 2 - math.e * a / 2, rtol=1e-6)
    # no clamp: exp(1e30) is inf; a zero-width anchor times it is 0, not NaN
    got = to_numpy(fb.decode(f32(xp, [[0.0, 0.0, 0.0, 3e38]]),
                             f32(xp, [[0.0, 1e30, 1e30, 1e30]]), clamp=None))
    np.testing.assert_array_equal(got, [[0.0, F32_MAX, 0.0, F32_MAX]])


def test_decode_non_finite_delta_named(xp):
    with pytest.raises(ValueError, match=r"deltas\[0, 1\] = \[0\.0, nan, 0\.0, 0\.0\] is not "
                                         r"finite"):
        fb.decode(f32(xp, [[0.0, 0.0, 1.0, 1.0]] * 2),
                  f32(xp, [[[0, 0, 0, 0], [0, math.nan, 0, 0]]]))


def test_box_coder_is_reexported():
    assert fb.encode is box_coder.encode and fb.decode is box_coder.decode
    assert fb.DEFAULT_DECODE_CLAMP == box_coder.DEFAULT_DECODE_CLAMP


def test_quiet_on_numpy():
    # the expected overflows of the extreme paths raise no NumPy warning
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fb.decode(np.asarray([[0, 0, 3e38, 3e38]], np.float32),
                  np.asarray([[1e30, 0, 1, 1]], np.float32))
        fb.encode(np.asarray([[-3e38, -3e38, 3e38, 3e38]], np.float32),
                  np.asarray([[-3e38, 0, 3e38, 1e-30]], np.float32))
        fb.box_ioa(np.asarray([[0, 0, 1e-30, 1e-30]], np.float32),
                   np.asarray([[-3e38, -3e38, 3e38, 3e38]], np.float32))

