"""The detection loss's assignment step: one call per assigner, one form of targets.

Every assigner's match becomes the same :class:`DetectionTargets` (labels with the
library's codes, the matched box, its encoding in the head's box coding, and, for the
task-aligned assigner, its soft class targets), so the loss assembly downstream does not
know which assigner ran.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from ._detection_boxes import decode_boxes
from ._match_targets import _centre_and_size, encode_ltrb, targets_from_matched
from ._matching import _check_mask
from ._namespace import constant, stop_gradient
from ._stable import exp_pair
from ._validate import check_integer, check_same_shape
from .assigners import atss_assign, fcos_assign, task_aligned_assign
from .matcher import _check_labels, match_anchors

__all__ = ["ASSIGNERS", "DetectionTargets", "assign", "check_assigner_options"]

#: ``assigner=`` choices of the detection loss.
ASSIGNERS = ("max_iou", "fcos", "atss", "task_aligned")

#: keyword options each assigner takes through ``assigner_options`` (max_iou's are the
#: loss's own ``high``, ``low``, ... arguments)
_OPTIONS = {
    "max_iou": (),
    "fcos": ("center_sampling_radius",),
    "atss": ("topk",),
    "task_aligned": ("topk", "alpha", "beta", "iou", "contested", "topk_from",
                     "positive_only", "center_eps", "eps"),
}


class DetectionTargets(NamedTuple):
    labels: Any  #: (B, A) gt class, BACKGROUND or IGNORE
    matched: Any  #: (B, A) gt index or a negative code
    positive: Any  #: (B, A) bool
    box_targets: Any  #: (B, A, 4) encoded matched box in the head's coding, 0 elsewhere
    boxes: Any  #: (B, A, 4) xyxy matched gt where positive, else the anchor
    soft: Any  #: (B, A, C) soft class targets (task-aligned), else None


def check_assigner_options(assigner: str, options: Mapping[str, Any] | None,
                           levels: Sequence[int] | None) -> dict[str, Any]:
    """The assigner's options as keyword arguments, with clear errors for misplaced ones."""
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise TypeError(f"assigner_options must be a mapping of keyword arguments, got "
                        f"{options!r}")
    allowed = _OPTIONS[assigner]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        hint = (f"it takes {', '.join(map(repr, allowed))}" if allowed else
                "it takes none: its options are high, low, allow_low_quality_matches, ...")
        raise TypeError(f"assigner_options {unknown} are not options of assigner="
                        f"{assigner!r}; {hint}")
    needs_levels = assigner in ("fcos", "atss")
    if needs_levels and levels is None:
        raise ValueError(f"assigner={assigner!r} needs num_anchors_per_level (anchors per "
                         "pyramid level, in anchor order)")
    if not needs_levels and levels is not None:
        raise ValueError(f"num_anchors_per_level is used by the 'fcos' and 'atss' assigners "
                         f"only, not by assigner={assigner!r}")
    return dict(options)


def _check_gt_labels(xp: Any, gt_labels: Any, gt_boxes: Any, gt_valid: Any,
                     num_classes: int) -> None:
    check_integer(xp, gt_labels, "gt_labels")
    check_same_shape("gt_boxes.shape[:-1]", gt_boxes.shape[:-1], "gt_labels", gt_labels.shape)
    valid = _check_mask(xp, gt_valid, "gt_valid", gt_labels.shape, "gt_labels.shape")
    _check_labels(xp, gt_labels, valid, num_classes)


def assign(assigner: str, *, anchors: Any, gt_boxes: Any, gt_labels: Any, gt_valid: Any,
           gt_crowd: Any, logits: Any, box_codes: Any, coding: str,
           coder_weights: tuple[float, ...], num_classes: int, options: dict[str, Any],
           levels: Sequence[int] | None, match_options: dict[str, Any], xp: Any
           ) -> DetectionTargets:
    """Run the assigner on a batch; ``anchors`` are the compute-dtype, gradient-free
    ``(A, 4)`` or ``(B, A, 4)`` anchors and ``logits``/``box_codes`` the head's outputs in
    the compute dtype (used, without gradient, by the task-aligned assigner only)."""
    b, a = logits.shape[0], logits.shape[1]
    anchors_b = xp.broadcast_to(anchors, (b, a, 4))
    gts = xp.astype(gt_boxes, anchors.dtype)
    weights = coder_weights if coding == "deltas" else None
    if assigner != "max_iou" and gt_crowd is not None:
        raise ValueError(f"gt_crowd is used by assigner='max_iou' only (crowd regions are "
                         f"ignored there); assigner={assigner!r} has no ignore band: leave "
                         "crowd gts out through gt_valid")
    soft = None
    if assigner == "max_iou":
        matched = match_anchors(anchors, gt_boxes, gt_valid=gt_valid, gt_crowd=gt_crowd,
                                **match_options)
    elif assigner in ("fcos", "atss"):
        run = fcos_assign if assigner == "fcos" else atss_assign
        assert levels is not None  # check_assigner_options requires them for these two
        matched = run(anchors, gt_boxes, num_anchors_per_level=levels, gt_valid=gt_valid,
                      **options)
    else:
        if anchors.ndim != 2:
            raise ValueError("assigner='task_aligned' takes shared (A, 4) anchors (one anchor "
                             f"point per location), got shape {tuple(anchors.shape)}")
        cx, cy, _, _ = _centre_and_size(anchors, xp)
        codes = stop_gradient(xp, box_codes)
        pred = decode_boxes(coding, anchors_b, codes, weights=coder_weights, xp=xp)
        ep, en = exp_pair(stop_gradient(xp, logits), xp=xp)
        scores = ep / (ep + en)  # the sigmoid, without overflow at either end
        out = task_aligned_assign(scores, pred, xp.stack((cx, cy), axis=-1), gt_labels, gts,
                                  gt_valid=gt_valid, **options)
        matched, soft = out["matched"], out["target_scores"]
    if assigner != "task_aligned":  # task_aligned_assign checks the labels itself
        _check_gt_labels(xp, gt_labels, gt_boxes, gt_valid, num_classes)
    t = targets_from_matched(anchors, gts, gt_labels, matched, weights=weights, xp=xp)
    box_targets = t.deltas if coding == "deltas" else xp.where(
        t.positive[..., None], encode_ltrb(anchors_b, t.boxes, xp=xp),
        constant(xp, 0.0, t.boxes))
    return DetectionTargets(t.labels, matched, t.positive, box_targets, t.boxes, soft)
