"""ATSS assignment: integer-for-integer equal to a transcription of mmdetection's ATSSAssigner.

The reference below is mmdetection's ``ATSSAssigner.assign`` (alpha=None, no ignored boxes)
written out in NumPy, one image at a time, in the dtype under test: its ``BboxOverlaps2D``
IoU (union clamped at 1e-6), ``bbox_center_distance``, per-level top-k, ``mean + std``
with the unbiased std, the ``min(l, t, r, b) > 0.01`` centre test and the ``-INF``-filled
``max(dim=1)``. Only the top-k tie order is ours (a stable sort: lowest index first;
``torch.topk`` leaves it unspecified), and the 1-based result is shifted to 0-based.
"""

from __future__ import annotations

import functools
import warnings

import array_api_compat
import numpy as np
import pytest

from focal_array._assign_atss import atss_assign
from focal_array.anchors import anchors_per_level, retinanet_anchors
from focal_array.matcher import BACKGROUND
from tests.helpers import library, require, to_numpy

IMAGE = (256, 320)
RETINA = {}  # RetinaNet's defaults: 9 anchors per location, centred in the cell
ATSS = {"sizes": (64, 128, 256, 512, 1024), "scales": (1.0,), "aspect_ratios": (1.0,),
        "offset": 0.0}  # mmdetection's ATSS config: one square anchor of 8 strides, offset 0
GRID_OPTIONS = ("strides", "sizes", "scales", "aspect_ratios")


def _levels(options):
    grids = anchors_per_level(IMAGE, **{k: v for k, v in options.items() if k in GRID_OPTIONS})
    return [g.num_anchors for g in grids]


# --------------------------------------------------------------------------- reference


def _mmdet_atss(priors, gt, num_level_priors, topk):
    """mmdetection's ATSSAssigner.assign for one image, NumPy, in ``priors.dtype``."""
    f = priors.dtype.type
    inf = 100000000
    num_gt, num_priors = gt.shape[0], priors.shape[0]
    if num_gt == 0 or num_priors == 0:
        return np.full(num_priors, -1)
    # BboxOverlaps2D (mmdet.structures.bbox.bbox_overlaps, mode="iou", eps=1e-6)
    area1 = (priors[:, 2] - priors[:, 0]) * (priors[:, 3] - priors[:, 1])
    area2 = (gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1])
    lt = np.maximum(priors[:, None, :2], gt[None, :, :2])
    rb = np.minimum(priors[:, None, 2:], gt[None, :, 2:])
    wh = np.maximum(rb - lt, f(0))
    overlap = wh[..., 0] * wh[..., 1]
    union = np.maximum(area1[:, None] + area2[None, :] - overlap, f(1e-6))
    overlaps = overlap / union
    # bbox_center_distance
    gt_points = np.stack([(gt[:, 0] + gt[:, 2]) / f(2.0), (gt[:, 1] + gt[:, 3]) / f(2.0)], 1)
    priors_cx = (priors[:, 0] + priors[:, 2]) / f(2.0)
    priors_cy = (priors[:, 1] + priors[:, 3]) / f(2.0)
    priors_points = np.stack([priors_cx, priors_cy], 1)
    distances = np.sqrt(((priors_points[:, None, :] - gt_points[None, :, :]) ** 2).sum(-1))
    candidate_idxs, start_idx = [], 0
    for priors_per_level in num_level_priors:
        end_idx = start_idx + priors_per_level
        selectable_k = min(topk, priors_per_level)
        order = np.argsort(distances[start_idx:end_idx], axis=0, kind="stable")
        candidate_idxs.append(order[:selectable_k] + start_idx)
        start_idx = end_idx
    candidate_idxs = np.concatenate(candidate_idxs, axis=0)
    candidate_overlaps = overlaps[candidate_idxs, np.arange(num_gt)]
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # torch.std of 1 value: NaN
        thr = candidate_overlaps.mean(0) + candidate_overlaps.std(0, ddof=1)
    is_pos = candidate_overlaps >= thr[None, :]
    cx, cy = priors_cx[candidate_idxs], priors_cy[candidate_idxs]
    ltrb = np.stack([cx - gt[:, 0], cy - gt[:, 1], gt[:, 2] - cx, gt[:, 3] - cy], axis=1)
    is_pos = is_pos & (ltrb.min(axis=1) > f(0.01))
    flat = (candidate_idxs + np.arange(num_gt) * num_priors).reshape(-1)
    overlaps_inf = np.full(num_gt * num_priors, -inf, dtype=priors.dtype)
    index = flat[is_pos.reshape(-1)]
    overlaps_inf[index] = overlaps.T.reshape(-1)[index]
    overlaps_inf = overlaps_inf.reshape(num_gt, -1).T
    max_overlaps, argmax = overlaps_inf.max(axis=1), overlaps_inf.argmax(axis=1)
    return np.where(max_overlaps != -inf, argmax, -1)  # 0-based; -1 background


def _reference(anchors, gts, valid, levels, topk):
    out = []
    for b in range(gts.shape[0]):
        keep = np.flatnonzero(valid[b])
        got = _mmdet_atss(anchors, gts[b][keep], levels, topk)
        out.append(np.where(got >= 0, keep[np.maximum(got, 0)] if keep.size else 0, -1))
    return np.stack(out)


# --------------------------------------------------------------------------- data


def _batch(seed, dtype, n_images=4, n_gt=12):
    """Padded COCO-like gts: 2-decimal floats, tiny to larger than the image, duplicates,
    NaN padding and an empty image (the last)."""
    rng = np.random.default_rng(seed)
    h, w = IMAGE
    gts = np.full((n_images, n_gt, 4), np.nan)
    valid = np.zeros((n_images, n_gt), dtype=bool)
    for b in range(n_images - 1):
        n = int(rng.integers(1, n_gt + 1))
        side = np.exp(rng.uniform(np.log(1.0), np.log(600.0), size=(n, 2)))
        centre = rng.uniform(0, 1, size=(n, 2)) * (w, h)
        boxes = np.concatenate([centre - side / 2, centre + side / 2], axis=1)
        boxes = np.round(np.clip(boxes, 0, [w, h, w, h]), 2)
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 0.5)  # at least half a px
        if n >= 3:
            boxes[n - 1] = boxes[0]  # a duplicate
        slots = rng.permutation(n_gt)[:n]  # padding interleaved with real gts
        gts[b, slots], valid[b, slots] = boxes, True
    return gts.astype(dtype), valid


def _case(options, dtype, seed):
    anchors = retinanet_anchors(IMAGE, **options, dtype=np.float64).astype(dtype)
    gts, valid = _batch(seed, dtype)
    return anchors, gts, valid, _levels(options)


def _on(xp, *arrays):
    return [xp.asarray(np.ascontiguousarray(a)) for a in arrays]


# --------------------------------------------------------------------------- tests


# each pairing compiles anew on JAX (~3 s): both configs, both dtypes, two runs
@pytest.mark.parametrize("config,dtype", [("atss", "float64"), ("retina", "float32")])
def test_matches_mmdetection(xp, config, dtype):
    options = ATSS if config == "atss" else RETINA
    anchors, gts, valid, levels = _case(options, dtype, seed=7 + (config == "atss"))
    want = _reference(anchors, gts, valid, levels, 9)
    got = atss_assign(*_on(xp, anchors, gts), num_anchors_per_level=levels,
                      gt_valid=_on(xp, valid)[0])
    assert library(array_api_compat.array_namespace(got)) == library(xp)
    index_dtype = xp.__array_namespace_info__().default_dtypes()["indexing"]
    assert got.dtype == index_dtype and tuple(got.shape) == want.shape
    np.testing.assert_array_equal(to_numpy(got), want)
    assert (want >= 0).sum() > 20 and (want[-1] == BACKGROUND).all()  # a meaningful case


def test_single_candidate_and_no_gts(xp):
    # (a level with fewer anchors than topk contributes all: ATSS's P7 above has 6 < 9)
    # one candidate in all: torch.std of one value is NaN, nothing is positive
    one = np.asarray([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    box = np.asarray([[[0.0, 0.0, 10.0, 10.0]]])
    got = atss_assign(*_on(xp, one, box), num_anchors_per_level=[2], topk=1)
    want = _reference(one, box, np.ones((1, 1), bool), [2], 1)
    assert to_numpy(got).tolist() == [[-1, -1]] == want.tolist()
    three = np.asarray([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 5.0], [0.0, 0.0, 5.0, 5.0]])
    got = atss_assign(*_on(xp, three, box), num_anchors_per_level=[3], topk=3)
    assert to_numpy(got).tolist() == [[0, -1, -1]]  # IoUs 1, 1/2, 1/4: threshold 0.965
    # zero gts, shared anchors broadcast over a batch
    empty = np.zeros((3, 0, 4))
    got = atss_assign(*_on(xp, one, empty), num_anchors_per_level=[1, 1])
    assert tuple(got.shape) == (3, 2) and (to_numpy(got) == BACKGROUND).all()


def test_highest_iou_wins_and_ties_go_to_the_lowest_gt(xp):
    anchors = np.asarray([[0.0, 0.0, 10.0, 10.0], [10.0, 0.0, 20.0, 10.0],
                          [0.0, 10.0, 10.0, 20.0], [30.0, 30.0, 40.0, 40.0]])
    gts = np.asarray([[[0.0, 0.0, 11.0, 11.0], [0.0, 0.0, 12.0, 12.0], [0.0, 0.0, 11.0, 11.0]]])
    got = atss_assign(*_on(xp, anchors, gts), num_anchors_per_level=[4], topk=3)
    want = _reference(anchors, gts, np.ones((1, 3), bool), [4], 3)
    assert to_numpy(got).tolist() == want.tolist() == [[0, -1, -1, -1]]


def _routes_case():
    anchors, gts, valid, levels = _case(ATSS, "float32", seed=11)
    return anchors, gts, valid, levels, _reference(anchors, gts, valid, levels, 9)


def test_jax_jit_and_vmap():
    jax = require("jax")
    jnp = jax.numpy
    anchors, gts, valid, levels, want = _routes_case()
    a, g, v = jnp.asarray(anchors), jnp.asarray(gts), jnp.asarray(valid)
    f = functools.partial(atss_assign, num_anchors_per_level=levels)
    jitted = jax.jit(f)
    np.testing.assert_array_equal(np.asarray(jitted(a, g, gt_valid=v)), want)
    vmapped = jax.vmap(lambda gi, vi: f(a, gi, gt_valid=vi))(g, v)
    np.testing.assert_array_equal(np.asarray(vmapped), want)
    # in a trace a non-finite real gt counts as padding
    bad = g.at[0, int(np.flatnonzero(valid[0])[0])].set(jnp.nan)
    one = valid.copy()
    one[0, np.flatnonzero(valid[0])[0]] = False
    np.testing.assert_array_equal(np.asarray(jitted(a, bad, gt_valid=v)),
                                  _reference(anchors, gts, one, levels, 9))


def test_torch_compile_fullgraph():
    torch = require("torch")
    anchors, gts, valid, levels, want = _routes_case()
    f = torch.compile(functools.partial(atss_assign, num_anchors_per_level=levels),
                      fullgraph=True, dynamic=False)
    got = f(torch.as_tensor(anchors), torch.as_tensor(gts), gt_valid=torch.as_tensor(valid))
    np.testing.assert_array_equal(got.numpy(), want)


def test_errors(xp):
    anchors, box = _on(xp, np.asarray([[0.0, 0.0, 10.0, 10.0]] * 3),
                       np.asarray([[[0.0, 0.0, 5.0, 5.0]]]))
    for topk in (0, -1):
        with pytest.raises(ValueError, match="topk"):
            atss_assign(anchors, box, num_anchors_per_level=[3], topk=topk)
    for topk in (True, 2.5, None):
        with pytest.raises(TypeError, match="topk"):
            atss_assign(anchors, box, num_anchors_per_level=[3], topk=topk)
    with pytest.raises(ValueError, match="sums to 2, but anchors has 3"):
        atss_assign(anchors, box, num_anchors_per_level=[1, 1])
    with pytest.raises(ValueError, match=r"num_anchors_per_level\[1\]"):
        atss_assign(anchors, box, num_anchors_per_level=[4, -1])
    for levels in (3, "3", []):
        with pytest.raises(TypeError, match="num_anchors_per_level"):
            atss_assign(anchors, box, num_anchors_per_level=levels)
    with pytest.raises(ValueError, match="gt_valid"):
        atss_assign(anchors, box, num_anchors_per_level=[3], gt_valid=xp.asarray([True, False]))
    with pytest.raises(TypeError, match="gt_valid"):
        atss_assign(anchors, box, num_anchors_per_level=[3], gt_valid=xp.asarray([[1]]))
    with pytest.raises(TypeError, match="real floating"):
        atss_assign(xp.asarray([[0, 0, 1, 1]]), box, num_anchors_per_level=[1])
    with pytest.raises(ValueError, match="4 coordinates"):
        atss_assign(anchors[:, :3], box, num_anchors_per_level=[3])
    for bad in ([[[0.0, 0.0, np.nan, 5.0]]], [[[6.0, 0.0, 5.0, 5.0]]]):
        with pytest.raises(ValueError, match="gt_boxes"):
            atss_assign(anchors, xp.asarray(np.asarray(bad)), num_anchors_per_level=[3])
    # padding is never checked
    pad = xp.asarray(np.asarray([[[np.nan, 0.0, 5.0, 5.0]]]))
    got = atss_assign(anchors, pad, num_anchors_per_level=[3], gt_valid=xp.asarray([[False]]))
    assert (to_numpy(got) == BACKGROUND).all()
    if library(xp) != "numpy":
        with pytest.raises(TypeError, match="different libraries"):
            atss_assign(anchors, np.asarray([[[0.0, 0.0, 5.0, 5.0]]]),
                        num_anchors_per_level=[3])
