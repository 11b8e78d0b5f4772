"""Target assignment of the anchor-free and adaptive detectors: FCOS, ATSS and TOOD's
task-aligned assigner, batched, static-shaped and jittable.

The matcher (:mod:`focal_array.matcher`) assigns by a fixed IoU band (RetinaNet, SSD,
Faster R-CNN). The assigners here are those most detectors trained today use:

- :func:`fcos_assign` — FCOS (Tian et al. 2019): a location is a candidate for a gt when
  its centre lies inside the gt and near its centre, and the gt's size fits the location's
  pyramid level; the smallest gt wins. With :func:`centerness_targets` for the centerness
  branch.
- :func:`atss_assign` — ATSS (Zhang et al. 2020): per gt and pyramid level the closest
  anchors are candidates, and the IoU threshold is their mean plus standard deviation.
- :func:`task_aligned_assign` — TOOD (Feng et al. 2021) as YOLOv8 uses it: anchors are
  ranked per gt by the alignment ``s^α · IoU^β`` of the predicted class score and the
  predicted box's IoU; the targets are soft, scaled scores.

Every function takes a padded batch of gts (``gt_valid`` marks the real ones), returns
per-anchor gt indices with :data:`~focal_array.matcher.BACKGROUND` for unassigned
anchors, has static shapes only (no boolean indexing, no data-dependent sizes), and runs
under ``jax.jit``, ``jax.vmap`` and ``torch.compile(fullgraph=True)``; value checks run
eagerly only. The semantics of each, and every difference from torchvision, mmdetection
and ultralytics, are on the function's page.
"""

from __future__ import annotations

from ._assign_atss import atss_assign
from ._assign_fcos import centerness_targets, fcos_assign
from ._assign_tal import task_aligned_assign

__all__ = ["atss_assign", "centerness_targets", "fcos_assign", "task_aligned_assign"]
