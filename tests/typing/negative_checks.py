"""Calls that must be type errors: tests/test_typing.py runs pyright and mypy on this file
and expects an error on each line marked ``# error``, and on no other line. Not part of the
checkers' default file set (pyproject.toml), since it is meant to fail."""

from __future__ import annotations

import numpy as np

import focal_array as fa
from focal_array import boxes, matcher


def misuse(logits: np.ndarray, targets: np.ndarray, anchors: np.ndarray) -> None:
    fa.quality_focal_loss(logits, targets, reduction="meen")  # error
    fa.varifocal_loss(logits, targets, reduction="mean")
    fa.softmax_cross_entropy(logits, targets, reduction="avg")  # error
    fa.sigmoid_focal_loss([[0.0]], targets)  # error
    fa.softmax_focal_loss(logits, targets, ignore_index=2.5)  # error
    boxes.convert(anchors, "xyxy", "xywhh")  # error
    matcher.match_anchors(anchors, anchors, tie_rule="exact")  # error
    fa.dense_detection_loss(logits, logits, anchors, anchors, targets, assigner="atts")  # error
    boxes.area([[0.0, 0.0, 1.0, 1.0]])  # error
    fa.poly1_focal_loss(logits, targets, alpha=np.float32(0.25))
    out = fa.dense_detection_loss(logits, logits, anchors, anchors, targets)
    # mypy allows reading a non-required key; pyright does not
    out["centerness"]  # error: pyright
