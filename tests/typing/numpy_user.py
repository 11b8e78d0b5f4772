"""A typed NumPy user of the public API: every result is a ``numpy.ndarray``.

Checked, not run: tests/test_typing.py runs pyright and mypy on this file and expects no
error, so each ``assert_type`` below is a claim about the package's signatures.
"""

from __future__ import annotations

import numpy as np
from typing_extensions import assert_type

import focal_array as fa
from focal_array import assigners, boxes, matcher, normalization, rcnn
from focal_array.detection import DenseDetectionLoss


def check_numpy(logits: np.ndarray, targets: np.ndarray, labels: np.ndarray,
                anchors: np.ndarray, gt_boxes: np.ndarray, gt_labels: np.ndarray,
                gt_valid: np.ndarray) -> None:
    assert_type(fa.sigmoid_focal_loss(logits, targets, gamma=np.float64(2.0)), np.ndarray)
    assert_type(fa.binary_cross_entropy(logits, targets, reduction="sum"), np.ndarray)
    assert_type(fa.softmax_focal_loss(logits, labels, alpha=[0.25, 0.75], ignore_index=255),
                np.ndarray)
    assert_type(fa.softmax_cross_entropy(logits, targets, label_smoothing=0.1), np.ndarray)
    assert_type(fa.quality_focal_loss(logits, targets), np.ndarray)
    assert_type(fa.varifocal_loss(logits, targets, alpha=np.float32(0.75), reduction="sum"),
                np.ndarray)
    assert_type(fa.poly1_focal_loss(logits, targets, alpha=None, normalizer=12.0), np.ndarray)
    assert_type(fa.softmax_poly1_focal_loss(logits, labels, alpha=[0.25, 0.75]), np.ndarray)
    assert_type(fa.sigmoid_focal_loss_star(logits, targets, reduction="mean"), np.ndarray)
    assert_type(fa.distribution_focal_loss(logits, targets, weights=targets), np.ndarray)

    out = fa.dense_detection_loss(logits, logits, anchors, gt_boxes, gt_labels,
                                  gt_valid=gt_valid, loss="varifocal", alpha=np.float32(0.75),
                                  assigner="atss", num_anchors_per_level=[4],
                                  normalize="positives")
    assert_type(out, DenseDetectionLoss[np.ndarray])
    assert_type(out["total"], np.ndarray)
    assert_type(out["num_positives"], np.ndarray)
    centerness = out.get("centerness")  # present only with centerness_logits
    assert_type(centerness, "np.ndarray | None")

    assert_type(matcher.match(boxes.box_iou(anchors, gt_boxes)), np.ndarray)
    assert_type(matcher.match_anchors(anchors, gt_boxes, tie_rule="rounding"), np.ndarray)
    lab, box_targets, matched = matcher.assign_targets(anchors, gt_boxes, gt_labels,
                                                       num_classes=np.int64(3))
    assert_type(box_targets, np.ndarray)
    assert_type(matcher.hard_negative_mining(logits, lab, neg_pos_ratio=3), np.ndarray)

    assert_type(boxes.convert(gt_boxes, "xywh", "xyxy"), np.ndarray)
    assert_type(boxes.area(gt_boxes), np.ndarray)
    assert_type(boxes.generalized_box_iou(anchors, gt_boxes), np.ndarray)
    assert_type(boxes.box_ioa(anchors, gt_boxes), np.ndarray)
    assert_type(boxes.decode(anchors, boxes.encode(anchors, gt_boxes)), np.ndarray)

    assert_type(assigners.fcos_assign(anchors, gt_boxes, num_anchors_per_level=[4]),
                np.ndarray)
    assert_type(assigners.atss_assign(anchors, gt_boxes, num_anchors_per_level=[4], topk=9),
                np.ndarray)
    assert_type(assigners.centerness_targets(anchors, gt_boxes, matched=matched), np.ndarray)
    tal = assigners.task_aligned_assign(logits, anchors, anchors, gt_labels, gt_boxes,
                                        iou="ciou")
    assert_type(tal["target_scores"], np.ndarray)

    state: np.ndarray = normalization.init_ema_normalizer(100.0, xp=np)  # made from nothing: Any
    assert_type(normalization.ema_normalizer(state, out["num_positives"]), np.ndarray)

    assert_type(rcnn.sample_balanced(lab, rng=np.random.default_rng(0)), np.ndarray)
    assert_type(rcnn.sample_balanced(lab, rng=0, return_indices=True), rcnn.BalancedSample)
    props, valid = rcnn.append_gt_proposals(anchors, gt_boxes, gt_valid=gt_valid)
    assert_type(props, np.ndarray)
    head = rcnn.rcnn_head_loss(logits, logits, props, gt_boxes, gt_labels, rng=0,
                               loss="ce", proposal_valid=valid)
    assert_type(head["total"], np.ndarray)
