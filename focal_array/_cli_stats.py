"""``focal-array inspect``'s work: stream a dataset's images, match each, tally the counts.

Memory stays flat in the number of images: images are matched one at a time as they are
read from the loaded dataset, and what is kept per image is a handful of integers in
preallocated NumPy arrays (plus one count and two flags per annotation), not the match
results. Anchors are built once per distinct input size.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import coco
from .anchors import anchors_per_level, retinanet_anchors
from .losses import binary_cross_entropy, sigmoid_focal_loss
from .matcher import match_anchors

__all__ = ["Backend", "UsageError", "init_loss_shares", "inspect_dataset", "resolve_backend"]

#: Focal-loss settings and prior of the loss-at-initialization estimate (RetinaNet's).
INIT_PRIOR = 0.01
INIT_ALPHA = 0.25
INIT_GAMMA = 2.0
#: Histogram buckets of positives per ground truth: (label, lowest count, highest count).
GT_BUCKETS = (("0", 0, 0), ("1", 1, 1), ("2", 2, 2), ("3-5", 3, 5), ("6-10", 6, 10),
              (">10", 11, math.inf))
#: Per-image percentiles reported for positives, negatives and ignored anchors.
PERCENTILES = (("min", 0), ("p10", 10), ("median", 50), ("p90", 90), ("max", 100))
#: Smallest box-count bucket on JAX (see :func:`_padded_boxes`).
_JAX_MIN_BOXES = 8
#: Input sizes whose anchors are kept at once (least recently used dropped first).
_ANCHOR_CACHE_SIZES = 16
class UsageError(Exception):
    """Bad input the user can fix; ``main`` prints it as one line and exits with 2."""


@dataclass
class Backend:
    """An array library to match on: its Array API namespace and how to get NumPy back."""

    name: str
    xp: Any
    device: Any = None

    def to_numpy(self, x: Any) -> np.ndarray:
        """Copy a result to host NumPy (the statistics are counted there, once per image)."""
        if hasattr(x, "cpu"):  # torch: leave its device first
            x = x.cpu()
        return np.asarray(x)


def resolve_backend(name: str) -> Backend:
    """Import the chosen library (only it) and return its namespace.

    Raises:
        UsageError: the library is not installed.
    """
    if name == "numpy":
        import array_api_compat.numpy as np_xp

        return Backend(name, np_xp)
    hint = f"pip install 'focal-array[{name}]'"
    xp: Any
    try:
        if name == "jax":
            import jax.numpy as jnp

            xp = jnp
        elif name == "torch":
            import array_api_compat.torch as torch_xp

            xp = torch_xp

            # torch itself too: the compat wrapper may be cached while torch is unavailable
            import torch  # noqa: F401
        else:  # argparse's choices keep other names out; this guards direct callers
            raise UsageError(f"unknown backend {name!r} (choose numpy, jax or torch)")
    except ImportError:
        raise UsageError(f"--backend {name} needs {name}, which is not installed "
                         f"({hint})") from None
    return Backend(name, xp)


def _input_size(info: coco.ImageInfo, image_size: tuple[int, int] | None,
                ) -> tuple[tuple[int, int], float]:
    """Network input size (H, W) and box scale of one image.

    Without ``--image-size`` the image goes in at its own size (scale 1). With it, the image
    is resized to fit inside H × W keeping its aspect ratio and placed top-left, the rest
    being padding — what a detector's transform does to build a padded batch.
    """
    if image_size is None:
        return (info.height, info.width), 1.0
    h, w = image_size
    return (h, w), min(h / info.height, w / info.width)


def _stream(ds: coco.CocoDataset, image_size: tuple[int, int] | None,
            ) -> Iterator[tuple[coco.ImageAnnotations, tuple[int, int], float]]:
    # one image at a time, in file order: nothing per image is built ahead of its turn
    for info in ds.images:
        size, scale = _input_size(info, image_size)
        yield ds.annotations(info.id), size, scale


class _Anchors:
    """One input size's anchors: float32 NumPy (to take rows from) and on the backend.

    Also, per pyramid level and anchor shape, the extent of each grid column and row (the
    smallest x1 and largest x2 of that shape's anchors in a column, likewise for rows),
    from which :meth:`overlapping` finds the anchors a set of boxes can touch without an
    IoU matrix.
    """

    def __init__(self, size: tuple[int, int], backend: Backend) -> None:
        # built in NumPy and transferred: eager JAX would compile each of the grid's small
        # ops separately (~2 s per size); the float32 values are identical
        self.host = retinanet_anchors(size, dtype=np.float32)
        self.array = backend.xp.asarray(self.host, device=backend.device)
        self.count = int(self.host.shape[0])
        self.levels = []
        start = 0
        for grid in anchors_per_level(size):
            # anchors.py's documented order: level, row y, column x, anchor of the location
            a = self.host[start:start + grid.num_anchors].reshape(*grid, 4)
            # (K, 1, W_l) column extents and (K, 1, H_l) row extents, each shape on its own
            cols, rows = a.min(axis=0), a.max(axis=1)  # (W_l, K, 4), (H_l, K, 4)
            cols_max, rows_min = a.max(axis=0), a.min(axis=1)
            self.levels.append((cols[..., 0].T[:, None], cols_max[..., 2].T[:, None],
                                rows_min[..., 1].T[:, None], rows[..., 3].T[:, None]))
            start += grid.num_anchors

    def overlapping(self, boxes: np.ndarray) -> np.ndarray:
        """Indices of a superset of the anchors that intersect any of ``boxes`` (float32).

        An anchor meets a box with positive area only if the extent of its shape's anchors
        in its column meets the box's x range, and likewise in its row for y; every other
        anchor has IoU and IoA exactly 0 with every box. Same float32 values and strict
        comparisons as the matcher's intersection, so no anchor with a nonzero IoU is ever
        left out.
        """
        x1, y1, x2, y2 = (boxes[None, :, i, None] for i in range(4))  # (1, n, 1)
        cells = []
        for col_x1, col_x2, row_y1, row_y2 in self.levels:
            cols = ((col_x2 > x1) & (col_x1 < x2)).astype(np.float32)  # (K, n, W_l)
            rows = ((row_y2 > y1) & (row_y1 < y2)).astype(np.float32)  # (K, n, H_l)
            # (H_l, W_l, K), the anchors' own order: > 0 where a box spans row and column;
            # one 2-D product per shape beats NumPy's stacked matmul of small matrices
            hit = np.stack([r.T @ c for r, c in zip(rows, cols, strict=True)], axis=-1)
            cells.append(hit.ravel() > 0)
        return np.flatnonzero(np.concatenate(cells))


def _padded_boxes(n: int, backend: Backend) -> int:
    """Box slots to give the matcher for ``n`` boxes.

    Eager NumPy and PyTorch get exactly ``n``: the IoU matrix costs A × slots, so padding
    every image to the file's largest count (often 60+, against a mean of 7) would multiply
    the work. JAX compiles once per shape, so there the count is rounded up to a power of
    two: a handful of compilations per size, not one per box count. Padding never matches,
    so the counts are the same either way.
    """
    if backend.name != "jax":
        return n
    return max(_JAX_MIN_BOXES, 1 << (n - 1).bit_length())


def match_image(ann: coco.ImageAnnotations, anchors: _Anchors, backend: Backend, *,
                scale: float, high: float, low: float, tie_rule: str = "equal",
                ) -> tuple[int, int, np.ndarray, np.ndarray]:
    """Match one image's boxes to its anchors, with and without low-quality matches.

    Returns ``(negatives, ignored, per_gt, per_gt_strict)``: the per-gt arrays count the
    positives each of the image's ``n`` boxes owns with the low-quality rule and without it
    (crowd boxes own none). The counts are those of ``match_anchors`` on all anchors, but
    less is handed to it:

    * An image without boxes is all negatives, without a call.
    * With ``low > 0`` only the anchors that touch a box are matched
      (:meth:`_Anchors.overlapping`): every other anchor has IoU 0 with every gt, so it is
      BACKGROUND; it owns no crowd overlap; and it cannot be a low-quality match (a gt
      claims only anchors at (or, ``tie_rule="rounding"``, within a rounding of) its
      best IoU, and a gt whose best is 0 claims none). Each
      anchor's match depends on its own IoU row and on each gt's best IoU, which the
      touching anchors all contain, so they match exactly as among all anchors.
    * Without the low-quality rule an anchor's match depends on its own IoU row alone, and
      every anchor positive without the rule (IoU >= high with its best gt) is positive
      with it, for that same gt. So the strict pass runs on the positives only.

    On JAX, where each new shape compiles, both passes run on all anchors instead.
    """
    xp, device = backend.xp, backend.device
    n = len(ann)
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return anchors.count, 0, empty, empty
    slots = _padded_boxes(n, backend)
    boxes = np.zeros((slots, 4), dtype=np.float32)
    boxes[:n] = ann.boxes if scale == 1.0 else ann.boxes * scale
    options: dict[str, Any] = {"high": high, "low": low, "tie_rule": tie_rule}
    if slots > n:
        valid = np.zeros(slots, dtype=bool)
        valid[:n] = True
        options["gt_valid"] = xp.asarray(valid, device=device)
    if ann.crowd.any():  # no crowd box: the crowd rule cannot ignore anything
        crowd = np.zeros(slots, dtype=bool)
        crowd[:n] = ann.crowd
        options["gt_crowd"] = xp.asarray(crowd, device=device)
    gt = xp.asarray(boxes, device=device)

    eager = backend.name != "jax"
    if eager and low > 0:
        touching = anchors.overlapping(boxes[:n])
        if touching.size == 0:
            zeros = np.zeros(n, dtype=np.int64)
            return anchors.count, 0, zeros, zeros
        rows = xp.asarray(anchors.host[touching], device=device)
    else:
        rows, touching = anchors.array, None
    matched = backend.to_numpy(match_anchors(rows, gt, **options))
    # one pass: IGNORE (-2) -> bin 0, BACKGROUND (-1) -> bin 1, gt g -> bin g + 2
    counts = np.bincount(matched + 2, minlength=slots + 2)
    ignored, per_gt = int(counts[0]), counts[2:2 + n]
    negatives = int(counts[1]) + anchors.count - matched.shape[0]  # + untouched anchors

    if eager:
        positive = np.flatnonzero(matched >= 0)
        if positive.size == 0:
            return negatives, ignored, per_gt, np.zeros(n, dtype=np.int64)
        if touching is not None:
            positive = touching[positive]
        rows = xp.asarray(anchors.host[positive], device=device)
    strict = backend.to_numpy(match_anchors(rows, gt, allow_low_quality_matches=False,
                                            **options))
    per_gt_strict = np.bincount(strict[strict >= 0], minlength=slots)[:n]
    return negatives, ignored, per_gt, per_gt_strict


class _Tally:
    """The per-image and per-annotation counts the report needs, in preallocated arrays."""

    def __init__(self, num_images: int, num_annotations: int) -> None:
        self.anchors = np.zeros(num_images, dtype=np.int64)
        self.negatives = np.zeros(num_images, dtype=np.int64)
        self.ignored = np.zeros(num_images, dtype=np.int64)
        self.scale = np.ones(num_images, dtype=np.float64)
        self.offsets = np.zeros(num_images + 1, dtype=np.int64)  # image k: [o[k], o[k+1])
        self.per_gt = np.zeros(num_annotations, dtype=np.int64)
        self.strict_positive = np.zeros(num_annotations, dtype=bool)
        self.crowd = np.zeros(num_annotations, dtype=bool)
        self.annotation_ids = np.zeros(num_annotations, dtype=np.int64)

    def add(self, k: int, ann: coco.ImageAnnotations, anchors: int, scale: float,
            result: tuple[int, int, np.ndarray, np.ndarray]) -> None:
        negatives, ignored, per_gt, per_gt_strict = result
        lo = int(self.offsets[k])
        hi = lo + len(ann)
        self.offsets[k + 1] = hi
        self.anchors[k], self.negatives[k], self.ignored[k] = anchors, negatives, ignored
        self.scale[k] = scale
        self.per_gt[lo:hi] = per_gt
        self.strict_positive[lo:hi] = per_gt_strict > 0
        self.crowd[lo:hi] = ann.crowd
        self.annotation_ids[lo:hi] = ann.annotation_ids

    @property
    def positives(self) -> np.ndarray:
        return self.anchors - self.negatives - self.ignored

    def per_image_gts(self) -> tuple[np.ndarray, np.ndarray]:
        """Non-crowd gts and crowd regions of each image."""
        cum = np.concatenate([[0], np.cumsum(self.crowd, dtype=np.int64)])
        crowd = cum[self.offsets[1:]] - cum[self.offsets[:-1]]
        return np.diff(self.offsets) - crowd, crowd


def init_loss_shares(positives: int, negatives: int, num_classes: int, *,
                     prior: float = INIT_PRIOR, alpha: float = INIT_ALPHA,
                     gamma: float = INIT_GAMMA) -> dict[str, Any]:
    """Classification loss at initialization, split into positive and negative anchors.

    RetinaNet initializes the last bias so every class logit is b = −log((1 − π) / π), i.e.
    σ(b) = π for every anchor and class. A positive anchor then has one element with target
    1 (p_t = π, hard) and C − 1 with target 0 (p_t = 1 − π, easy); a negative (background)
    anchor has C elements with target 0, all easy. Ignored anchors carry no loss. Each
    distinct element value is computed once with the library's sigmoid functions and
    multiplied by its count, which is exact because every logit is the same.

    Args:
        positives: number of positive anchors (all images).
        negatives: number of background anchors (all images).
        num_classes: C, the number of sigmoid outputs per anchor.
        prior: π, in (0, 1).
        alpha, gamma: the focal loss's parameters (CE is unweighted, α = None).

    Returns:
        A JSON-ready dict: the prior, the logit, C, the per-element values, and for ``"ce"``
        and ``"fl"`` the positives' and negatives' summed loss, the negatives' share of the
        total (None when nothing is assigned) and the total per positive anchor (None
        without positives).
    """
    logit = -math.log((1.0 - prior) / prior)
    x = np.full(2, logit, dtype=np.float64)
    y = np.asarray([1.0, 0.0])  # a positive element, a negative element
    values = {"ce": binary_cross_entropy(x, y),
              "fl": sigmoid_focal_loss(x, y, alpha=alpha, gamma=gamma)}
    result: dict[str, Any] = {"prior": prior, "logit": logit, "classes": num_classes,
                              "alpha": alpha, "gamma": gamma}
    for name, v in values.items():
        pos_el, neg_el = float(v[0]), float(v[1])
        pos = positives * (pos_el + (num_classes - 1) * neg_el)
        neg = negatives * num_classes * neg_el
        total = pos + neg
        result[name] = {
            "element_positive": pos_el, "element_negative": neg_el,
            "positives_loss": pos, "negatives_loss": neg,
            "negative_share": neg / total if total > 0 else None,
            "loss_per_positive": total / positives if positives > 0 else None,
        }
    return result


def _percentiles(values: np.ndarray) -> dict[str, float] | None:
    if values.size == 0:
        return None
    arr = values.astype(np.float64)
    return {name: float(np.percentile(arr, q)) for name, q in PERCENTILES}


def _histogram(counts: np.ndarray) -> dict[str, int]:
    return {label: int(((counts >= lo) & (counts <= hi)).sum()) for label, lo, hi in GT_BUCKETS}


def inspect_dataset(ds: coco.CocoDataset, *, backend: Backend,
                    image_size: tuple[int, int] | None, high: float, low: float,
                    tie_rule: str = "equal", progress: Any = None,
                    per_image: bool = True) -> dict[str, Any]:
    """Match every image of ``ds`` and gather the report (the ``--json`` object).

    Args:
        ds: a loaded COCO dataset.
        backend: the array library to match on (:func:`resolve_backend`).
        image_size: ``(H, W)`` network input for every image, or None for each image's own
            size.
        high, low: the matcher's thresholds.
        tie_rule: the low-quality tie rule (``"equal"`` or ``"rounding"``, see
            :func:`~focal_array.matcher.match`).
        progress: optional object with ``update(done)`` and ``close()`` (a
            :class:`~focal_array._cli_progress.Progress`), updated after each image.
        per_image: include the ``per_image`` list (one entry per image); None in its place
            otherwise, which the text report of a large file does not need.

    Returns:
        The report dict described in ``docs/cli.md``.
    """
    start = time.perf_counter()
    tally = _Tally(len(ds), ds.num_annotations)
    # a few recent sizes only: real files have thousands of distinct native sizes, and
    # keeping every anchor set (~1 MB each) would grow with the file
    anchor_cache: OrderedDict[tuple[int, int], _Anchors] = OrderedDict()
    sizes: dict[tuple[int, int], tuple[int, int]] = {}  # size -> (anchors, images)
    try:
        for k, (ann, size, scale) in enumerate(_stream(ds, image_size)):
            anchors = anchor_cache.get(size)
            if anchors is None:
                anchors = anchor_cache[size] = _Anchors(size, backend)
                if len(anchor_cache) > _ANCHOR_CACHE_SIZES:
                    anchor_cache.popitem(last=False)
            else:
                anchor_cache.move_to_end(size)
            count, n = sizes.get(size, (anchors.count, 0))
            sizes[size] = (count, n + 1)
            result = match_image(ann, anchors, backend, scale=scale, high=high, low=low,
                                 tie_rule=tie_rule)
            tally.add(k, ann, anchors.count, scale, result)
            if progress is not None:
                progress.update(k + 1)
    finally:
        if progress is not None:
            progress.close()
    seconds = time.perf_counter() - start
    return _report(ds, tally, sizes, backend=backend, image_size=image_size, high=high,
                   low=low, tie_rule=tie_rule, seconds=seconds, per_image=per_image)


def _report(ds: coco.CocoDataset, tally: _Tally,
            sizes: dict[tuple[int, int], tuple[int, int]], *,
            backend: Backend, image_size: tuple[int, int] | None, high: float, low: float,
            tie_rule: str, seconds: float, per_image: bool) -> dict[str, Any]:
    real = ~tally.crowd
    per_gt = tally.per_gt[real]
    rescued = tally.annotation_ids[real & (tally.per_gt > 0) & ~tally.strict_positive]
    unmatched = tally.annotation_ids[real & (tally.per_gt == 0)]
    positives = tally.positives
    gts, crowd_gts = tally.per_image_gts()
    totals = {"anchors": int(tally.anchors.sum()), "positives": int(positives.sum()),
              "negatives": int(tally.negatives.sum()), "ignored": int(tally.ignored.sum())}
    per_counts = {"positives": positives, "negatives": tally.negatives,
                  "ignored": tally.ignored}
    return {
        "source": ds.source,
        "backend": backend.name,
        "high": high,
        "low": low,
        "allow_low_quality_matches": True,
        "tie_rule": tie_rule,
        "crowd_ioa": 0.5,
        "image_size": list(image_size) if image_size else None,
        "images": len(ds),
        "images_without_boxes": int(((gts + crowd_gts) == 0).sum()),
        "classes": ds.num_classes,
        "class_names": list(ds.class_names),
        "gts": int(gts.sum()),
        "crowd_gts": int(crowd_gts.sum()),
        "dropped_boxes": {"count": len(ds.dropped),
                          "annotation_ids": [d.annotation_id for d in ds.dropped],
                          "reasons": [d.reason for d in ds.dropped]},
        "anchors_per_image": [
            {"height": h, "width": w, "anchors": count, "images": n}
            for (h, w), (count, n) in sizes.items()],
        "totals": totals,
        "per_image_percentiles": {k: _percentiles(v) for k, v in per_counts.items()},
        "positives_per_gt": _histogram(per_gt),
        "rescued_gts": {"count": int(rescued.size), "annotation_ids": rescued.tolist()},
        "unmatched_gts": {"count": int(unmatched.size), "annotation_ids": unmatched.tolist()},
        "negatives_per_positive": (totals["negatives"] / totals["positives"]
                                   if totals["positives"] else None),
        "loss_at_init": init_loss_shares(totals["positives"], totals["negatives"],
                                         ds.num_classes),
        "per_image": _per_image(ds, tally, gts, crowd_gts) if per_image else None,
        "seconds": seconds,
    }


def _per_image(ds: coco.CocoDataset, tally: _Tally, gts: np.ndarray,
               crowd_gts: np.ndarray) -> list[dict[str, Any]]:
    positives = tally.positives
    rows = []
    for k, info in enumerate(ds.images):
        lo, hi = int(tally.offsets[k]), int(tally.offsets[k + 1])
        real = ~tally.crowd[lo:hi]
        per_gt, ids = tally.per_gt[lo:hi], tally.annotation_ids[lo:hi]
        rows.append({
            "id": info.id, "file_name": info.file_name, "height": info.height,
            "width": info.width, "scale": float(tally.scale[k]),
            "anchors": int(tally.anchors[k]), "gts": int(gts[k]),
            "crowd_gts": int(crowd_gts[k]), "positives": int(positives[k]),
            "negatives": int(tally.negatives[k]), "ignored": int(tally.ignored[k]),
            "positives_per_gt": per_gt[real].tolist(),
            "rescued_gts": ids[real & (per_gt > 0)
                               & ~tally.strict_positive[lo:hi]].tolist(),
            "unmatched_gts": ids[real & (per_gt == 0)].tolist(),
        })
    return rows
