"""FCOS assignment and centerness targets, against a float32 transcription of torchvision.

``_tv_match`` is torchvision's ``FCOS.compute_loss`` matching loop (models/detection/
fcos.py) line by line in NumPy float32, for one image's real gts. It differs from
``fcos_assign`` only where torchvision's ``float32(1e8 - area)`` score merges different
areas (or is not positive, area >= 1e8); ``_tv_match(..., exact_areas=True)`` ranks the
same candidates by the areas themselves and must agree everywhere.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import asarray, library, require, to_numpy

from focal_array._assign_fcos import centerness_targets, fcos_assign
from focal_array._matching import BACKGROUND
from focal_array.anchors import anchors_per_level, retinanet_anchors

COMPILE_WARNINGS = pytest.mark.filterwarnings(
    "ignore:Dynamo detected a call to a `functools.lru_cache`:UserWarning")
STRIDES = (8, 16, 32, 64, 128)
IMAGE = (256, 320)
FCOS = {"strides": STRIDES, "sizes": STRIDES, "scales": (1.0,), "aspect_ratios": (1.0,)}


def _fcos_anchors(size=IMAGE):
    """torchvision's FCOS anchors (one square anchor of side = stride per location, at the
    top-left corner of its cell) and the per-level counts."""
    anchors = np.asarray(retinanet_anchors(size, offset=0.0, **FCOS))
    return anchors, [g.num_anchors for g in anchors_per_level(size, **FCOS)]


def _tv_match(anchors, gt_boxes, levels, radius=1.5, exact_areas=False):
    """torchvision's FCOS matching of one image (its real gts only), NumPy float32."""
    anchors = np.asarray(anchors, np.float32)
    gt_boxes = np.asarray(gt_boxes, np.float32)
    if gt_boxes.size == 0:
        return np.full(len(anchors), -1)
    gt_centers = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / np.float32(2)
    anchor_centers = (anchors[:, :2] + anchors[:, 2:]) / np.float32(2)
    anchor_sizes = anchors[:, 2] - anchors[:, 0]
    pairwise_match = np.abs(anchor_centers[:, None, :] - gt_centers[None, :, :]).max(
        axis=2) < np.float32(radius) * anchor_sizes[:, None]
    x, y = anchor_centers[:, 0:1], anchor_centers[:, 1:2]
    x0, y0, x1, y1 = (gt_boxes[None, :, k] for k in range(4))
    pairwise_dist = np.stack([x - x0, y - y0, x1 - x, y1 - y], axis=2)
    pairwise_match &= pairwise_dist.min(axis=2) > 0
    lower_bound = anchor_sizes * 4
    lower_bound[: levels[0]] = 0
    upper_bound = anchor_sizes * 8
    upper_bound[-levels[-1]:] = np.inf
    pairwise_dist = pairwise_dist.max(axis=2)
    pairwise_match &= (pairwise_dist > lower_bound[:, None]) & \
        (pairwise_dist < upper_bound[:, None])
    gt_areas = (gt_boxes[:, 2] - gt_boxes[:, 0]) * (gt_boxes[:, 3] - gt_boxes[:, 1])
    if exact_areas:  # the rule fcos_assign implements: smallest area, lowest index on ties
        key = np.where(pairwise_match, gt_areas[None, :], np.inf)
        matched = np.argmin(key, axis=1)
        matched[~pairwise_match.any(axis=1)] = -1
        return matched
    score = pairwise_match.astype(np.float32) * (np.float32(1e8) - gt_areas[None, :])
    min_values, matched_idx = score.max(axis=1), score.argmax(axis=1)  # first maximum
    matched_idx[min_values < 1e-5] = -1
    return matched_idx


def _tv_batch(anchors, gts, valid, levels, **options):
    """``_tv_match`` per image on its real gts, indices mapped back to the padded slots."""
    out = []
    for b in range(len(gts)):
        real = np.flatnonzero(valid[b])
        m = _tv_match(anchors, gts[b][real], levels, **options)
        out.append(np.where(m >= 0, real[np.maximum(m, 0)] if len(real) else -1, -1))
    return np.stack(out)


def _coco_like(rng, batch=6, slots=16, size=IMAGE):
    """Padded COCO-like gts: log-uniform sizes from ~1 px to beyond the image, tiny boxes,
    exact and 1-px duplicates, padding (garbage, anywhere) and an empty first image."""
    h, w = size
    boxes = np.zeros((batch, slots, 4), np.float32)
    valid = np.zeros((batch, slots), bool)
    for b in range(1, batch):
        n = int(rng.integers(1, slots + 1))
        where = np.sort(rng.choice(slots, n, replace=False))
        for k, i in enumerate(where):
            roll = rng.random()
            if k and roll < 0.15:  # exact duplicate of an earlier box
                boxes[b, i] = boxes[b, where[rng.integers(k)]]
            elif k and roll < 0.3:  # near duplicate (annotators disagreeing by a pixel)
                boxes[b, i] = boxes[b, where[rng.integers(k)]] + rng.uniform(-1, 1, 4)
            elif roll < 0.36:  # huge, beyond the image (after a zoom-in crop): last level
                hw, hh = rng.uniform(520, 700, 2)
                boxes[b, i] = np.round([w / 2 - hw, h / 2 - hh, w / 2 + hw, h / 2 + hh], 2)
                continue
            else:
                tiny = roll > 0.85
                bw, bh = (rng.uniform(0.5, 4, 2) if tiny else
                          np.exp(rng.uniform(np.log(2), np.log(1.3 * max(h, w)), 2)))
                cx, cy = rng.uniform(0, w), rng.uniform(0, h)
                boxes[b, i] = [cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2]
            if rng.random() < 0.7:  # mostly inside the image, as COCO's are
                boxes[b, i] = np.clip(boxes[b, i], 0, [w, h, w, h])
            boxes[b, i] = np.round(boxes[b, i], 2)
            boxes[b, i, 2:] = np.maximum(boxes[b, i, 2:], boxes[b, i, :2])
        valid[b, where] = True
    garbage = np.asarray([np.nan, np.inf, -5.0, -np.inf], np.float32)
    boxes[~valid] = garbage  # padding may hold anything
    return boxes, valid


def _problem(seed=0, **kw):
    anchors, levels = _fcos_anchors()
    gts, valid = _coco_like(np.random.default_rng(seed), **kw)
    return anchors, levels, gts, valid


def _assign(xp, anchors, gts, valid, levels, **options):
    return fcos_assign(asarray(xp, anchors, "float32"), asarray(xp, gts, "float32"),
                       gt_valid=asarray(xp, valid), num_anchors_per_level=levels, **options)


# --------------------------------------------------------------------------- (a), (b)


@pytest.mark.parametrize("radius", [1.5])  # 2.5 too, against torchvision itself, once
def test_equals_torchvision_transcription_on_coco_like(xp, radius):
    anchors, levels, gts, valid = _problem(seed=10)  # has 1-px near duplicates that merge
    got = _assign(xp, anchors, gts, valid, levels, center_sampling_radius=radius)
    assert got.dtype == xp.__array_namespace_info__().default_dtypes()["indexing"]
    got = to_numpy(got)
    assert got.shape == (len(gts), len(anchors))
    exact = _tv_batch(anchors, gts, valid, levels, radius=radius, exact_areas=True)
    np.testing.assert_array_equal(got, exact)
    tv = _tv_batch(anchors, gts, valid, levels, radius=radius)
    # torchvision differs only where its 1e8 - area merged two candidates' areas, and
    # there it took the lower index although ours has the smaller area
    differ = got != tv
    assert np.all(tv[differ] >= 0) and np.all(tv[differ] < got[differ])
    b = np.nonzero(differ)[0]
    area = (gts[..., 2] - gts[..., 0]) * (gts[..., 3] - gts[..., 1])
    assert np.all(area[b, got[differ]] < area[b, tv[differ]])
    assert np.all(np.abs(area[b, got[differ]] - area[b, tv[differ]]) <= 16)
    assert 1 <= differ.sum() <= 0.1 * (got >= 0).sum()
    assert np.all(got[0] == BACKGROUND)  # the empty image
    level = np.searchsorted(np.cumsum(levels), np.nonzero(got >= 0)[1], side="right")
    assert (got >= 0).sum() > 100 and {0, 1, 2, 4} <= set(level.tolist())


def test_area_merging_and_huge_areas_differ_from_torchvision(xp):
    # one level (lower bound 0, upper inf); one location at (4, 4), size 8
    anchors = np.asarray([[0.0, 0.0, 8.0, 8.0]])
    gts = np.asarray([[0.0, 0.0, 10.0, 10.0],  # area 100
                      [0.0, 0.0, 10.0, 9.6],  # area 96: float32(1e8 - 96) == (1e8 - 100)
                      [-6000.0, -6000.0, 6000.0, 6000.0]])  # area 1.44e8 >= 1e8
    cases = [([True, True, False], 1, 0),  # merged: torchvision takes the larger gt 0
             ([False, False, True], 2, -1)]  # torchvision never matches area >= 1e8
    for valid, ours, theirs in cases:
        real = np.flatnonzero(valid)
        tv = _tv_match(anchors, gts[real], [1])[0]
        assert (real[tv] if tv >= 0 else -1) == theirs
        got = fcos_assign(asarray(xp, anchors, "float32"), asarray(xp, gts, "float32"),
                          gt_valid=asarray(xp, np.asarray(valid)), num_anchors_per_level=[1])
        assert to_numpy(got).tolist() == [ours]


def test_rule_edges_and_ties(xp):
    # two levels: anchors 0, 1 stride 8 (range (0, 64)), anchor 2 stride 16 (range (64, inf))
    anchors = np.asarray([[0., 0., 8., 8.], [8., 8., 16., 16.], [64., 48., 80., 64.]])
    gts = np.asarray([
        [0., 0., 16., 16.],  # centre (8, 8): anchor 0 at Chebyshev 4 < 12
        [0., 0., 16., 16.],  # exact duplicate: never wins (lowest index)
        [-8., -8., 16., 16.],  # centre (4, 4), area 576 > 256
        [4., 4., 20., 20.],  # anchor 0's centre on its side: min distance 0, not > 0
        [0., 0., 140., 112.],  # anchor 2: max distance 72 > 64 on the last level
        [72., 56., 136., 80.],  # anchor 2's centre on the side (72): not inside
    ])
    got = fcos_assign(asarray(xp, anchors, "float32"), asarray(xp, gts, "float32"),
                      num_anchors_per_level=[2, 1])
    assert to_numpy(got).tolist() == [0, 0, 4]
    np.testing.assert_array_equal(to_numpy(got), _tv_match(anchors, gts, [2, 1]))
    # Chebyshev bound is strict: radius 0.5 -> reach 4 == distance 4 for gt 0 at anchor 0
    got = fcos_assign(asarray(xp, anchors, "float32"), asarray(xp, gts[:3], "float32"),
                      num_anchors_per_level=[2, 1], center_sampling_radius=0.5)
    assert to_numpy(got).tolist() == [2, -1, -1]
    assert to_numpy(got).tolist() == _tv_match(anchors, gts[:3], [2, 1], 0.5).tolist()


def test_no_gts_float64_and_unbatched(xp):
    anchors, levels = _fcos_anchors((64, 64))
    empty = fcos_assign(asarray(xp, anchors, "float64"), asarray(xp, np.zeros((3, 0, 4)),
                                                                 "float64"),
                        num_anchors_per_level=levels)
    assert to_numpy(empty).shape == (3, len(anchors)) and np.all(to_numpy(empty) == -1)
    gts = np.asarray([[3.0, 5.0, 40.0, 61.0], [10.0, 10.0, 30.0, 28.0]])
    got64 = fcos_assign(asarray(xp, anchors, "float64"), asarray(xp, gts, "float64"),
                        num_anchors_per_level=levels)
    got32 = fcos_assign(asarray(xp, anchors, "float32"), asarray(xp, gts, "float32"),
                        num_anchors_per_level=levels)
    assert to_numpy(got64).shape == (len(anchors),)
    np.testing.assert_array_equal(to_numpy(got64), to_numpy(got32))
    np.testing.assert_array_equal(to_numpy(got64), _tv_match(anchors, gts, levels))


# --------------------------------------------------------------------------- (c)


def _gather(xp, gts, matched):
    """The matched gt box per anchor (gt 0 for background), ``(B, A, 4)``."""
    lib = library(xp)
    index = xp.maximum(matched, xp.asarray(0, dtype=matched.dtype))
    if lib == "torch":
        import torch

        return torch.gather(gts, 1, index[..., None].expand(-1, -1, 4))
    if lib == "jax":
        return xp.take_along_axis(gts, index[..., None], axis=1)
    rows = [xp.take(gts[b, ...], index[b, ...], axis=0) for b in range(gts.shape[0])]
    return xp.stack(rows)


@COMPILE_WARNINGS
def test_routes_give_the_same_integers(xp):
    """Batched == one call per image on every backend; jax.jit, jax.vmap and
    torch.compile(fullgraph=True) of assignment + centerness equal the eager results."""
    anchors, levels, gts, valid = _problem(seed=7, batch=3, slots=8)
    a, g, v = asarray(xp, anchors, "float32"), asarray(xp, gts, "float32"), asarray(xp, valid)
    batched = to_numpy(fcos_assign(a, g, gt_valid=v, num_anchors_per_level=levels))
    loop = [to_numpy(fcos_assign(a, g[b, ...], gt_valid=v[b, ...],
                                     num_anchors_per_level=levels))
            for b in range(3)]
    np.testing.assert_array_equal(batched, np.stack(loop))
    matched = fcos_assign(a, g, gt_valid=v, num_anchors_per_level=levels)
    ctr = to_numpy(centerness_targets(a, _gather(xp, g, matched), matched=matched))

    def both(g_, v_):
        m = fcos_assign(a, g_, gt_valid=v_, num_anchors_per_level=levels)
        return m, centerness_targets(a, _gather(xp, g_, m), matched=m)

    lib = library(xp)
    routes = []
    if lib == "jax":
        jax = require("jax")
        routes.append(jax.jit(both)(g, v))
        one = jax.vmap(lambda gi, vi: fcos_assign(a, gi, gt_valid=vi,
                                                  num_anchors_per_level=levels))
        routes.append((jax.jit(one)(g, v), None))
    elif lib == "torch":
        torch = require("torch")
        torch._dynamo.reset()
        routes.append(torch.compile(both, fullgraph=True)(g, v))
    for m, c in routes:
        np.testing.assert_array_equal(to_numpy(m), batched)
        if c is not None:  # eager PyTorch's CPU sqrt is off by 1 ulp on ~20% of inputs
            np.testing.assert_allclose(to_numpy(c), ctr, rtol=2.4e-7, atol=0)


def test_checks_skipped_in_a_trace_bad_gts_never_match():
    jax = require("jax")
    import jax.numpy as jnp

    anchors = jnp.asarray([[0., 0., 8., 8.], [8., 8., 16., 16.]], dtype=jnp.float32)
    gts = jnp.asarray([[np.nan, 0., 16., 16.], [0., 0., np.inf, 16.],
                       [5., 5., 1., 1.], [-np.inf, -np.inf, np.inf, np.inf]],
                      dtype=jnp.float32)
    got = jax.jit(lambda a, g: fcos_assign(a, g, num_anchors_per_level=[2]))(anchors, gts)
    assert np.asarray(got).tolist() == [-1, -1]
    bad_anchor = anchors.at[0, 0].set(jnp.nan)
    good = jnp.asarray([[0., 0., 16., 16.]], dtype=jnp.float32)
    got = jax.jit(lambda a, g: fcos_assign(a, g, num_anchors_per_level=[2]))(bad_anchor, good)
    assert np.asarray(got).tolist() == [-1, 0]


# --------------------------------------------------------------------------- (d)


def _centerness64(anchors, boxes):
    a, b = np.asarray(anchors, np.float64), np.asarray(boxes, np.float64)
    cx, cy = (a[..., 0] + a[..., 2]) / 2, (a[..., 1] + a[..., 3]) / 2
    lr = np.stack([cx - b[..., 0], b[..., 2] - cx])
    tb = np.stack([cy - b[..., 1], b[..., 3] - cy])
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.sqrt(lr.min(0) / lr.max(0) * (tb.min(0) / tb.max(0)))
    inside = (lr.min(0) > 0) & (tb.min(0) > 0)
    return np.where(inside, c, 0.0)


def test_centerness_against_float64(xp):
    anchors, levels, gts, valid = _problem(seed=4)
    matched = _tv_batch(anchors, gts, valid, levels, exact_areas=True)
    boxes = np.take_along_axis(gts, np.maximum(matched, 0)[..., None], axis=1)
    boxes = np.where(matched[..., None] >= 0, boxes, 0.0).astype(np.float32)
    got = centerness_targets(asarray(xp, anchors, "float32"), asarray(xp, boxes, "float32"),
                             matched=asarray(xp, matched))
    assert got.dtype == xp.float32
    got = to_numpy(got)
    want = np.where(matched >= 0, _centerness64(anchors, boxes), 0.0)
    fg = matched >= 0
    assert fg.sum() > 100 and np.all((want[fg] > 0) & (want[fg] <= 1))
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=0)
    # torchvision's own float32 formula (box coder ltrb / anchor size) on the foreground
    a32 = anchors.astype(np.float32)[None]
    ctr = (a32[..., :2] + a32[..., 2:]) * np.float32(0.5)
    wh = a32[..., 2:] - a32[..., :2]
    ltrb = np.concatenate([ctr - boxes[..., :2], boxes[..., 2:] - ctr], -1) / \
        np.concatenate([wh, wh], -1)
    lr, tb = ltrb[..., [0, 2]], ltrb[..., [1, 3]]
    with np.errstate(invalid="ignore"):  # 0/0 on the background rows (not compared)
        tv = np.sqrt(lr.min(-1) / lr.max(-1) * (tb.min(-1) / tb.max(-1)))
    np.testing.assert_allclose(got[fg], tv[fg], rtol=2e-6, atol=0)
    # without matched: zero boxes (0/0), centres on or outside a side -> 0, never NaN
    edge = np.asarray([[0., 0., 0., 0.], [4., 0., 9., 9.], [-3., -3., 2., 2.],
                       [0., 0., 8., 8.]], np.float32)
    at_4_4 = np.asarray([[0.0, 0.0, 8.0, 8.0]] * 4)
    c = to_numpy(centerness_targets(asarray(xp, at_4_4, "float64"),
                                    asarray(xp, edge, "float64")))
    assert c.dtype == np.float64
    np.testing.assert_allclose(c, [0.0, 0.0, 0.0, 1.0], rtol=1e-15)


# --------------------------------------------------------------------------- (e)


def test_errors(xp):
    anchors, levels = _fcos_anchors((64, 64))
    a = asarray(xp, anchors, "float32")
    g = asarray(xp, [[[0., 0., 30., 30.], [5., 5., 1., 9.]]], "float32")
    ok = asarray(xp, [[True, False]])
    fcos_assign(a, g, gt_valid=ok, num_anchors_per_level=levels)  # padding is not checked
    bad_levels = [(levels[:-1], ValueError, "sums to"), ([0, len(anchors)], ValueError,
                                                           r"\[0\] must be positive"),
                  ([float(len(anchors))], TypeError, "must be an integer"),
                  (len(anchors), TypeError, "non-empty sequence"),
                  ([], TypeError, "non-empty sequence")]
    for value, kind, text in bad_levels:
        with pytest.raises(kind, match=f"num_anchors_per_level.*{text}|{text}"):
            fcos_assign(a, g, num_anchors_per_level=value)
    for radius in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="center_sampling_radius must be in"):
            fcos_assign(a, g, gt_valid=ok, num_anchors_per_level=levels,
                        center_sampling_radius=radius)
    with pytest.raises(ValueError, match=r"gt_boxes\[0, 1\] = \[5.0, 5.0, 1.0, 9.0\]"):
        fcos_assign(a, g, num_anchors_per_level=levels)
    bad_anchor = np.array(anchors)
    bad_anchor[3, 2] = np.nan
    with pytest.raises(ValueError, match=r"anchors\[3\]"):
        fcos_assign(asarray(xp, bad_anchor, "float32"), g, gt_valid=ok,
                    num_anchors_per_level=levels)
    with pytest.raises(ValueError, match="gt_valid must have shape"):
        fcos_assign(a, g, gt_valid=asarray(xp, [True, False]), num_anchors_per_level=levels)
    with pytest.raises(TypeError, match="gt_valid must be a boolean"):
        fcos_assign(a, g, gt_valid=asarray(xp, [[1, 0]]), num_anchors_per_level=levels)
    with pytest.raises(ValueError, match=r"gt_boxes must have shape \(\.\.\., 4\)"):
        fcos_assign(a, g[..., :3], num_anchors_per_level=levels)
    with pytest.raises(TypeError, match="anchors must have a real floating dtype"):
        fcos_assign(asarray(xp, anchors.astype(np.int32)), g, num_anchors_per_level=levels)
    with pytest.raises(ValueError, match="do not broadcast"):
        fcos_assign(xp.stack([a, a]), xp.concat([g, g, g]), num_anchors_per_level=levels)
    if library(xp) != "numpy":
        with pytest.raises(TypeError, match="different libraries"):
            fcos_assign(anchors.astype(np.float32), g, num_anchors_per_level=levels)
    boxes = xp.zeros_like(a)
    with pytest.raises(TypeError, match="matched must have an integer dtype"):
        centerness_targets(a, boxes, matched=xp.zeros(a.shape[0]))
    with pytest.raises(ValueError, match="matched must have shape"):
        centerness_targets(a, boxes, matched=xp.zeros((1, a.shape[0]), dtype=xp.int32))
    with pytest.raises(ValueError, match="one box per anchor"):
        centerness_targets(a, boxes[:5, ...])
    with pytest.raises(ValueError, match=r"boxes\[2\]"):
        centerness_targets(a, asarray(xp, np.where(np.arange(len(anchors))[:, None] == 2,
                                                   [5., 5., 1., 1.], 0.0), "float32"))
