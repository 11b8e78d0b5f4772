"""A typed JAX user of the public API: every result is a ``jax.Array``, under ``jax.jit``
too. Checked by pyright and mypy (tests/test_typing.py), not run."""

from __future__ import annotations

import jax
import numpy as np
from typing_extensions import assert_type

import focal_array as fa
from focal_array import assigners, boxes, matcher, rcnn
from focal_array.detection import DenseDetectionLoss


def check_jax(logits: jax.Array, targets: jax.Array, labels: jax.Array, anchors: jax.Array,
              gt_boxes: jax.Array, gt_labels: jax.Array, key: jax.Array) -> None:
    assert_type(fa.sigmoid_focal_loss(logits, targets, alpha=np.float32(0.25)), jax.Array)
    assert_type(fa.softmax_cross_entropy(logits, labels, class_weights=[1.0, 2.0]), jax.Array)
    assert_type(fa.quality_focal_loss(logits, targets, reduction="sum"), jax.Array)
    assert_type(fa.softmax_poly1_focal_loss(logits, labels, alpha=0.25), jax.Array)
    assert_type(matcher.match_anchors(anchors, gt_boxes), jax.Array)
    assert_type(boxes.box_iou(anchors, gt_boxes), jax.Array)
    assert_type(assigners.atss_assign(anchors, gt_boxes, num_anchors_per_level=[4]),
                jax.Array)
    assert_type(rcnn.sample_balanced(labels, rng=key), jax.Array)

    @jax.jit
    def step(x: jax.Array) -> jax.Array:  # x is a tracer here: still typed jax.Array
        out = fa.dense_detection_loss(x, x, anchors, gt_boxes, gt_labels,
                                      count_reducer=lambda n: jax.lax.psum(n, "data"))
        assert_type(out, DenseDetectionLoss[jax.Array])
        return out["total"]
