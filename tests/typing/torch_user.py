"""A typed PyTorch user of the public API: every result is a ``torch.Tensor``. Checked by
pyright and mypy (tests/test_typing.py), not run."""

from __future__ import annotations

import torch
from typing_extensions import assert_type

import focal_array as fa
from focal_array import boxes, matcher, normalization, rcnn


def check_torch(logits: torch.Tensor, targets: torch.Tensor, labels: torch.Tensor,
                anchors: torch.Tensor, gt_boxes: torch.Tensor, gt_labels: torch.Tensor,
                generator: torch.Generator) -> None:
    assert_type(fa.sigmoid_focal_loss(logits, targets, reduction="mean"), torch.Tensor)
    assert_type(fa.binary_cross_entropy(logits, targets, alpha=0.25), torch.Tensor)
    assert_type(fa.softmax_cross_entropy(logits, labels, class_weights=targets,
                                         ignore_index=255, label_smoothing=0.1), torch.Tensor)
    assert_type(fa.softmax_focal_loss(logits, targets, axis=1), torch.Tensor)
    assert_type(fa.one_hot(labels, 3), torch.Tensor)
    assert_type(fa.varifocal_loss(logits, targets, normalizer=torch.tensor(3.0)), torch.Tensor)
    assert_type(fa.sigmoid_focal_loss_star(logits, targets, alpha=None), torch.Tensor)
    out = fa.dense_detection_loss(logits, logits, anchors, gt_boxes, gt_labels,
                                  loss="ce_hnm", alpha=None, box_loss="giou")
    assert_type(out["box_regression"], torch.Tensor)
    lab, _, _ = matcher.assign_targets(anchors, gt_boxes, gt_labels)
    assert_type(lab, torch.Tensor)
    assert_type(boxes.decode(anchors, logits, clamp=None), torch.Tensor)
    assert_type(normalization.ema_normalizer(out["num_positives"], 3.0), torch.Tensor)
    sample = rcnn.sample_balanced(labels, rng=generator, return_indices=True)
    assert_type(sample, rcnn.BalancedSample)
    head = rcnn.rcnn_head_loss(logits, logits, anchors, gt_boxes, gt_labels, rng=generator)
    assert_type(head, dict[str, torch.Tensor])
