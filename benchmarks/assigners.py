"""Target assigners: focal_array's batched, jitted FCOS / ATSS / task-aligned assignment
against the reference implementations detectors train with.

Timed per call on a padded batch of images (default 8 × 800 × 1333) with COCO-like gts
(``max_gts // 2 .. max_gts`` real per image, up to 50; log-normal sizes, 2-decimal
coordinates, padding rows of zeros marked by ``gt_valid``):

* **FCOS** — torchvision's FCOS locations (``AnchorGenerator(((8,), …, (128,)), ((1.0,),)
  * 5)`` on the image padded to a multiple of 32, one anchor per location; torchvision's
  own generator when importable, else ``retinanet_anchors(..., sizes=strides, scales=(1,),
  aspect_ratios=(1,), offset=0.0)``: the same grid except that torchvision's generator
  steps by ``image // grid`` — 61 px in y on P6 and 114 on P7 at 800 px — and the labels
  say which); 22,400 locations at 800 × 1333 (padded to 800 × 1344). ``fa_jax``:
  :func:`focal_array.assigners.fcos_assign` under ``jax.jit`` on the padded batch;
  ``fa_torch``: the same function, PyTorch eager; ``ref``: torchvision's matching loop of
  ``FCOS.compute_loss`` (``torchvision/models/detection/fcos.py``), copied line for line
  below and run per image in torch on the real gts (torchvision has no public function
  for it; where torchvision is importable the script checks that its source still holds
  those lines and says so in the label).
* **ATSS** — RetinaNet's anchors (:func:`focal_array.anchors.retinanet_anchors`, 9 per
  location, 200,700 at 800 × 1333), ``topk=9``. ``ref``: mmdetection's
  ``ATSSAssigner.assign`` (``mmdet/models/task_modules/assigners/atss_assigner.py``, with
  its ``BboxOverlaps2D``) transcribed in torch, one image at a time.
* **Task-aligned** — YOLOv8's anchor points (``make_anchors``: strides 8/16/32, cell
  centres) at the batch's image size, 80 classes, random post-sigmoid scores and predicted
  boxes around each point. focal_array is called with the options that reproduce YOLOv8's
  assigner (``topk=10, alpha=0.5, beta=6, iou="ciou", contested="all",
  topk_from="anchors"``). ``ref``: ultralytics' ``TaskAlignedAssigner``
  (``ultralytics/utils/tal.py`` with ``bbox_iou(CIoU=True)`` of ``utils/metrics.py``)
  transcribed in torch, batched as ultralytics runs it.

Rounds are interleaved (:func:`benchmarks.timing.time_group`): round r runs every
implementation once, ratios are per round (``fa / ref``, < 1 faster). Each row also says
how far the result agrees with the reference (share of anchors with the same gt index).
Memory: XLA's compiled memory analysis of the jitted call (``temp_size_in_bytes``, the
peak extra memory besides inputs and outputs; outputs listed apart) against one
``(B, A, G)`` float32 matrix.

Usage::

    python -m benchmarks.assigners [--quick] [--rounds N] [--threads N] [--json OUT.json]
                                   [--only fcos,atss,tal]

``--quick``: 2 images of 160 × 256, 8 gts, 10 classes (a smoke run, seconds).
``--threads 1`` runs PyTorch and XLA single-threaded (see ``benchmarks/rcnn_head.py``).
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import math
import os
import statistics
import sys
from typing import Any

import numpy as np

from benchmarks.timing import time_group
from benchmarks.workloads import Case, import_or_reason, missing

#: (images, image (h, w), gts per image at most, classes)
FULL = (8, (800, 1333), 50, 80)
QUICK = (2, (160, 256), 8, 10)
FCOS_STRIDES = (8, 16, 32, 64, 128)
TAL_STRIDES = (8, 16, 32)
#: YOLOv8's assigner: v8DetectionLoss builds TaskAlignedAssigner(topk=10, alpha=0.5, beta=6)
TAL = {"topk": 10, "alpha": 0.5, "beta": 6.0}
WORKLOADS = ("fcos", "atss", "tal")


# --------------------------------------------------------------------------- inputs


def make_gts(batch: int, image: tuple[int, int], max_gts: int, classes: int, seed: int = 0
             ) -> dict[str, np.ndarray]:
    """COCO-like padded gts: sqrt(area) log-normal (median ≈ 42 px at 640 px, scaled to the
    image), aspect log-normal (σ 0.6), inside the image, 2 decimals; ``max_gts // 2 ..
    max_gts`` real per image, the rest zeros with ``valid`` False."""
    r = np.random.default_rng(seed)
    h, w = image
    scale = max(h, w) / 640.0
    side = np.exp(r.normal(np.log(42.0 * scale), 1.18, size=(batch, max_gts)))
    aspect = np.exp(r.normal(0.0, 0.6, size=(batch, max_gts)))
    bw = np.clip(side * np.sqrt(aspect), 1.0, w - 1.0)
    bh = np.clip(side / np.sqrt(aspect), 1.0, h - 1.0)
    x0 = r.uniform(0, 1, size=(batch, max_gts)) * (w - bw)
    y0 = r.uniform(0, 1, size=(batch, max_gts)) * (h - bh)
    gts = np.round(np.stack([x0, y0, x0 + bw, y0 + bh], -1), 2)
    n_real = r.integers(max(max_gts // 2, 1), max_gts + 1, size=(batch, 1))
    valid = np.arange(max_gts)[None, :] < n_real
    gts = np.where(valid[..., None], gts, 0.0).astype(np.float32)
    labels = np.where(valid, r.integers(0, classes, size=(batch, max_gts)), 0)
    return {"gts": gts, "valid": valid, "labels": labels.astype(np.int64)}


def fcos_anchors(image: tuple[int, int]) -> tuple[np.ndarray, list[int], str]:
    """torchvision FCOS's locations for one image batch padded to a multiple of 32."""
    padded = (-(-image[0] // 32) * 32, -(-image[1] // 32) * 32)
    levels = [-(-padded[0] // s) * -(-padded[1] // s) for s in FCOS_STRIDES]
    au, _ = import_or_reason("torchvision.models.detection.anchor_utils")
    if au is not None:
        import torch
        from torchvision.models.detection.image_list import ImageList

        gen = au.AnchorGenerator(tuple((s,) for s in FCOS_STRIDES), ((1.0,),) * 5)
        feats = [torch.zeros(1, 1, -(-padded[0] // s), -(-padded[1] // s))
                 for s in FCOS_STRIDES]
        anchors = gen(ImageList(torch.zeros(1, 3, *padded), [image]), feats)[0].numpy()
        return anchors.astype(np.float32), levels, "torchvision AnchorGenerator"
    from focal_array.anchors import retinanet_anchors

    anchors = retinanet_anchors(padded, sizes=FCOS_STRIDES, scales=(1.0,),
                                aspect_ratios=(1.0,), offset=0.0)
    return np.asarray(anchors, np.float32), levels, "retinanet_anchors (torchvision's grid)"


def tal_inputs(batch: int, image: tuple[int, int], classes: int, seed: int = 1
               ) -> dict[str, np.ndarray]:
    """ultralytics' make_anchors points, sigmoid scores, predicted boxes around each point
    (ltrb of 0.5 .. 8 strides)."""
    r = np.random.default_rng(seed)
    pts, strides = [], []
    for s in TAL_STRIDES:
        fh, fw = -(-image[0] // s), -(-image[1] // s)
        ys, xs = np.meshgrid(np.arange(fh) + 0.5, np.arange(fw) + 0.5, indexing="ij")
        pts.append(np.stack([xs, ys], -1).reshape(-1, 2) * s)
        strides.append(np.full(fh * fw, float(s)))
    points, stride = np.concatenate(pts), np.concatenate(strides)
    a = len(points)
    ltrb = stride[None, :, None] * r.uniform(0.5, 8.0, (batch, a, 4))
    pred = np.concatenate([points - ltrb[..., :2], points + ltrb[..., 2:]], -1)
    scores = 1.0 / (1.0 + np.exp(-r.normal(-3.0, 1.5, (batch, a, classes))))
    return {"points": points.astype(np.float32), "pred": pred.astype(np.float32),
            "scores": scores.astype(np.float32)}


# --------------------------------------------------------------------------- references


def tv_fcos_matching(anchors, targets, num_anchors_per_level, center_sampling_radius=1.5):
    """torchvision ``FCOS.compute_loss``'s matching loop, line for line (torchvision 0.29
    ``models/detection/fcos.py``); ``targets`` a list of ``{"boxes": (G_i, 4)}``."""
    import torch

    matched_idxs = []
    for anchors_per_image, targets_per_image in zip(anchors, targets, strict=True):
        if targets_per_image["boxes"].numel() == 0:
            matched_idxs.append(
                torch.full((anchors_per_image.size(0),), -1, dtype=torch.int64,
                           device=anchors_per_image.device)
            )
            continue

        gt_boxes = targets_per_image["boxes"]
        gt_centers = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2  # Nx2
        anchor_centers = (anchors_per_image[:, :2] + anchors_per_image[:, 2:]) / 2  # N
        anchor_sizes = anchors_per_image[:, 2] - anchors_per_image[:, 0]
        # center sampling: anchor point must be close enough to gt center.
        pairwise_match = (anchor_centers[:, None, :] - gt_centers[None, :, :]).abs_().max(
            dim=2
        ).values < center_sampling_radius * anchor_sizes[:, None]
        # compute pairwise distance between N points and M boxes
        x, y = anchor_centers.unsqueeze(dim=2).unbind(dim=1)  # (N, 1)
        x0, y0, x1, y1 = gt_boxes.unsqueeze(dim=0).unbind(dim=2)  # (1, M)
        pairwise_dist = torch.stack([x - x0, y - y0, x1 - x, y1 - y], dim=2)  # (N, M)

        # anchor point must be inside gt
        pairwise_match &= pairwise_dist.min(dim=2).values > 0

        # each anchor is only responsible for certain scale range.
        lower_bound = anchor_sizes * 4
        lower_bound[: num_anchors_per_level[0]] = 0
        upper_bound = anchor_sizes * 8
        upper_bound[-num_anchors_per_level[-1]:] = float("inf")
        pairwise_dist = pairwise_dist.max(dim=2).values
        pairwise_match &= (pairwise_dist > lower_bound[:, None]) & (
            pairwise_dist < upper_bound[:, None])

        # match the GT box with minimum area, if there are multiple GT matches
        gt_areas = (gt_boxes[:, 2] - gt_boxes[:, 0]) * (gt_boxes[:, 3] - gt_boxes[:, 1])  # N
        pairwise_match = pairwise_match.to(torch.float32) * (1e8 - gt_areas[None, :])
        min_values, matched_idx = pairwise_match.max(dim=1)  # R, per-anchor match
        matched_idx[min_values < 1e-5] = -1  # unmatched anchors are assigned -1

        matched_idxs.append(matched_idx)
    return matched_idxs


#: lines of the loop above that torchvision's installed source must contain (whitespace
#: removed) for the label to say "verified against the installed torchvision"
_TV_KEY_LINES = (
    "pairwise_match&=pairwise_dist.min(dim=2).values>0",
    "lower_bound=anchor_sizes*4",
    "upper_bound=anchor_sizes*8",
    "pairwise_match=pairwise_match.to(torch.float32)*(1e8-gt_areas[None,:])",
    "min_values,matched_idx=pairwise_match.max(dim=1)",
    "matched_idx[min_values<1e-5]=-1",
)


def _tv_fcos_label() -> str:
    fcos, _ = import_or_reason("torchvision.models.detection.fcos")
    if fcos is None:
        return "torchvision FCOS matching loop (transcribed; torchvision not importable)"
    import torchvision

    src = "".join(inspect.getsource(fcos.FCOS.compute_loss).split())
    ok = all(line in src for line in _TV_KEY_LINES)
    return (f"torchvision FCOS matching loop (FCOS.compute_loss lines, per image; "
            f"{'checked against' if ok else 'DIFFERS from'} torchvision "
            f"{torchvision.__version__.split('+')[0]})")


def mmdet_atss(priors, gt_bboxes, num_level_priors, topk=9):
    """mmdetection's ``ATSSAssigner.assign`` (alpha=None, no ignored boxes) for one image,
    in torch; its 1-based ``assigned_gt_inds`` returned 0-based (-1 background)."""
    import torch

    inf = 100000000
    num_gt, num_priors = gt_bboxes.size(0), priors.size(0)
    # BboxOverlaps2D: bbox_overlaps(priors, gt_bboxes, mode="iou", eps=1e-6)
    area1 = (priors[..., 2] - priors[..., 0]) * (priors[..., 3] - priors[..., 1])
    area2 = (gt_bboxes[..., 2] - gt_bboxes[..., 0]) * (gt_bboxes[..., 3] - gt_bboxes[..., 1])
    lt = torch.max(priors[..., :, None, :2], gt_bboxes[..., None, :, :2])
    rb = torch.min(priors[..., :, None, 2:], gt_bboxes[..., None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    overlap = wh[..., 0] * wh[..., 1]
    union = area1[..., None] + area2[..., None, :] - overlap
    union = torch.max(union, union.new_tensor([1e-6]))
    overlaps = overlap / union
    assigned_gt_inds = overlaps.new_full((num_priors,), 0, dtype=torch.long)
    if num_gt == 0 or num_priors == 0:
        return assigned_gt_inds - 1
    # compute center distance between all bbox and gt
    gt_cx = (gt_bboxes[:, 0] + gt_bboxes[:, 2]) / 2.0
    gt_cy = (gt_bboxes[:, 1] + gt_bboxes[:, 3]) / 2.0
    gt_points = torch.stack((gt_cx, gt_cy), dim=1)
    priors_cx = (priors[:, 0] + priors[:, 2]) / 2.0
    priors_cy = (priors[:, 1] + priors[:, 3]) / 2.0
    priors_points = torch.stack((priors_cx, priors_cy), dim=1)
    distances = (priors_points[:, None, :] - gt_points[None, :, :]).pow(2).sum(-1).sqrt()
    # Selecting candidates based on the center distance
    candidate_idxs = []
    start_idx = 0
    for priors_per_level in num_level_priors:
        end_idx = start_idx + priors_per_level
        distances_per_level = distances[start_idx:end_idx, :]
        selectable_k = min(topk, priors_per_level)
        _, topk_idxs_per_level = distances_per_level.topk(selectable_k, dim=0, largest=False)
        candidate_idxs.append(topk_idxs_per_level + start_idx)
        start_idx = end_idx
    candidate_idxs = torch.cat(candidate_idxs, dim=0)
    candidate_overlaps = overlaps[candidate_idxs, torch.arange(num_gt)]
    overlaps_mean_per_gt = candidate_overlaps.mean(0)
    overlaps_std_per_gt = candidate_overlaps.std(0)
    overlaps_thr_per_gt = overlaps_mean_per_gt + overlaps_std_per_gt
    is_pos = candidate_overlaps >= overlaps_thr_per_gt[None, :]
    # limit the positive sample's center in gt
    for gt_idx in range(num_gt):
        candidate_idxs[:, gt_idx] += gt_idx * num_priors
    ep_priors_cx = priors_cx.view(1, -1).expand(num_gt, num_priors).contiguous().view(-1)
    ep_priors_cy = priors_cy.view(1, -1).expand(num_gt, num_priors).contiguous().view(-1)
    candidate_idxs = candidate_idxs.view(-1)
    l_ = ep_priors_cx[candidate_idxs].view(-1, num_gt) - gt_bboxes[:, 0]
    t_ = ep_priors_cy[candidate_idxs].view(-1, num_gt) - gt_bboxes[:, 1]
    r_ = gt_bboxes[:, 2] - ep_priors_cx[candidate_idxs].view(-1, num_gt)
    b_ = gt_bboxes[:, 3] - ep_priors_cy[candidate_idxs].view(-1, num_gt)
    is_in_gts = torch.stack([l_, t_, r_, b_], dim=1).min(dim=1)[0] > 0.01
    is_pos = is_pos & is_in_gts
    # if an anchor box is assigned to multiple gts, the one with the highest IoU is selected
    overlaps_inf = torch.full_like(overlaps, -inf).t().contiguous().view(-1)
    index = candidate_idxs.view(-1)[is_pos.view(-1)]
    overlaps_inf[index] = overlaps.t().contiguous().view(-1)[index]
    overlaps_inf = overlaps_inf.view(num_gt, -1).t()
    max_overlaps, argmax_overlaps = overlaps_inf.max(dim=1)
    assigned_gt_inds[max_overlaps != -inf] = argmax_overlaps[max_overlaps != -inf] + 1
    return assigned_gt_inds - 1


def _ul_bbox_ciou(box1, box2, eps=1e-7):
    """ultralytics ``bbox_iou(box1, box2, xywh=False, CIoU=True)``."""
    import torch

    b1_x1, b1_y1, b1_x2, b1_y2 = box1.chunk(4, -1)
    b2_x1, b2_y1, b2_x2, b2_y2 = box2.chunk(4, -1)
    w1, h1 = b1_x2 - b1_x1, b1_y2 - b1_y1 + eps
    w2, h2 = b2_x2 - b2_x1, b2_y2 - b2_y1 + eps
    inter = (b1_x2.minimum(b2_x2) - b1_x1.maximum(b2_x1)).clamp_(0) * (
        b1_y2.minimum(b2_y2) - b1_y1.maximum(b2_y1)).clamp_(0)
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    cw = b1_x2.maximum(b2_x2) - b1_x1.minimum(b2_x1)
    ch = b1_y2.maximum(b2_y2) - b1_y1.minimum(b2_y1)
    c2 = cw.pow(2) + ch.pow(2) + eps
    rho2 = ((b2_x1 + b2_x2 - b1_x1 - b1_x2).pow(2) + (b2_y1 + b2_y2 - b1_y1 - b1_y2).pow(2)) / 4
    v = (4 / math.pi**2) * ((w2 / h2).atan() - (w1 / h1).atan()).pow(2)
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (rho2 / c2 + v * alpha)


class UltralyticsTAL:
    """ultralytics ``TaskAlignedAssigner.forward`` (``utils/tal.py``) in torch, batched."""

    def __init__(self, topk=13, num_classes=80, alpha=1.0, beta=6.0, eps=1e-9):
        self.topk, self.num_classes, self.bg_idx = topk, num_classes, num_classes
        self.alpha, self.beta, self.eps = alpha, beta, eps

    def __call__(self, pd_scores, pd_bboxes, anc_points, gt_labels, gt_bboxes, mask_gt):
        import torch

        with torch.no_grad():
            self.bs = pd_scores.shape[0]
            self.n_max_boxes = gt_bboxes.shape[1]
            mask_pos, align_metric, overlaps = self.get_pos_mask(
                pd_scores, pd_bboxes, gt_labels, gt_bboxes, anc_points, mask_gt)
            target_gt_idx, fg_mask, mask_pos = self.select_highest_overlaps(
                mask_pos, overlaps, self.n_max_boxes)
            target_labels, target_bboxes, target_scores = self.get_targets(
                gt_labels, gt_bboxes, target_gt_idx, fg_mask)
            align_metric *= mask_pos
            pos_align_metrics = align_metric.amax(dim=-1, keepdim=True)
            pos_overlaps = (overlaps * mask_pos).amax(dim=-1, keepdim=True)
            norm_align_metric = (align_metric * pos_overlaps / (pos_align_metrics + self.eps)
                                 ).amax(-2).unsqueeze(-1)
            target_scores = target_scores * norm_align_metric
            return target_labels, target_bboxes, target_scores, fg_mask.bool(), target_gt_idx

    def get_pos_mask(self, pd_scores, pd_bboxes, gt_labels, gt_bboxes, anc_points, mask_gt):
        mask_in_gts = self.select_candidates_in_gts(anc_points, gt_bboxes)
        align_metric, overlaps = self.get_box_metrics(pd_scores, pd_bboxes, gt_labels,
                                                      gt_bboxes, mask_in_gts * mask_gt)
        mask_topk = self.select_topk_candidates(
            align_metric, topk_mask=mask_gt.expand(-1, -1, self.topk).bool())
        mask_pos = mask_topk * mask_in_gts * mask_gt
        return mask_pos, align_metric, overlaps

    def get_box_metrics(self, pd_scores, pd_bboxes, gt_labels, gt_bboxes, mask_gt):
        import torch

        na = pd_bboxes.shape[-2]
        mask_gt = mask_gt.bool()
        overlaps = torch.zeros([self.bs, self.n_max_boxes, na], dtype=pd_bboxes.dtype)
        bbox_scores = torch.zeros([self.bs, self.n_max_boxes, na], dtype=pd_scores.dtype)
        ind = torch.zeros([2, self.bs, self.n_max_boxes], dtype=torch.long)
        ind[0] = torch.arange(end=self.bs).view(-1, 1).expand(-1, self.n_max_boxes)
        ind[1] = gt_labels.squeeze(-1)
        bbox_scores[mask_gt] = pd_scores[ind[0], :, ind[1]][mask_gt]
        pd_boxes = pd_bboxes.unsqueeze(1).expand(-1, self.n_max_boxes, -1, -1)[mask_gt]
        gt_boxes = gt_bboxes.unsqueeze(2).expand(-1, -1, na, -1)[mask_gt]
        overlaps[mask_gt] = _ul_bbox_ciou(gt_boxes, pd_boxes).squeeze(-1).clamp_(0)
        align_metric = bbox_scores.pow(self.alpha) * overlaps.pow(self.beta)
        return align_metric, overlaps

    def select_topk_candidates(self, metrics, largest=True, topk_mask=None):
        import torch

        topk_metrics, topk_idxs = torch.topk(metrics, self.topk, dim=-1, largest=largest)
        if topk_mask is None:
            topk_mask = (topk_metrics.max(-1, keepdim=True)[0] > self.eps).expand_as(topk_idxs)
        topk_idxs.masked_fill_(~topk_mask, 0)
        count_tensor = torch.zeros(metrics.shape, dtype=torch.int8)
        ones = torch.ones_like(topk_idxs[:, :, :1], dtype=torch.int8)
        for k in range(self.topk):
            count_tensor.scatter_add_(-1, topk_idxs[:, :, k: k + 1], ones)
        count_tensor.masked_fill_(count_tensor > 1, 0)
        return count_tensor.to(metrics.dtype)

    def get_targets(self, gt_labels, gt_bboxes, target_gt_idx, fg_mask):
        import torch

        batch_ind = torch.arange(end=self.bs, dtype=torch.int64)[..., None]
        target_gt_idx = target_gt_idx + batch_ind * self.n_max_boxes
        target_labels = gt_labels.long().flatten()[target_gt_idx]
        target_bboxes = gt_bboxes.view(-1, gt_bboxes.shape[-1])[target_gt_idx]
        target_labels.clamp_(0)
        target_scores = torch.zeros(
            (target_labels.shape[0], target_labels.shape[1], self.num_classes),
            dtype=torch.int64)
        target_scores.scatter_(2, target_labels.unsqueeze(-1), 1)
        fg_scores_mask = fg_mask[:, :, None].repeat(1, 1, self.num_classes)
        target_scores = torch.where(fg_scores_mask > 0, target_scores, 0)
        return target_labels, target_bboxes, target_scores

    @staticmethod
    def select_candidates_in_gts(xy_centers, gt_bboxes, eps=1e-9):
        import torch

        n_anchors = xy_centers.shape[0]
        bs, n_boxes, _ = gt_bboxes.shape
        lt, rb = gt_bboxes.view(-1, 1, 4).chunk(2, 2)
        bbox_deltas = torch.cat((xy_centers[None] - lt, rb - xy_centers[None]),
                                dim=2).view(bs, n_boxes, n_anchors, -1)
        return bbox_deltas.amin(3).gt_(eps)

    @staticmethod
    def select_highest_overlaps(mask_pos, overlaps, n_max_boxes):
        import torch

        fg_mask = mask_pos.sum(-2)
        if fg_mask.max() > 1:
            mask_multi_gts = (fg_mask.unsqueeze(1) > 1).expand(-1, n_max_boxes, -1)
            max_overlaps_idx = overlaps.argmax(1)
            is_max_overlaps = torch.zeros(mask_pos.shape, dtype=mask_pos.dtype)
            is_max_overlaps.scatter_(1, max_overlaps_idx.unsqueeze(1), 1)
            mask_pos = torch.where(mask_multi_gts, is_max_overlaps, mask_pos).float()
            fg_mask = mask_pos.sum(-2)
        target_gt_idx = mask_pos.argmax(-2)
        return target_gt_idx, fg_mask, mask_pos


# --------------------------------------------------------------------------- cases


def _jax_case(fn: Any, args: tuple, impl: str) -> Case:
    import jax

    jitted = jax.jit(fn)
    return Case("fa_jax", impl, lambda: jax.block_until_ready(jitted(*args)), peer=False,
                vs=("ref",), jax_lowered=lambda: jitted.lower(*args))


def build(workload: str, size: tuple, seed: int = 0
          ) -> tuple[list[Case], dict[str, Any], Any]:
    """The cases of one workload, its shape facts and a function comparing results."""
    import torch

    b, image, g, c = size
    gin = make_gts(b, image, g, c, seed)
    gts_t, valid_t = torch.from_numpy(gin["gts"]), torch.from_numpy(gin["valid"])
    real = [gts_t[i][valid_t[i]] for i in range(b)]
    jax, reason = import_or_reason("jax")
    cases: list[Case] = []
    info: dict[str, Any] = {"images": b, "image": list(image), "max_gts": g,
                            "real_gts": int(gin["valid"].sum())}
    if workload == "fcos":
        from focal_array.assigners import fcos_assign

        anchors, levels, source = fcos_anchors(image)
        info.update(anchors=len(anchors), levels=levels, anchor_source=source)
        f = functools.partial(fcos_assign, num_anchors_per_level=levels)
        if jax is not None:
            args = tuple(jax.numpy.asarray(x) for x in (anchors, gin["gts"], gin["valid"]))
            cases.append(_jax_case(lambda a, gt, v: f(a, gt, gt_valid=v), args,
                                   "focal_array fcos_assign (jax.jit, batched)"))
        a_t = torch.from_numpy(anchors)
        cases.append(Case("fa_torch", "focal_array fcos_assign (PyTorch eager, batched)",
                          lambda: f(a_t, gts_t, gt_valid=valid_t), peer=False, vs=("ref",)))
        targets = [{"boxes": x} for x in real]
        cases.append(Case("ref", _tv_fcos_label(), lambda: torch.stack(
            tv_fcos_matching([a_t] * b, targets, levels))))
    elif workload == "atss":
        from focal_array.anchors import anchors_per_level, retinanet_anchors
        from focal_array.assigners import atss_assign

        anchors = np.asarray(retinanet_anchors(image), np.float32)
        levels = [lv.num_anchors for lv in anchors_per_level(image)]
        info.update(anchors=len(anchors), levels=levels,
                    anchor_source="focal_array.anchors.retinanet_anchors")
        f = functools.partial(atss_assign, num_anchors_per_level=levels)
        if jax is not None:
            args = tuple(jax.numpy.asarray(x) for x in (anchors, gin["gts"], gin["valid"]))
            cases.append(_jax_case(lambda a, gt, v: f(a, gt, gt_valid=v), args,
                                   "focal_array atss_assign (jax.jit, batched)"))
        a_t = torch.from_numpy(anchors)
        cases.append(Case("fa_torch", "focal_array atss_assign (PyTorch eager, batched)",
                          lambda: f(a_t, gts_t, gt_valid=valid_t), peer=False, vs=("ref",)))
        cases.append(Case("ref", "mmdetection ATSSAssigner, torch transcription, per-image "
                                 "loop", lambda: torch.stack([mmdet_atss(a_t, x, levels)
                                                              for x in real])))
    elif workload == "tal":
        from focal_array.assigners import task_aligned_assign

        t = tal_inputs(b, image, c, seed + 1)
        info.update(anchors=len(t["points"]), classes=c, strides=list(TAL_STRIDES))
        f = functools.partial(task_aligned_assign, **TAL, iou="ciou", contested="all",
                              topk_from="anchors")
        names = ("scores", "pred", "points")
        if jax is not None:
            jnp = jax.numpy
            args = (*(jnp.asarray(t[k]) for k in names),
                    *(jnp.asarray(gin[k]) for k in ("labels", "gts", "valid")))
            cases.append(_jax_case(lambda s, p, q, lab, gt, v: f(s, p, q, lab, gt, gt_valid=v),
                                   args, "focal_array task_aligned_assign (jax.jit, batched)"))
        tt = {k: torch.from_numpy(t[k]) for k in names}
        labels_t = torch.from_numpy(gin["labels"])
        cases.append(Case("fa_torch", "focal_array task_aligned_assign (PyTorch eager)",
                          lambda: f(tt["scores"], tt["pred"], tt["points"], labels_t, gts_t,
                                    gt_valid=valid_t), peer=False, vs=("ref",)))
        ul = UltralyticsTAL(num_classes=c, **TAL)
        mask = valid_t[..., None].float()
        cases.append(Case("ref", "ultralytics TaskAlignedAssigner, torch transcription "
                                 "(batched)", lambda: ul(tt["scores"], tt["pred"],
                                                         tt["points"], labels_t[..., None],
                                                         gts_t, mask)))
    else:
        raise ValueError(workload)
    if jax is None:
        cases.insert(0, missing("fa_jax", "focal_array (jax.jit)", reason, peer=False))
    return cases, info, _agreement(workload)


def _agreement(workload: str) -> Any:
    """(ours, ref) -> share of anchors with the reference's gt index (and, for TAL, the
    largest target-score difference)."""

    def matched(out: Any) -> np.ndarray:
        return np.asarray(out["matched"] if isinstance(out, dict) else out)

    def compare(ours: Any, ref: Any) -> dict[str, float]:
        if workload != "tal":
            m, r = matched(ours), np.asarray(ref)
            return {"same_index": float(np.mean(m == r)), "positives": int((m >= 0).sum()),
                    "ref_positives": int((r >= 0).sum())}
        m = matched(ours)
        fg, idx, scores = np.asarray(ref[3]), np.asarray(ref[4]), np.asarray(ref[2])
        r = np.where(fg, idx, -1)
        return {"same_index": float(np.mean(m == r)), "positives": int((m >= 0).sum()),
                "ref_positives": int(fg.sum()),
                "max_abs_score_diff": float(np.max(np.abs(np.asarray(ours["target_scores"])
                                                          - scores)))}

    return compare


def memory(case: Case, bag: int) -> dict[str, Any]:
    """XLA's memory analysis of the jitted call against one (B, A, G) float32 matrix."""
    if case.jax_lowered is None or case.run is None:
        return {}
    try:
        ma = case.jax_lowered().compile().memory_analysis()
        temp, out = int(ma.temp_size_in_bytes), int(ma.output_size_in_bytes)
    except Exception as exc:  # memory analysis is optional in XLA
        return {"xla_reason": f"{type(exc).__name__}: {str(exc)[:80]}"}
    return {"xla_temp_bytes": temp, "xla_output_bytes": out, "bag_f32_bytes": 4 * bag,
            "temp_x_bag": temp / (4 * bag)}


# --------------------------------------------------------------------------- driver


def run(quick: bool, rounds: int | None, only: tuple[str, ...] = WORKLOADS
        ) -> dict[str, Any]:
    import warnings

    warnings.filterwarnings("ignore")
    import torch

    size = QUICK if quick else FULL
    warm, reps = (1, 2) if quick else (1, 5)
    reps = rounds or reps
    groups = []
    for w in only:
        print(f"[assigners] {w} ...", file=sys.stderr, flush=True)
        cases, info, compare = build(w, size)
        # timed first, so that first_call_ms holds the compilation
        rows = time_group(cases, warm, reps, None if quick or rounds else 120.0)
        live = {c.key: c for c, row in zip(cases, rows, strict=True)
                if row["status"] == "measured"}
        agree = {}
        if "ref" in live:
            ref = live["ref"].run()
            for k in ("fa_jax", "fa_torch"):
                if k in live:
                    agree[k] = compare(live[k].run(), ref)
        bag = info["images"] * info["anchors"] * info["max_gts"]
        for row in rows:
            row["workload"] = w
            if row["key"] in agree:
                row["agreement"] = agree[row["key"]]
            if row["key"] == "fa_jax" and row["status"] == "measured":
                row["memory"] = memory(live["fa_jax"], bag)
        groups.append({"workload": w, "info": info, "rows": rows})
        del cases, live
    return {"quick": quick, "torch_threads": torch.get_num_threads(), "groups": groups}


_TITLES = {"fcos": "FCOS", "atss": "ATSS", "tal": "task-aligned (YOLOv8 TAL)"}


def render(result: dict[str, Any]) -> str:
    lines = [f"Target assigners, median of interleaved rounds; PyTorch threads: "
             f"{result['torch_threads']}"]
    for grp in result["groups"]:
        z = grp["info"]
        extra = f", {z['classes']} classes" if "classes" in z else ""
        lines += ["", f"{_TITLES[grp['workload']]}: {z['images']} images of "
                      f"{z['image'][0]} x {z['image'][1]}, {z['anchors']:,} anchors/points, "
                      f"up to {z['max_gts']} gts ({z['real_gts']} real){extra}"
                      + (f"; anchors: {z['anchor_source']}" if "anchor_source" in z else ""),
                  f"  {'implementation':76} {'median ms':>10} {'min ms':>9} {'first ms':>9} "
                  f"{'fa/ref':>7} {'agree':>7}"]
        for row in grp["rows"]:
            if row["status"] != "measured":
                lines.append(f"  {row['impl'][:76]:76} missing: {row['reason']}")
                continue
            ratio = row.get("ratios", {}).get("ref")
            r = f"{ratio['median']:.2f}x" if ratio else ""
            a = row.get("agreement", {}).get("same_index")
            a = f"{100 * a:.2f}%" if a is not None else ""
            lines.append(f"  {row['impl'][:76]:76} {row['median_ms']:10.1f} "
                         f"{row['min_ms']:9.1f} {row['first_call_ms']:9.0f} {r:>7} {a:>7}")
            mem = row.get("memory")
            if mem and "xla_temp_bytes" in mem:
                lines.append(f"    XLA temp {mem['xla_temp_bytes'] / 2**20:,.1f} MiB "
                             f"(+ outputs {mem['xla_output_bytes'] / 2**20:,.1f} MiB) = "
                             f"{mem['temp_x_bag']:.2f}x one (B, A, G) float32 matrix "
                             f"({mem['bag_f32_bytes'] / 2**20:,.1f} MiB)")
            elif mem:
                lines.append(f"    XLA memory analysis unavailable: {mem.get('xla_reason')}")
    lines += ["", "fa/ref = median over rounds of focal_array time / reference time in the "
                  "same round (< 1: faster); agree = share of anchors given the reference's "
                  "gt index (or background)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, few rounds")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds")
    parser.add_argument("--threads", type=int, default=None,
                        help="intra-op threads of PyTorch (and, with 1, of XLA)")
    parser.add_argument("--only", default=",".join(WORKLOADS),
                        help="comma-separated workloads: fcos, atss, tal")
    parser.add_argument("--json", default=None, help="write the rows to this file")
    args = parser.parse_args(argv)
    only = tuple(w for w in args.only.split(",") if w)
    if any(w not in WORKLOADS for w in only):
        parser.error(f"--only takes {', '.join(WORKLOADS)}")
    if args.threads:
        if args.threads == 1 and "jax" not in sys.modules:
            os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_"
                                       "thread_eigen=false intra_op_parallelism_threads=1")
        import torch

        torch.set_num_threads(args.threads)
    result = run(args.quick, args.rounds, only)
    print(render(result))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1, default=float)
    medians = [r["median_ms"] for g in result["groups"] for r in g["rows"]
               if r["status"] == "measured"]
    return 0 if medians and statistics.fmean(medians) > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
