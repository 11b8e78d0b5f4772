"""task_aligned_assign against a float64 NumPy transcription of ultralytics'
TaskAlignedAssigner (ultralytics/utils/tal.py), CIoU against a scalar reference, jit,
vmap, torch.compile, no gradient, and the errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import asarray, library, require, to_numpy

from focal_array._assign_tal import _ciou, task_aligned_assign

BACKGROUND = -1
NUM_CLASSES = 10


# --------------------------------------------------------------------------- reference


def _ref_iou(b1, b2, ciou, eps=1e-7):
    """ultralytics' bbox_iou(b1, b2, xywh=False, CIoU=True) elementwise; with ciou=False
    the exact IoU (0 for an empty union), the library's plain IoU."""
    b1_x1, b1_y1, b1_x2, b1_y2 = np.moveaxis(b1, -1, 0)
    b2_x1, b2_y1, b2_x2, b2_y2 = np.moveaxis(b2, -1, 0)
    inter = (np.minimum(b1_x2, b2_x2) - np.maximum(b1_x1, b2_x1)).clip(0) * (
        np.minimum(b1_y2, b2_y2) - np.maximum(b1_y1, b2_y1)).clip(0)
    if not ciou:
        union = ((b1_x2 - b1_x1).clip(0) * (b1_y2 - b1_y1).clip(0)
                 + (b2_x2 - b2_x1).clip(0) * (b2_y2 - b2_y1).clip(0) - inter)
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    w1, h1 = b1_x2 - b1_x1, b1_y2 - b1_y1 + eps
    w2, h2 = b2_x2 - b2_x1, b2_y2 - b2_y1 + eps
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    cw = np.maximum(b1_x2, b2_x2) - np.minimum(b1_x1, b2_x1)
    ch = np.maximum(b1_y2, b2_y2) - np.minimum(b1_y1, b2_y1)
    c2 = cw**2 + ch**2 + eps
    rho2 = ((b2_x1 + b2_x2 - b1_x1 - b1_x2) ** 2 + (b2_y1 + b2_y2 - b1_y1 - b1_y2) ** 2) / 4
    v = (4 / math.pi**2) * (np.arctan(w2 / h2) - np.arctan(w1 / h1)) ** 2
    alpha = v / (v - iou + (1 + eps))
    return (iou - (rho2 / c2 + v * alpha)).clip(0)  # iou_calculation's clamp_(0)


def ultralytics_tal(pd_scores, pd_bboxes, anc_points, gt_labels, gt_bboxes, mask_gt, *,
                    topk=13, alpha=1.0, beta=6.0, eps=1e-9, ciou=True, contested="all",
                    topk_from="anchors", positive_only=False):
    """TaskAlignedAssigner.forward line by line (padding gts are zeros, as ultralytics
    pads). The one liberty: torch.topk's tie order is unspecified, here ties go to the
    lowest anchor index (stable sort). The keyword knobs off their defaults swap in the
    one line each of the library's alternatives."""
    bs, na, nc = pd_scores.shape
    n_max = gt_bboxes.shape[1]
    mask_gt = mask_gt[:, :, None].astype(bool)
    # select_candidates_in_gts
    lt, rb = gt_bboxes[:, :, None, :2], gt_bboxes[:, :, None, 2:]
    deltas = np.concatenate((anc_points[None, None] - lt, rb - anc_points[None, None]), -1)
    mask_in_gts = deltas.min(-1) > 1e-9
    # get_box_metrics
    mask = mask_in_gts & mask_gt
    bbox_scores = np.zeros((bs, n_max, na))
    bbox_scores[mask] = pd_scores[np.arange(bs)[:, None], :, gt_labels][mask]
    overlaps = np.zeros((bs, n_max, na))
    pd = np.broadcast_to(pd_bboxes[:, None], (bs, n_max, na, 4))[mask]
    gt = np.broadcast_to(gt_bboxes[:, :, None], (bs, n_max, na, 4))[mask]
    overlaps[mask] = _ref_iou(gt, pd, ciou)
    align_metric = bbox_scores**alpha * overlaps**beta
    # select_topk_candidates (topk_mask = mask_gt)
    key = align_metric if topk_from == "anchors" else np.where(mask, align_metric, -1.0)
    topk_idxs = np.argsort(-key, axis=-1, kind="stable")[..., : min(topk, na)]
    topk_idxs = np.where(mask_gt, topk_idxs, 0)
    count = (topk_idxs[..., :, None] == np.arange(na)).sum(-2)
    count[count > 1] = 0
    mask_pos = count * mask_in_gts * mask_gt
    if positive_only:  # mmdetection's is_pos = candidate_metrics > 0
        mask_pos = mask_pos * (align_metric > 0)
    # select_highest_overlaps
    fg_mask = mask_pos.sum(-2)
    if fg_mask.max() > 1:
        mask_multi_gts = np.broadcast_to(fg_mask[:, None] > 1, mask_pos.shape)
        q = overlaps if contested == "all" else np.where(mask_pos > 0, overlaps, -1.0)
        max_overlaps_idx = q.argmax(1)
        is_max = (np.arange(n_max)[None, :, None] == max_overlaps_idx[:, None]).astype(float)
        mask_pos = np.where(mask_multi_gts, is_max, mask_pos)
        fg_mask = mask_pos.sum(-2)
    target_gt_idx = mask_pos.argmax(-2)
    # get_targets
    target_labels = gt_labels[np.arange(bs)[:, None], target_gt_idx]
    target_bboxes = gt_bboxes[np.arange(bs)[:, None], target_gt_idx]
    target_scores = np.eye(nc)[target_labels] * (fg_mask[..., None] > 0)
    # normalize
    align_metric = align_metric * mask_pos
    pos_align_metrics = align_metric.max(-1, keepdims=True)
    pos_overlaps = (overlaps * mask_pos).max(-1, keepdims=True)
    norm = (align_metric * pos_overlaps / (pos_align_metrics + eps)).max(-2)[..., None]
    return target_labels, target_bboxes, target_scores * norm, fg_mask > 0, target_gt_idx


# --------------------------------------------------------------------------- data


def _anchor_points(size=320, strides=(8, 16, 32)):
    pts = []
    for s in strides:
        n = size // s
        ys, xs = np.meshgrid(np.arange(n) + 0.5, np.arange(n) + 0.5, indexing="ij")
        pts.append(np.stack([xs, ys], -1).reshape(-1, 2) * s)
    strides_per = np.concatenate([np.full((size // s) ** 2, s) for s in strides])
    return np.concatenate(pts), strides_per.astype(float)


def _batch(seed=0):
    """3 images of 320x320 (2,100 points, 10 classes, up to 8 gts): image 0 with 8 gts,
    nested and overlapping (contested anchors), a tiny gt containing no point; image 1
    with 3 gts and padding; image 2 empty. Predictions near each point."""
    rng = np.random.default_rng(seed)
    points, stride = _anchor_points()
    a = len(points)
    gts = np.zeros((3, 8, 4))
    gts[0] = [[20, 30, 200, 220], [60, 70, 180, 200], [50, 40, 150, 190], [210, 10, 310, 90],
              [220, 20, 300, 140], [101, 101, 103, 103], [5, 250, 120, 315],
              [140, 150, 300, 300]]
    # image 1, gts 3-5: tiny A and B (< k candidates each) both take the point (260, 60),
    # whose prediction fits C best, but C's score there is too low for C's top-k: the
    # contest rule decides. gt 6 has 5 candidates, 2 of them with zero alignment.
    gts[1, :7] = [[30, 30, 90, 110], [100, 120, 260, 300], [150, 20, 190, 60],
                  [256, 56, 272, 72], [254, 54, 270, 70], [240, 40, 300, 100],
                  [100, 20, 120, 40]]
    valid = np.zeros((3, 8), bool)
    valid[0], valid[1, :7] = True, True
    labels = rng.integers(0, NUM_CLASSES, (3, 8))
    labels[1, 3:7] = [1, 2, 3, 4]
    ltrb = stride[None, :, None] * rng.uniform(0.5, 5.0, (3, a, 4))
    pred = np.concatenate([points - ltrb[..., :2], points + ltrb[..., 2:]], -1)
    scores = rng.uniform(0.02, 0.98, (3, a, NUM_CLASSES))
    x = np.flatnonzero((points == [260, 60]).all(-1))[0]
    pred[1, x], scores[1, x, 3] = [250, 50, 290, 90], 0.001
    for p in ([108, 28], [116, 36]):  # CIoU < 0 with gt 6: alignment 0
        pred[1, np.flatnonzero((points == p).all(-1))[0]] = [0, 0, 320, 320]
    return scores, pred, points, labels, gts, valid


def _garbage_padding(labels, gts, valid):
    """The library's padding may hold anything: labels -7, boxes NaN."""
    return (np.where(valid, labels, -7), np.where(valid[..., None], gts, np.nan))


def _call(xp, data, dtype="float64", **kw):
    scores, pred, points, labels, gts, valid = data
    labels, gts = _garbage_padding(labels, gts, valid)
    return task_aligned_assign(asarray(xp, scores, dtype), asarray(xp, pred, dtype),
                               asarray(xp, points, dtype), asarray(xp, labels),
                               asarray(xp, gts, dtype), gt_valid=asarray(xp, valid), **kw)


def _check_against(out, ref, *, atol=1e-5):
    labels, boxes, scores, fg, gt_idx = ref
    matched = to_numpy(out["matched"])
    np.testing.assert_array_equal(matched, np.where(fg, gt_idx, BACKGROUND))
    np.testing.assert_array_equal(to_numpy(out["labels"]), np.where(fg, labels, BACKGROUND))
    np.testing.assert_allclose(to_numpy(out["target_scores"]), scores, rtol=0, atol=atol)
    np.testing.assert_allclose(to_numpy(out["target_boxes"]), boxes * fg[..., None], atol=0)


MODES = {
    # ultralytics' v8DetectionLoss: TaskAlignedAssigner(topk=10, alpha=0.5, beta=6.0)
    "yolov8": {"iou": "ciou", "contested": "all", "topk_from": "anchors", "topk": 10,
               "alpha": 0.5},
    "default": {},
    "mmdet-like": {"iou": "ciou", "positive_only": True},
}
_REF_KEYS = {"iou": "ciou", "contested": "contested", "topk_from": "topk_from",
             "positive_only": "positive_only", "topk": "topk", "alpha": "alpha"}


def _reference(data, mode):
    kw = {"ciou": False, "contested": "selecting", "topk_from": "candidates"}
    for key, value in MODES[mode].items():
        kw[_REF_KEYS[key]] = (value == "ciou") if key == "iou" else value
    return ultralytics_tal(*data[:4], data[4], data[5], **kw)


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("mode", list(MODES))
def test_matches_ultralytics_transcription(xp, mode):
    data = _batch()
    ref = _reference(data, mode)
    out = _call(xp, data, **MODES[mode])
    assert out["matched"].shape == (3, 2100) and out["target_scores"].shape == (3, 2100, 10)
    assert out["target_scores"].dtype == xp.float64
    _check_against(out, ref, atol=1e-12)
    fg = ref[3]
    assert fg[0].sum() > 30 and fg[1].sum() > 10 and not fg[2].any()
    # the tiny gt (index 5 of image 0) contains no point: it gets nothing
    assert not (to_numpy(out["matched"])[0] == 5).any()
    # positives' scores peak at their gt's best overlap
    best = to_numpy(out["target_scores"]).max(-1)
    overlaps = to_numpy(out["overlaps"])
    for g in range(8):
        own = to_numpy(out["matched"])[0] == g
        if own.any():
            np.testing.assert_allclose(best[0][own].max(), overlaps[0][own].max(), rtol=1e-6)


def test_modes_differ_on_this_data():
    """The data exercises each option: contested anchors resolved differently, gts with
    fewer than k positive-alignment candidates, zero-alignment positives."""
    data = _batch()
    cand = {"topk_from": "candidates"}
    for base, kw in (({}, {"contested": "selecting"}), ({}, cand),
                     (cand, {**cand, "positive_only": True})):
        one, other = ultralytics_tal(*data, **base), ultralytics_tal(*data, **kw)
        assert (np.where(other[3], other[4], -1) != np.where(one[3], one[4], -1)).any(), kw


def test_float32_within_1e5(xp):
    data = _batch(seed=1)
    ref = _reference(data, "yolov8")
    out = _call(xp, data, "float32", **MODES["yolov8"])
    assert out["target_scores"].dtype == xp.float32
    _check_against(out, ref, atol=1e-5)


def test_ciou_against_scalar_reference(xp):
    gts = np.asarray([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 25.0, 15.0]])
    pred = np.asarray([[0.0, 0.0, 10.0, 10.0], [2.0, 3.0, 12.0, 9.0], [30.0, 30.0, 40.0, 50.0],
                       [4.0, 6.0, 24.0, 16.0], [-3.0, 1.0, 6.0, 30.0]])

    def scalar(g, p, eps=1e-7):
        w1, h1, w2, h2 = g[2] - g[0], g[3] - g[1] + eps, p[2] - p[0], p[3] - p[1] + eps
        inter = (max(min(g[2], p[2]) - max(g[0], p[0]), 0.0)
                 * max(min(g[3], p[3]) - max(g[1], p[1]), 0.0))
        iou = inter / (w1 * h1 + w2 * h2 - inter + eps)
        c2 = (max(g[2], p[2]) - min(g[0], p[0])) ** 2 + (max(g[3], p[3]) - min(g[1], p[1])) ** 2
        rho2 = ((p[0] + p[2] - g[0] - g[2]) ** 2 + (p[1] + p[3] - g[1] - g[3]) ** 2) / 4
        v = 4 / math.pi**2 * (math.atan(w2 / h2) - math.atan(w1 / h1)) ** 2
        a = v / (v - iou + (1 + eps))
        return max(iou - (rho2 / (c2 + eps) + v * a), 0.0)

    want = np.asarray([[scalar(g, p) for p in pred] for g in gts])
    assert want[0, 0] > 0.999999 and want[0, 2] == 0.0  # identical boxes; clamped negative
    ciou = _ciou
    if library(xp) == "jax":  # one compilation instead of ~40 eager dispatches
        import jax

        ciou = jax.jit(_ciou, static_argnums=2)
    got = ciou(asarray(xp, gts), asarray(xp, pred), xp)
    np.testing.assert_allclose(to_numpy(got), want, rtol=1e-12, atol=1e-15)


def test_ties_go_to_the_lowest_anchor_index(xp):
    points = np.asarray([[1.0, 1.0], [3.0, 1.0], [5.0, 1.0], [7.0, 1.0], [9.0, 1.0]])
    pred = np.tile([[0.0, 0.0, 8.0, 2.0]], (1, 5, 1))  # every prediction the same
    scores = np.full((1, 5, 2), 0.5)
    out = task_aligned_assign(asarray(xp, scores), asarray(xp, pred), asarray(xp, points),
                              asarray(xp, [[1]]), asarray(xp, [[[2.0, 0.0, 8.0, 2.0]]]),
                              topk=2)
    assert to_numpy(out["matched"]).tolist() == [[-1, 0, 0, -1, -1]]
    assert to_numpy(out["labels"]).tolist() == [[-1, 1, 1, -1, -1]]


def test_no_gts_and_empty_batch(xp):
    scores, pred, points, *_ = _batch()
    for g in (0, 8):  # no gts at all; 8 padding gts in every image
        out = task_aligned_assign(asarray(xp, scores), asarray(xp, pred), asarray(xp, points),
                                  asarray(xp, np.zeros((3, g), int)),
                                  asarray(xp, np.full((3, g, 4), np.nan)),
                                  gt_valid=asarray(xp, np.zeros((3, g), bool)))
        assert (to_numpy(out["matched"]) == BACKGROUND).all()
        assert out["target_boxes"].shape == (3, 2100, 4)
        assert not to_numpy(out["target_scores"]).any()


def test_jax_jit_and_vmap():
    jax = require("jax")
    import jax.numpy as jnp

    data = _batch()
    scores, pred, points, labels, gts, valid = (jnp.asarray(a) for a in data)
    want = _call(jnp, data, **MODES["yolov8"])

    def one(s, p, lab, g, v):
        return task_aligned_assign(s, p, points, lab, g, gt_valid=v, **MODES["yolov8"])

    # per-image calls (no batch axis) under vmap, inside an outer jit (traced inputs)
    out = jax.jit(jax.vmap(one))(scores, pred, labels, gts, valid)
    for key in want:
        np.testing.assert_allclose(np.asarray(out[key]), np.asarray(want[key]),
                                   rtol=0, atol=1e-12)


def test_torch_compile_fullgraph():
    torch = require("torch")
    data = _batch()
    scores, pred, points, labels, gts, valid = (torch.as_tensor(a) for a in data)
    kw = {"iou": "ciou", "contested": "all"}
    # one whole graph (fullgraph: no break, no data-dependent shape, functional); the
    # aot_eager backend keeps it to seconds (inductor's code generation for this graph
    # takes 10-25 s on a CI core and checks torch, not this library)
    compiled = torch.compile(
        lambda s, p, pt, lab, g, v: task_aligned_assign(s, p, pt, lab, g, gt_valid=v, **kw),
        fullgraph=True, backend="aot_eager")
    got = compiled(scores, pred, points, labels, gts, valid)
    want = task_aligned_assign(scores, pred, points, labels, gts, gt_valid=valid, **kw)
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=0, atol=1e-12)


def test_no_gradient_flows(xp):
    if library(xp) not in ("jax", "torch"):
        pytest.skip("no autodiff")
    data = _batch()
    if library(xp) == "jax":
        import jax

        def total(s, p):
            out = task_aligned_assign(s, p, *(xp.asarray(a) for a in data[2:5]),
                                      gt_valid=xp.asarray(data[5]))
            return xp.sum(out["target_scores"]) + xp.sum(out["target_boxes"])

        gs, gp = jax.grad(total, argnums=(0, 1))(xp.asarray(data[0]), xp.asarray(data[1]))
        assert not np.asarray(gs).any() and not np.asarray(gp).any()
        assert float(total(xp.asarray(data[0]), xp.asarray(data[1]))) > 0
    else:
        import torch

        s = torch.as_tensor(data[0]).requires_grad_(True)
        p = torch.as_tensor(data[1]).requires_grad_(True)
        g = torch.as_tensor(data[4]).requires_grad_(True)
        out = task_aligned_assign(s, p, *(torch.as_tensor(a) for a in data[2:4]), g,
                                  gt_valid=torch.as_tensor(data[5]))
        assert all(not v.requires_grad for v in out.values())


def test_errors(xp):
    scores, pred, points, labels, gts, valid = _batch()
    args = [asarray(xp, a) for a in (scores, pred, points, labels, gts)]
    ok = {"gt_valid": asarray(xp, valid)}

    def call(*a, **kw):
        return task_aligned_assign(*a, **{**ok, **kw})

    with pytest.raises(ValueError, match="probability in \\[0, 1\\]"):
        call(asarray(xp, scores * 3 - 1), *args[1:])
    bad_labels = labels.copy()
    bad_labels[1, 2] = NUM_CLASSES
    with pytest.raises(ValueError, match="not below num_classes"):
        call(*args[:3], asarray(xp, bad_labels), args[4])
    bad_gts = gts.copy()
    bad_gts[0, 1, 2] = 0.0
    with pytest.raises(ValueError, match="x2 < x1"):
        call(*args[:4], asarray(xp, bad_gts))
    with pytest.raises(ValueError, match="anchor_points"):
        call(*args[:2], asarray(xp, points[:-1]), *args[3:])
    with pytest.raises(ValueError, match="gt_labels"):
        call(*args[:3], asarray(xp, labels[:, :5]), args[4], gt_valid=None)
    with pytest.raises(ValueError, match="gt_valid"):
        call(*args, gt_valid=asarray(xp, valid[:, :5]))
    with pytest.raises(TypeError, match="gt_labels must have an integer dtype"):
        call(*args[:3], asarray(xp, labels.astype(float)), args[4])
    with pytest.raises(TypeError, match="gt_valid must be a boolean"):
        call(*args, gt_valid=asarray(xp, valid.astype(int)))
    for kw, pattern in (({"topk": 0}, "topk"), ({"alpha": -1.0}, "alpha"),
                        ({"iou": "giou"}, "iou"), ({"contested": "any"}, "contested"),
                        ({"topk_from": "all"}, "topk_from"), ({"eps": 0.0}, "eps")):
        with pytest.raises(ValueError, match=pattern):
            call(*args, **kw)
    if library(xp) != "numpy":
        with pytest.raises(TypeError, match="different libraries"):
            call(scores, *args[1:])
