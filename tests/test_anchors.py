"""Tests for focal_array.anchors: counts, hand-derived values, order, backends, options."""

from __future__ import annotations

import math

import array_api_compat
import numpy as np
import pytest

from focal_array.anchors import LevelGrid, anchors_per_level, retinanet_anchors
from tests.helpers import assert_close, library, to_numpy

STRIDES = (8, 16, 32, 64, 128)
SIZES = (32, 64, 128, 256, 512)
SCALES = (1.0, 2 ** (1 / 3), 2 ** (2 / 3))
RATIOS = (0.5, 1.0, 2.0)


def reference_anchors(height, width, strides=STRIDES, sizes=SIZES, scales=SCALES,
                      ratios=RATIOS, offset=0.5):
    """Plain loops in float64, written from the documented convention only."""
    rows = []
    for stride, size in zip(strides, sizes, strict=True):
        for y in range(math.ceil(height / stride)):
            for x in range(math.ceil(width / stride)):
                cx, cy = (x + offset) * stride, (y + offset) * stride
                for r in ratios:
                    for s in scales:
                        w = size * s / math.sqrt(r)
                        h = size * s * math.sqrt(r)
                        rows.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    return np.array(rows, dtype=np.float64)


def test_count_800x1333_derived_by_hand():
    # ceil(800/s) x ceil(1333/s) for s = 8..128:
    #   P3 100 x 167 = 16700   (1333/8  = 166.6)
    #   P4  50 x  84 =  4200   (1333/16 = 83.3)
    #   P5  25 x  42 =  1050   (800/32 = 25, 1333/32 = 41.7)
    #   P6  13 x  21 =   273   (800/64 = 12.5, 1333/64 = 20.8)
    #   P7   7 x  11 =    77   (800/128 = 6.25, 1333/128 = 10.4)
    # 22300 locations x 9 anchors = 200700
    grids = anchors_per_level((800, 1333))
    assert grids == (LevelGrid(100, 167, 9), LevelGrid(50, 84, 9), LevelGrid(25, 42, 9),
                     LevelGrid(13, 21, 9), LevelGrid(7, 11, 9))
    assert sum(g.num_anchors for g in grids) == 200_700
    assert retinanet_anchors((800, 1333)).shape == (200_700, 4)


def test_count_padded_like_torchvision():
    # torchvision pads 800x1333 to a multiple of 32 (800x1344): P3 becomes 100 x 168
    assert retinanet_anchors((800, 1344)).shape == ((16800 + 4200 + 1050 + 273 + 77) * 9, 4)


def test_default_namespace_dtype_is_numpy_float32():
    a = retinanet_anchors((64, 96))
    assert isinstance(a, np.ndarray)
    assert a.dtype == np.float32


def test_first_and_last_anchor_by_hand():
    a = retinanet_anchors((800, 1333), dtype=None)
    # first: P3, cell (0, 0) centred on (4, 4), ratio 0.5 (h/w), scale 1: side 32,
    # w = 32 / sqrt(0.5) = 45.2548, h = 32 * sqrt(0.5) = 22.6274
    w, h = 32 / math.sqrt(0.5), 32 * math.sqrt(0.5)
    np.testing.assert_allclose(a[0], [4 - w / 2, 4 - h / 2, 4 + w / 2, 4 + h / 2], rtol=1e-6)
    # last: P7, cell (6, 10) centred on (10.5 * 128, 6.5 * 128) = (1344, 832),
    # ratio 2, scale 2**(2/3): side 512 * 1.5874 = 812.75
    side = 512 * 2 ** (2 / 3)
    w, h = side / math.sqrt(2), side * math.sqrt(2)
    np.testing.assert_allclose(a[-1], [1344 - w / 2, 832 - h / 2, 1344 + w / 2, 832 + h / 2],
                               rtol=1e-6)


def test_order_level_then_y_then_x_then_anchor():
    a = retinanet_anchors((800, 1333)).astype(np.float64)
    centres = (a[:, :2] + a[:, 2:]) / 2
    # within a location: 9 anchors share a centre
    np.testing.assert_allclose(centres[:9], np.full((9, 2), 4.0))
    # next x: index 9 is cell (y=0, x=1) of P3
    np.testing.assert_allclose(centres[9], [12.0, 4.0])
    # next y: one row of P3 is 167 locations
    np.testing.assert_allclose(centres[9 * 167], [4.0, 12.0])
    # next level: P4 starts after 16700 P3 locations, centred on (8, 8), base size 64
    start = 9 * 16700
    np.testing.assert_allclose(centres[start], [8.0, 8.0])
    widths = a[:, 2] - a[:, 0]
    np.testing.assert_allclose(widths[start], 64 / math.sqrt(0.5), rtol=1e-6)
    # whole P3 block as (H, W, K, 4): centres follow the grid
    p3 = centres[:start].reshape(100, 167, 9, 2)
    np.testing.assert_allclose(p3[..., 0], np.broadcast_to(
        (np.arange(167) + 0.5)[None, :, None] * 8, (100, 167, 9)))
    np.testing.assert_allclose(p3[..., 1], np.broadcast_to(
        (np.arange(100) + 0.5)[:, None, None] * 8, (100, 167, 9)))


def test_ratio_major_shapes_per_ratio_and_scale():
    a = retinanet_anchors((128, 128), dtype=None).astype(np.float64)
    offset = 0
    for grid, size in zip(anchors_per_level((128, 128)), SIZES, strict=True):
        cell = a[offset:offset + 9]
        w, h = cell[:, 2] - cell[:, 0], cell[:, 3] - cell[:, 1]
        for k in range(9):
            ratio, scale = RATIOS[k // 3], SCALES[k % 3]
            np.testing.assert_allclose(h[k] / w[k], ratio, rtol=1e-5)
            np.testing.assert_allclose(w[k] * h[k], (size * scale) ** 2, rtol=1e-5)
        offset += grid.num_anchors


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_matches_reference_on_every_backend(xp, dtype):
    got = retinanet_anchors((70, 45), xp=xp, dtype=getattr(xp, dtype))
    # float32 rounds centre and half-size separately: absolute error ~ eps * 1000 px
    assert_close(got, reference_anchors(70, 45), xp, dtype=dtype,
                 rtol=1e-6 if dtype == "float32" else 1e-12,
                 atol=1e-3 if dtype == "float32" else 1e-9)


def test_default_dtype_and_device(xp):
    info = xp.__array_namespace_info__()
    device = info.default_device()
    got = retinanet_anchors((32, 32), xp=xp, device=device)
    assert library(array_api_compat.array_namespace(got)) == library(xp)
    assert got.dtype == xp.float32
    assert array_api_compat.device(got) == array_api_compat.device(xp.asarray(0.0))


def test_float16_is_built_in_float32_then_cast():
    import array_api_compat.numpy as cnp

    got = retinanet_anchors((800, 1333), xp=cnp, dtype=cnp.float16)
    assert got.dtype == np.float16
    want = retinanet_anchors((800, 1333)).astype(np.float16)
    np.testing.assert_array_equal(got, want)


def test_offset_zero_matches_torchvision_centres():
    a = retinanet_anchors((64, 64), offset=0.0).astype(np.float64)
    b = retinanet_anchors((64, 64)).astype(np.float64)
    grids = anchors_per_level((64, 64))
    shift = np.concatenate([np.full(g.num_anchors, s / 2) for g, s in zip(grids, STRIDES,
                                                                          strict=True)])
    np.testing.assert_allclose(a, b - shift[:, None])
    np.testing.assert_allclose((a[0, :2] + a[0, 2:]) / 2, [0.0, 0.0], atol=1e-6)


def test_custom_levels_and_tiny_image():
    a = retinanet_anchors((5, 3), strides=(4, 8), sizes=(16, 32), scales=(1.0,),
                          aspect_ratios=(1.0,))
    # ceil(5/4) x ceil(3/4) = 2 x 1, then 1 x 1
    assert a.shape == (3, 4)
    np.testing.assert_allclose(a, [[-6, -6, 10, 10], [-6, -2, 10, 14], [-12, -12, 20, 20]])


def test_all_boxes_well_formed():
    a = to_numpy(retinanet_anchors((300, 200)))
    assert np.all(a[:, 0] < a[:, 2])
    assert np.all(a[:, 1] < a[:, 3])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"image_size": 800}, TypeError, "pair"),
        ({"image_size": (800,)}, TypeError, "pair"),
        ({"image_size": "ab"}, TypeError, "pair"),
        ({"image_size": (0, 10)}, ValueError, "height"),
        ({"image_size": (10, -1)}, ValueError, "width"),
        ({"image_size": (10.5, 10)}, TypeError, "height"),
        ({"image_size": (True, 10)}, TypeError, "height"),
        ({"strides": 8}, TypeError, "strides"),
        ({"strides": ()}, ValueError, "strides must not be empty"),
        ({"strides": (8, 0, 32, 64, 128)}, ValueError, r"strides\[1\]"),
        ({"strides": (8.0, 16, 32, 64, 128)}, TypeError, r"strides\[0\]"),
        ({"sizes": (32, 64)}, ValueError, "one entry per pyramid level"),
        ({"sizes": (32, 64, 128, 256, -512)}, ValueError, r"sizes\[4\]"),
        ({"scales": (1.0, float("nan"))}, ValueError, r"scales\[1\]"),
        ({"scales": ()}, ValueError, "scales must not be empty"),
        ({"aspect_ratios": (0.5, 0)}, ValueError, r"aspect_ratios\[1\]"),
        ({"aspect_ratios": ("1:2",)}, TypeError, r"aspect_ratios\[0\]"),
        ({"offset": 1.0}, ValueError, "offset"),
        ({"offset": -0.1}, ValueError, "offset"),
    ],
)
def test_bad_options(kwargs, error, match):
    kwargs = {"image_size": (64, 64), **kwargs}
    with pytest.raises(error, match=match):
        retinanet_anchors(**kwargs)


def test_bad_options_per_level_helper():
    with pytest.raises(ValueError, match="one entry per pyramid level"):
        anchors_per_level((64, 64), strides=(8, 16))


def test_integer_dtype_rejected(xp):
    with pytest.raises(TypeError, match="real floating"):
        retinanet_anchors((64, 64), xp=xp, dtype=xp.int32)
