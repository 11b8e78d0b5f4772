"""focal_array.boxes on every backend: formats, area, IoU / GIoU / IoA, the box coder."""

from __future__ import annotations

import math

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from focal_array import boxes as fb
from tests import reference_matcher as ref
from tests.helpers import asarray, assert_close, has_autodiff, library, to_numpy, value_and_grad

SETTINGS = settings(max_examples=10, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def box_sets(draw, n_min=4, n_max=4, positive=False):
    """(n, 4) float xyxy boxes on an integer grid (exact differences, small denominators).

    A fixed n by default keeps JAX from recompiling every op for each example."""
    n = draw(st.integers(n_min, n_max))
    lo = 1 if positive else 0
    xy = draw(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 20)),
                       min_size=n, max_size=n))
    wh = draw(st.lists(st.tuples(st.integers(lo, 12), st.integers(lo, 12)),
                       min_size=n, max_size=n))
    return np.asarray([[x, y, x + w, y + h] for (x, y), (w, h) in zip(xy, wh, strict=True)],
                      dtype=np.float64)


# --------------------------------------------------------------------------- convert, area


def test_convert_known_values(xp):
    xyxy = asarray(xp, [[10.0, 20.0, 40.0, 60.0]], "float32")
    assert_close(fb.convert(xyxy, "xyxy", "xywh"), [[10, 20, 30, 40]], xp, dtype="float32")
    assert_close(fb.convert(xyxy, "xyxy", "cxcywh"), [[25, 40, 30, 40]], xp, dtype="float32")
    xywh = asarray(xp, [[10.0, 20.0, 30.0, 40.0]], "float64")
    assert_close(fb.convert(xywh, "xywh", "xyxy"), [[10, 20, 40, 60]], xp, dtype="float64")
    assert_close(fb.convert(xywh, "xywh", "cxcywh"), [[25, 40, 30, 40]], xp, dtype="float64")
    c = asarray(xp, [[25.0, 40.0, 30.0, 40.0]], "float64")
    assert_close(fb.convert(c, "cxcywh", "xyxy"), [[10, 20, 40, 60]], xp, dtype="float64")
    assert_close(fb.convert(c, "cxcywh", "cxcywh"), [[25, 40, 30, 40]], xp, dtype="float64")


@pytest.mark.parametrize("src", fb.FORMATS)
@pytest.mark.parametrize("dst", fb.FORMATS)
def test_convert_round_trip(xp, src, dst):
    b = np.random.default_rng(0).uniform(1, 50, size=(2, 3, 4))
    x = asarray(xp, b, "float64")
    back = fb.convert(fb.convert(x, src, dst), dst, src)
    assert_close(back, b, xp, dtype="float64", rtol=1e-12, atol=1e-12)


def test_half_precision_computed_in_float32(xp):
    if library(xp) == "array_api_strict":
        pytest.skip("array_api_strict has no float16")
    b = asarray(xp, [[0.0, 0.0, 2.0, 2.0], [1.0, 0.0, 3.0, 2.0]], "float16")
    assert_close(fb.box_iou(b, b), [[1, 1 / 3], [1 / 3, 1]], xp, dtype="float32")
    assert_close(fb.area(b), [4, 4], xp, dtype="float32")
    assert_close(fb.convert(b, "xyxy", "xywh"), [[0, 0, 2, 2], [1, 0, 2, 2]], xp,
                 dtype="float32")


def test_area(xp):
    b = asarray(xp, [[0.0, 0.0, 2.0, 3.0], [1.0, 1.0, 1.0, 5.0]], "float32")
    assert_close(fb.area(b), [6.0, 0.0], xp, dtype="float32")


# --------------------------------------------------------------------------- IoU family


def test_box_iou_hand_cases(xp):
    a = asarray(xp, [[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]], "float32")
    b = asarray(xp, [[0.0, 0.0, 2.0, 2.0], [1.0, 0.0, 3.0, 2.0], [5.0, 5.0, 6.0, 6.0],
                     [0.0, 0.0, 0.0, 0.0]], "float32")
    expected = [[1.0, 1 / 3, 0.0, 0.0], [0.25, 0.0, 0.0, 0.0]]
    assert_close(fb.box_iou(a, b), expected, xp, dtype="float32")


def test_zero_area_box_has_iou_zero_never_nan(xp):
    degenerate = asarray(xp, [[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 5.0]], "float32")
    assert_close(fb.box_iou(degenerate, degenerate), np.zeros((2, 2)), xp, dtype="float32")
    assert_close(fb.box_ioa(degenerate, degenerate), np.zeros((2, 2)), xp, dtype="float32")
    # GIoU stays finite: the enclosing box of a point and a segment has area 5 -> -1
    assert_close(fb.generalized_box_iou(degenerate, degenerate), [[0.0, -1.0], [-1.0, 0.0]],
                 xp, dtype="float32")


def test_batch_broadcast_shared_anchors(xp):
    anchors = np.asarray([[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 3.0], [4.0, 0.0, 6.0, 1.0]])
    gts = np.asarray([[[0.0, 0.0, 2.0, 1.0]], [[1.0, 1.0, 3.0, 4.0]]])
    got = fb.box_iou(asarray(xp, anchors, "float64"), asarray(xp, gts, "float64"))
    expected = np.stack([ref.iou(anchors, g) for g in gts])
    assert_close(got, expected, xp, dtype="float64", shape=(2, 3, 1))


def test_giou_and_ioa_hand_cases(xp):
    a = asarray(xp, [[0.0, 0.0, 1.0, 1.0]], "float64")
    b = asarray(xp, [[2.0, 0.0, 3.0, 1.0], [0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 2.0, 2.0]],
                "float64")
    # disjoint: IoU 0, enclosing 3, union 2 -> -1/3; identical -> 1; inside: 1/4 - 0
    assert_close(fb.generalized_box_iou(a, b), [[-1 / 3, 1.0, 0.25]], xp, dtype="float64")
    assert_close(fb.box_ioa(a, b), [[0.0, 1.0, 1.0]], xp, dtype="float64")
    assert_close(fb.box_ioa(b, a), [[0.0], [1.0], [0.25]], xp, dtype="float64")


@SETTINGS
@given(a=box_sets(), b=box_sets(n_min=5, n_max=5))
def test_iou_properties_and_reference(xp, a, b):
    xa, xb = asarray(xp, a, "float32"), asarray(xp, b, "float32")
    iou = fb.box_iou(xa, xb)
    expected = ref.iou(a, b)
    assert_close(iou, expected, xp, dtype="float32", rtol=1e-6, atol=1e-7)
    got = to_numpy(iou)
    assert np.all((got >= 0) & (got <= 1))
    np.testing.assert_array_equal(to_numpy(fb.box_iou(xb, xa)), got.T)  # symmetric
    assert_close(fb.generalized_box_iou(xa, xb), ref.giou(a, b), xp, rtol=1e-6, atol=1e-6)
    assert_close(fb.box_ioa(xa, xb), ref.ioa(a, b), xp, rtol=1e-6, atol=1e-7)


@SETTINGS
@given(a=box_sets(positive=True))
def test_iou_with_itself_is_one(xp, a):
    iou = to_numpy(fb.box_iou(asarray(xp, a, "float32"), asarray(xp, a, "float32")))
    np.testing.assert_array_equal(np.diag(iou), np.ones(len(a)))


def test_giou_gradient_finite_at_degenerate_boxes(xp):
    if not has_autodiff(xp):
        pytest.skip("no autodiff")
    a = asarray(xp, [[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 2.0, 2.0]], "float64")
    b = asarray(xp, [[1.0, 1.0, 1.0, 1.0]], "float64")
    _, grad = value_and_grad(xp, lambda z: fb.generalized_box_iou(z, b), a)
    assert np.all(np.isfinite(to_numpy(grad)))


# --------------------------------------------------------------------------- box coder


def test_encode_decode_known_values(xp):
    anchors = asarray(xp, [[0.0, 0.0, 2.0, 2.0]], "float64")
    boxes = asarray(xp, [[1.0, 0.0, 3.0, 4.0]], "float64")
    expected = ref.encode([0, 0, 2, 2], [1, 0, 3, 4], (10, 10, 5, 5))
    deltas = fb.encode(anchors, boxes, weights=(10, 10, 5, 5))
    assert_close(deltas, [expected], xp, dtype="float64", rtol=1e-12)
    assert_close(fb.decode(anchors, deltas, weights=(10, 10, 5, 5)), [[1, 0, 3, 4]], xp,
                 dtype="float64", rtol=1e-12, atol=1e-12)


def test_decode_clamps_log_scale(xp):
    anchors = asarray(xp, [[0.0, 0.0, 16.0, 16.0]], "float64")
    deltas = asarray(xp, [[0.0, 0.0, 50.0, 50.0]], "float64")
    expected = ref.decode([0, 0, 16, 16], [0, 0, 50, 50])  # width 1000
    assert_close(fb.decode(anchors, deltas), [expected], xp, rtol=1e-12)
    assert math.isclose(expected[2] - expected[0], 1000.0)
    unclamped = fb.decode(anchors, asarray(xp, [[0.0, 0.0, 5.0, 5.0]], "float64"), clamp=None)
    assert_close(unclamped, [ref.decode([0, 0, 16, 16], [0, 0, 5, 5], clamp=None)], xp,
                 rtol=1e-12)


@SETTINGS
@given(a=box_sets(positive=True, n_min=3, n_max=3), b=box_sets(positive=True, n_min=3,
                                                               n_max=3))
def test_decode_inverts_encode(xp, a, b):
    anchors, boxes = asarray(xp, a, "float64"), asarray(xp, b, "float64")
    w = (10.0, 10.0, 5.0, 5.0)
    deltas = fb.encode(anchors, boxes, weights=w)
    assert_close(deltas, [ref.encode(x, y, w) for x, y in zip(a, b, strict=True)], xp,
                 rtol=1e-9, atol=1e-12)
    assert_close(fb.decode(anchors, deltas, weights=w), b, xp, rtol=1e-9, atol=1e-9)


# --------------------------------------------------------------------------- bad input


def test_last_dimension_must_be_four(xp):
    with pytest.raises(ValueError, match=r"boxes1 must have shape \(\.\.\., 4\)"):
        fb.box_iou(asarray(xp, np.zeros((2, 3)), "float32"), asarray(xp, np.zeros((2, 4)),
                                                                     "float32"))
    with pytest.raises(ValueError, match=r"deltas must have shape"):
        fb.decode(asarray(xp, np.ones((2, 4)), "float32"), asarray(xp, np.ones((2, 5)),
                                                                   "float32"))


def test_batch_shapes_must_broadcast(xp):
    a = asarray(xp, np.zeros((2, 3, 4)), "float32")
    b = asarray(xp, np.zeros((3, 5, 4)), "float32")
    with pytest.raises(ValueError, match=r"batch dimensions of boxes1 \(2,\) and boxes2 \(3,\)"):
        fb.box_iou(a, b)


def test_mixed_libraries_rejected(xp):
    if library(xp) == "numpy":
        pytest.skip("needs a second library")
    a = asarray(xp, np.zeros((1, 4)), "float32")
    with pytest.raises(TypeError, match=r"different libraries.*numpy"):
        fb.box_iou(a, np.zeros((1, 4), np.float32))


def test_non_floating_boxes_rejected(xp):
    with pytest.raises(TypeError, match="boxes must have a real floating dtype"):
        fb.area(asarray(xp, np.zeros((1, 4), np.int32)))


@pytest.mark.parametrize(
    ("box", "reason"),
    [([3.0, 0.0, 1.0, 1.0], r"x2 < x1"), ([0.0, 3.0, 1.0, 1.0], r"y2 < y1"),
     ([0.0, 0.0, math.inf, 1.0], r"a non-finite"), ([math.nan, 0.0, 1.0, 1.0], r"a non-finite"),
     # every way a side can stay finite or >= 0 while a coordinate is not: the cheap screen
     # on the sides must still send these to the exact scan
     ([math.inf, 0.0, math.inf, 1.0], r"a non-finite"),
     ([-math.inf, 0.0, 1.0, 1.0], r"a non-finite"),
     ([0.0, -math.inf, 1.0, -math.inf], r"a non-finite"),
     ([0.0, 0.0, 1.0, math.nan], r"a non-finite")],
)
def test_malformed_box_named_by_index(xp, box, reason):
    b = np.zeros((2, 3, 4))
    b[..., 2:] = 1.0
    b[1, 2] = box
    good = asarray(xp, np.asarray([[0.0, 0.0, 1.0, 1.0]]), "float32")
    with pytest.raises(ValueError, match=rf"boxes2\[1, 2\] = .* has {reason}"):
        fb.box_iou(good, asarray(xp, b, "float32"))
    with pytest.raises(ValueError, match=rf"boxes\[1, 2\] = .* has {reason}"):
        fb.area(asarray(xp, b, "float32"))


def test_huge_boxes_whose_sides_overflow_are_accepted(xp):
    # x2 - x1 overflows float32 to inf: the screen fails, the exact scan finds nothing wrong
    huge = asarray(xp, [[-3e38, 0.0, 3e38, 1.0], [0.0, 0.0, 1.0, 1.0]], "float32")
    fb.check_boxes(xp, huge, "boxes")


def test_bad_options(xp):
    b = asarray(xp, [[0.0, 0.0, 1.0, 1.0]], "float32")
    with pytest.raises(ValueError, match="src must be one of"):
        fb.convert(b, "xyz", "xyxy")
    with pytest.raises(ValueError, match="weights must be"):
        fb.encode(b, b, weights=(1, 1, 1))
    with pytest.raises(ValueError, match="weights must be 4 finite positive"):
        fb.decode(b, b, weights=(1, 1, 0, 1))
    with pytest.raises(ValueError, match="clamp must be"):
        fb.decode(b, b, clamp="big")
