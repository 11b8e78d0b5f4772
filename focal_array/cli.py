"""The ``focal-array`` command: ``explain`` the focal loss, ``inspect`` a COCO file's matching.

``focal-array explain`` prints the seed note's worked example (CE and FL of one positive and
one negative anchor) and a table of FL/CE against p_t and γ; ``--plot`` draws the curves.

``focal-array inspect [COCO.json]`` builds RetinaNet anchors for every image, matches the
image's boxes to them and reports how many anchors are positive, negative and ignored, how
many positives each ground truth gets, which ground truths only the low-quality rule saves
or nothing saves, and how much of the classification loss at initialization the easy
negatives carry under cross-entropy and under focal loss. Without a path it runs on the
sample shipped in the package. ``docs/cli.md`` explains every line and the ``--json`` schema.

Exit codes: 0 success, 2 bad input (missing file, invalid JSON, malformed COCO, bad option
value, backend or matplotlib not installed), 1 stdout closed early (``| head``),
130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np

from . import __version__, coco
from .anchors import anchors_per_level, retinanet_anchors
from .losses import (
    binary_cross_entropy,
    sigmoid_focal_loss,
    softmax_cross_entropy,
    softmax_focal_loss,
)
from .matcher import match_anchors

__all__ = ["main"]

PROG = "focal-array"
#: p_t values and γ values of the FL/CE table (the paper's Fig. 1 γ's, and the p_t at which
#: γ = 2 divides the loss by 4, 100, ~1000 and 10,000).
TABLE_PT = (0.5, 0.9, 0.968, 0.99)
TABLE_GAMMAS = (0.0, 0.5, 1.0, 2.0, 5.0)
#: Focal-loss settings and prior of the loss-at-initialization estimate (RetinaNet's).
INIT_PRIOR = 0.01
INIT_ALPHA = 0.25
INIT_GAMMA = 2.0
#: Histogram buckets of positives per ground truth: (label, lowest count, highest count).
GT_BUCKETS = (("0", 0, 0), ("1", 1, 1), ("2", 2, 2), ("3-5", 3, 5), ("6-10", 6, 10),
              (">10", 11, math.inf))
#: Per-image percentiles reported for positives, negatives and ignored anchors.
PERCENTILES = (("min", 0), ("p10", 10), ("median", 50), ("p90", 90), ("max", 100))
#: The progress counter appears for more images than this (and only on a terminal).
PROGRESS_MIN_IMAGES = 5
#: Per-image rows are printed in the text report up to this many images (always in JSON).
PER_IMAGE_ROWS_MAX = 10


class UsageError(Exception):
    """Bad input the user can fix; ``main`` prints it as one line and exits with 2."""


# ============================================================================ explain


def _worked_example(alpha: float | None, gamma: float) -> list[dict[str, Any]]:
    """The seed note's two anchors, with CE and FL from the library's softmax functions."""
    probs = np.asarray([[0.1, 0.9], [0.8, 0.2]])  # [P(background), P(person)]
    labels = np.asarray([1, 0])  # the first anchor is a person, the second background
    ce = softmax_cross_entropy(probs, labels, from_logits=False)
    fl = softmax_focal_loss(probs, labels, alpha=alpha, gamma=gamma, from_logits=False)
    rows = []
    for i, (name, cls) in enumerate((("positive", "person"), ("negative", "background"))):
        alpha_t = None if alpha is None else (alpha if labels[i] >= 1 else 1.0 - alpha)
        rows.append({"anchor": name, "true_class": cls, "probabilities": probs[i].tolist(),
                     "p_t": float(probs[i, labels[i]]), "alpha_t": alpha_t,
                     "ce": float(ce[i]), "fl": float(fl[i]), "ratio": float(fl[i] / ce[i])})
    return rows


def _ratio_table(p_t: Sequence[float], gammas: Sequence[float], alpha_t: float | None,
                 ) -> np.ndarray:
    """FL/CE for each (p_t, γ) from the library's sigmoid losses, float64.

    ``alpha_t`` None gives the bare modulating factor (1 − p_t)^γ; otherwise the focal loss
    is α-balanced for a positive (α_t = α) while CE is not, so the ratio is α_t (1 − p_t)^γ.
    The probability of the true class is fed as a positive (target 1); α_t is applied by
    choosing alpha = α_t, which is the positive's weight.
    """
    p = np.asarray(p_t, dtype=np.float64)[:, None] * np.ones((1, len(gammas)))
    ones = np.ones_like(p)
    ce = binary_cross_entropy(p, ones, from_logits=False)
    out = np.empty_like(p)
    for j, g in enumerate(gammas):
        fl = sigmoid_focal_loss(p[:, j], ones[:, j], alpha=alpha_t, gamma=g, from_logits=False)
        out[:, j] = fl / ce[:, j]
    return out


def _fmt(x: float, digits: int = 4) -> str:
    """Numbers as a person writes them: 4 significant digits, no trailing zeros."""
    if x == 0:
        return "0"
    return f"{x:.{digits}g}"


def _gamma_label(g: float) -> str:
    return f"γ={_fmt(g)}"


def _print_table(out: TextIO, title: str, table: np.ndarray, gammas: Sequence[float]) -> None:
    print(title, file=out)
    header = "  p_t    " + "".join(f"{_gamma_label(g):>11}" for g in gammas)
    print(header, file=out)
    for i, pt in enumerate(TABLE_PT):
        print(f"  {_fmt(pt):<7}" + "".join(f"{_fmt(v):>11}" for v in table[i]), file=out)


def _plot(path: str, gammas: Sequence[float], alpha: float | None) -> None:
    """Loss against p_t for each γ (the paper's Fig. 1), written to ``path``."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display is needed or wanted
    import matplotlib.pyplot as plt

    p = np.linspace(0.001, 1.0, 500)
    ones = np.ones_like(p)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for g in gammas:
        loss = sigmoid_focal_loss(p, ones, alpha=alpha, gamma=g, from_logits=False)
        label = f"γ = {_fmt(g)}" + (" (CE)" if g == 0 and alpha is None else "")
        ax.plot(p, loss, label=label)
    ax.set_xlabel("probability of the true class, $p_t$")
    ax.set_ylabel("loss")
    what = "$-(1-p_t)^\\gamma \\log p_t$" if alpha is None else \
        f"$-\\alpha (1-p_t)^\\gamma \\log p_t$, α = {_fmt(alpha)}"
    ax.set_title(f"Focal loss {what}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 5)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    try:
        fig.savefig(path)
    except (OSError, ValueError) as exc:
        # an unwritable path or an unknown extension is the user's to fix
        raise UsageError(f"cannot write plot {path}: {exc}") from None
    finally:
        plt.close(fig)


def cmd_explain(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``focal-array explain``: worked example, FL/CE table(s), optional plot."""
    if args.plot is not None:
        # fail before printing anything, so a missing extra is one clear line
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise UsageError("--plot needs matplotlib, which is not installed "
                             "(pip install 'focal-array[plot]')") from None
    alpha_given = args.alpha is not None
    alpha = args.alpha if alpha_given else 0.25
    gamma = args.gamma
    gammas = sorted({*TABLE_GAMMAS, gamma})

    print(f"Focal loss vs cross-entropy: the seed note's worked example "
          f"(α = {_fmt(alpha)}, γ = {_fmt(gamma)})", file=out)
    print("probabilities are [P(background), P(person)]; CE = −log p_t, "
          "FL = −α_t (1 − p_t)^γ log p_t, α_t = α for a positive, 1 − α for a negative",
          file=out)
    print(file=out)
    print(f"  {'anchor':<10}{'true class':<12}{'probabilities':<15}{'p_t':>6}{'α_t':>7}"
          f"{'CE':>10}{'FL':>12}{'FL/CE':>10}", file=out)
    for r in _worked_example(alpha, gamma):
        probs = "[" + ", ".join(_fmt(p) for p in r["probabilities"]) + "]"
        print(f"  {r['anchor']:<10}{r['true_class']:<12}{probs:<15}{_fmt(r['p_t']):>6}"
              f"{_fmt(r['alpha_t']):>7}{_fmt(r['ce']):>10}{_fmt(r['fl']):>12}"
              f"{_fmt(r['ratio']):>10}", file=out)
    print(file=out)

    if not alpha_given:
        _print_table(out, "FL/CE = (1 − p_t)^γ: the modulating factor alone, α NOT applied "
                          "(pass --alpha to include α_t)",
                     _ratio_table(TABLE_PT, gammas, None), gammas)
    else:
        _print_table(out, f"FL/CE = α_t (1 − p_t)^γ, α APPLIED: positive, "
                          f"α_t = α = {_fmt(alpha)}",
                     _ratio_table(TABLE_PT, gammas, alpha), gammas)
        print(file=out)
        _print_table(out, f"FL/CE = α_t (1 − p_t)^γ, α APPLIED: negative, "
                          f"α_t = 1 − α = {_fmt(1.0 - alpha)}",
                     _ratio_table(TABLE_PT, gammas, 1.0 - alpha), gammas)
    print(file=out)
    print("With γ = 2 an example at p_t = 0.9 costs 100× less than under CE and one at "
          "p_t ≈ 0.968 about 1000× less (Lin et al. 2017, §3.2): the many easy background "
          "anchors stop dominating the loss.", file=out)

    if args.plot is not None:
        _plot(args.plot, gammas, alpha if alpha_given else None)
        print(f"wrote {args.plot}", file=out)
    return 0


# ============================================================================ inspect


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
        import array_api_compat.numpy as xp

        return Backend(name, xp)
    hint = f"pip install 'focal-array[{name}]'"
    try:
        if name == "jax":
            import jax.numpy as xp
        elif name == "torch":
            import array_api_compat.torch as xp

            # torch itself too: the compat wrapper may be cached while torch is unavailable
            import torch  # noqa: F401
        else:  # argparse's choices keep other names out; this guards direct callers
            raise UsageError(f"unknown backend {name!r} (choose numpy, jax or torch)")
    except ImportError:
        raise UsageError(f"--backend {name} needs {name}, which is not installed "
                         f"({hint})") from None
    return Backend(name, xp)


class Progress:
    """A one-line ``\\r`` counter on a terminal's stderr; silent elsewhere.

    Silent when the stream is not a terminal (a log file, a pipe, a test's capture) or the
    job is small, so it never mixes into redirected output — stdout (``--json``) is never
    written to.
    """

    def __init__(self, total: int, stream: TextIO | None = None, *,
                 enabled: bool | None = None, label: str = "matching images") -> None:
        self.total = total
        self.stream = sys.stderr if stream is None else stream
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            enabled = bool(isatty and isatty()) and total > PROGRESS_MIN_IMAGES
        self.enabled = enabled
        self.label = label
        self._last = 0.0
        self._width = 0

    def update(self, done: int) -> None:
        """Show ``done/total``; redraws at most ~10 times a second (and at the end)."""
        if not self.enabled:
            return
        now = time.monotonic()
        if done < self.total and now - self._last < 0.1:
            return
        self._last = now
        text = f"\r{self.label}: {done}/{self.total}"
        self._width = max(self._width, len(text))
        self.stream.write(text)
        self.stream.flush()

    def close(self) -> None:
        """Erase the counter line so the report starts on a clean line."""
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()


@dataclass
class ImageStats:
    """Matching results of one image (counts only; the arrays are not kept)."""

    id: int
    file_name: str
    height: int
    width: int
    scale: float
    anchors: int
    gts: int
    crowd_gts: int
    positives: int
    negatives: int
    ignored: int
    positives_per_gt: list[int] = field(default_factory=list)
    rescued_ids: list[int] = field(default_factory=list)
    unmatched_ids: list[int] = field(default_factory=list)


def _input_size(info: coco.ImageInfo, image_size: tuple[int, int] | None,
                ) -> tuple[tuple[int, int], float]:
    """Network input size and box scale of one image.

    Without ``--image-size`` the image goes in at its own size (scale 1). With it, the image
    is resized to fit inside H × W keeping its aspect ratio and placed top-left, the rest
    being padding — what a detector's transform does to build a padded batch.
    """
    if image_size is None:
        return (info.height, info.width), 1.0
    h, w = image_size
    return (h, w), min(h / info.height, w / info.width)


def match_image(info: coco.ImageInfo, ann: coco.ImageAnnotations, anchors: Any,
                backend: Backend, *, scale: float, pad_to: int, high: float,
                low: float) -> ImageStats:
    """Match one image's boxes to its anchors, with and without low-quality matches.

    The boxes are padded to ``pad_to`` rows (``gt_valid`` False) so that every image of one
    size has the same shapes: JAX then compiles the matcher once per size, not per box
    count. Crowd boxes go in with ``gt_crowd``; they are never matched and are left out of
    the per-gt statistics.
    """
    xp = backend.xp
    n = len(ann)
    boxes = np.zeros((pad_to, 4), dtype=np.float32)
    boxes[:n] = ann.boxes * scale
    valid = np.zeros(pad_to, dtype=bool)
    valid[:n] = True
    crowd = np.zeros(pad_to, dtype=bool)
    crowd[:n] = ann.crowd
    gt = xp.asarray(boxes, device=backend.device)
    gt_valid = xp.asarray(valid, device=backend.device)
    gt_crowd = xp.asarray(crowd, device=backend.device)
    options = {"gt_valid": gt_valid, "gt_crowd": gt_crowd, "high": high, "low": low}
    matched = backend.to_numpy(match_anchors(anchors, gt, **options))
    # the second pass tells which gts own positives only thanks to the low-quality rule
    strict = backend.to_numpy(match_anchors(anchors, gt, allow_low_quality_matches=False,
                                            **options))

    per_gt = np.bincount(matched[matched >= 0], minlength=pad_to)[:n]
    per_gt_strict = np.bincount(strict[strict >= 0], minlength=pad_to)[:n]
    real = ~ann.crowd
    ids = ann.annotation_ids
    return ImageStats(
        id=info.id, file_name=info.file_name, height=info.height, width=info.width,
        scale=scale, anchors=int(matched.shape[0]), gts=int(real.sum()),
        crowd_gts=int(ann.crowd.sum()),
        positives=int((matched >= 0).sum()),
        negatives=int((matched == -1).sum()),
        ignored=int((matched == -2).sum()),
        positives_per_gt=per_gt[real].tolist(),
        rescued_ids=ids[real & (per_gt > 0) & (per_gt_strict == 0)].tolist(),
        unmatched_ids=ids[real & (per_gt == 0)].tolist(),
    )


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


def _percentiles(values: Sequence[int]) -> dict[str, float] | None:
    if not values:
        return None
    arr = np.asarray(values, dtype=np.float64)
    return {name: float(np.percentile(arr, q)) for name, q in PERCENTILES}


def _histogram(counts: Sequence[int]) -> dict[str, int]:
    return {label: sum(1 for c in counts if lo <= c <= hi) for label, lo, hi in GT_BUCKETS}


def inspect_dataset(ds: coco.CocoDataset, *, backend: Backend,
                    image_size: tuple[int, int] | None, high: float, low: float,
                    progress: Progress | None = None) -> dict[str, Any]:
    """Match every image of ``ds`` and gather the report (the ``--json`` object).

    Args:
        ds: a loaded COCO dataset.
        backend: the array library to match on (:func:`resolve_backend`).
        image_size: ``(H, W)`` network input for every image, or None for each image's own
            size.
        high, low: the matcher's thresholds.
        progress: optional counter updated after each image.

    Returns:
        The report dict described in ``docs/cli.md``.
    """
    start = time.perf_counter()
    pad_to = max(ds.max_boxes, 1)
    anchor_cache: dict[tuple[int, int], Any] = {}
    stats: list[ImageStats] = []
    for done, image_id in enumerate(ds.image_ids, start=1):
        info = ds.image(image_id)
        size, scale = _input_size(info, image_size)
        if size not in anchor_cache:  # images of one size share their anchors
            # built in NumPy and transferred: eager JAX would compile each of the grid's
            # small ops separately (~2 s per size); the float32 values are identical
            anchors = retinanet_anchors(size, dtype=np.float32)
            anchor_cache[size] = backend.xp.asarray(anchors, device=backend.device)
        stats.append(match_image(info, ds.annotations(image_id), anchor_cache[size], backend,
                                 scale=scale, pad_to=pad_to, high=high, low=low))
        if progress is not None:
            progress.update(done)
    if progress is not None:
        progress.close()
    seconds = time.perf_counter() - start

    sizes: dict[tuple[int, int], int] = {}
    for s in stats:
        key = image_size or (s.height, s.width)
        sizes[key] = sizes.get(key, 0) + 1
    per_gt = [c for s in stats for c in s.positives_per_gt]
    totals = {k: sum(getattr(s, k) for s in stats)
              for k in ("anchors", "positives", "negatives", "ignored")}
    rescued = [i for s in stats for i in s.rescued_ids]
    unmatched = [i for s in stats for i in s.unmatched_ids]
    return {
        "source": ds.source,
        "backend": backend.name,
        "high": high,
        "low": low,
        "allow_low_quality_matches": True,
        "crowd_ioa": 0.5,
        "image_size": list(image_size) if image_size else None,
        "images": len(stats),
        "images_without_boxes": sum(1 for s in stats if s.gts + s.crowd_gts == 0),
        "classes": ds.num_classes,
        "class_names": list(ds.class_names),
        "gts": sum(s.gts for s in stats),
        "crowd_gts": sum(s.crowd_gts for s in stats),
        "dropped_boxes": {"count": len(ds.dropped),
                          "annotation_ids": [d.annotation_id for d in ds.dropped],
                          "reasons": [d.reason for d in ds.dropped]},
        "anchors_per_image": [
            {"height": h, "width": w, "anchors": _anchor_count((h, w)), "images": n}
            for (h, w), n in sizes.items()],
        "totals": totals,
        "per_image_percentiles": {k: _percentiles([getattr(s, k) for s in stats])
                                  for k in ("positives", "negatives", "ignored")},
        "positives_per_gt": _histogram(per_gt),
        "rescued_gts": {"count": len(rescued), "annotation_ids": rescued},
        "unmatched_gts": {"count": len(unmatched), "annotation_ids": unmatched},
        "negatives_per_positive": (totals["negatives"] / totals["positives"]
                                   if totals["positives"] else None),
        "loss_at_init": init_loss_shares(totals["positives"], totals["negatives"],
                                         ds.num_classes),
        "per_image": [
            {"id": s.id, "file_name": s.file_name, "height": s.height, "width": s.width,
             "scale": s.scale, "anchors": s.anchors, "gts": s.gts, "crowd_gts": s.crowd_gts,
             "positives": s.positives, "negatives": s.negatives, "ignored": s.ignored,
             "positives_per_gt": s.positives_per_gt, "rescued_gts": s.rescued_ids,
             "unmatched_gts": s.unmatched_ids}
            for s in stats],
        "seconds": seconds,
    }


def _anchor_count(size: tuple[int, int]) -> int:
    return sum(g.num_anchors for g in anchors_per_level(size))


def _n(x: float) -> str:
    """Counts with thousands separators; interpolated percentiles keep one decimal."""
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.1f}"


def _pct(share: float | None) -> str:
    if share is None:
        return "n/a"
    return f"{100 * share:.3g} %" if share >= 0.001 else f"{100 * share:.2g} %"


def _ids(ids: Sequence[int], limit: int = 10) -> str:
    if not ids:
        return ""
    shown = ", ".join(str(i) for i in ids[:limit])
    more = f" and {len(ids) - limit} more" if len(ids) > limit else ""
    return f" (annotation ids {shown}{more})"


def print_report(r: dict[str, Any], out: TextIO) -> None:
    """The human-readable ``inspect`` report (see ``docs/cli.md`` for each line)."""
    def line(label: str, text: str) -> None:
        """One report line: a fixed-width label column, then the value."""
        print(f"{label:<34}{text}", file=out)

    print(f"focal-array inspect: {r['source']}", file=out)
    without = r["images_without_boxes"]
    line("images", f"{r['images']} ({without} without boxes)")
    line("classes", f"{r['classes']} ({', '.join(r['class_names'])})")
    line("ground-truth boxes", f"{r['gts']} + {r['crowd_gts']} crowd regions (never matched)")
    d = r["dropped_boxes"]
    line("dropped degenerate boxes", f"{d['count']}" + _ids(d["annotation_ids"]))
    lq = "low-quality matches on" if r["allow_low_quality_matches"] else "no low-quality"
    line("matching", f"IoU >= {_fmt(r['high'])} positive, < {_fmt(r['low'])} negative, "
                     f"between ignored; {lq}")
    line("", f"inside a crowd region (IoA >= {_fmt(r['crowd_ioa'])}) ignored; "
             f"backend {r['backend']}")
    if r["image_size"] is None:
        line("input size", "each image's own size")
    else:
        h, w = r["image_size"]
        line("input size", f"{h}×{w} for every image (resized to fit, aspect kept, "
                           f"top-left, rest padding)")
    sizes = " · ".join(f"{_n(a['anchors'])} ({a['height']}×{a['width']}, "
                       f"{a['images']} image{'s' if a['images'] != 1 else ''})"
                       for a in r["anchors_per_image"])
    line("anchors per image", sizes or "none")
    print(file=out)
    cols = [name for name, _ in PERCENTILES]
    print(f"{'per image':<34}{'total':>12}" + "".join(f"{c:>10}" for c in cols), file=out)
    for key in ("positives", "negatives", "ignored"):
        pct = r["per_image_percentiles"][key] or {}
        print(f"  {key:<32}{_n(r['totals'][key]):>12}"
              + "".join(f"{_n(pct[c]) if c in pct else '':>10}" for c in cols), file=out)
    print(file=out)
    hist = "  ".join(f"{k}: {v}" for k, v in r["positives_per_gt"].items())
    line("positives per gt (gts)", hist)
    rescued, unmatched = r["rescued_gts"], r["unmatched_gts"]
    line("gts rescued by low-quality match", f"{rescued['count']} of {r['gts']}"
         + _ids(rescued["annotation_ids"]))
    line("gts with no positive at all", f"{unmatched['count']} of {r['gts']}"
         + _ids(unmatched["annotation_ids"]))
    npp = r["negatives_per_positive"]
    line("negatives per positive", "n/a (no positives)" if npp is None else f"{npp:,.0f}")
    print(file=out)
    li = r["loss_at_init"]
    print(f"loss at initialization: every logit = {li['logit']:.3f} (prior π = "
          f"{_fmt(li['prior'])}) for each of {li['classes']} classes;", file=out)
    print("share of the total carried by easy negatives (all elements of background "
          "anchors):", file=out)
    line("  CE (unweighted)", f"{_pct(li['ce']['negative_share'])}"
         + _per_positive(li["ce"]["loss_per_positive"]))
    line(f"  FL (α = {_fmt(li['alpha'])}, γ = {_fmt(li['gamma'])})",
         f"{_pct(li['fl']['negative_share'])}" + _per_positive(li["fl"]["loss_per_positive"]))

    if len(r["per_image"]) <= PER_IMAGE_ROWS_MAX:
        print(file=out)
        print(f"  {'image':<24}{'size':>10}{'anchors':>10}{'gts':>5}{'crowd':>6}{'pos':>6}"
              f"{'neg':>10}{'ign':>8}{'rescued':>8}{'no pos':>7}", file=out)
        for im in r["per_image"]:
            name = f"{im['id']} {im['file_name']}"
            size = f"{im['height']}×{im['width']}"
            print(f"  {name[:23]:<24}{size:>10}{_n(im['anchors']):>10}{im['gts']:>5}"
                  f"{im['crowd_gts']:>6}{im['positives']:>6}{_n(im['negatives']):>10}"
                  f"{_n(im['ignored']):>8}{len(im['rescued_gts']):>8}"
                  f"{len(im['unmatched_gts']):>7}", file=out)
    print(file=out)
    print(f"matched {r['images']} images in {r['seconds']:.2f} s", file=out)


def _per_positive(value: float | None) -> str:
    return "" if value is None else f"   (total / positives = {value:,.3g})"


def cmd_inspect(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``focal-array inspect``: load, match every image, print or dump the report."""
    if args.low > args.high:
        raise UsageError(f"--low ({args.low}) must not exceed --high ({args.high}): IoU >= "
                         f"high is positive, < low negative, in between ignored")
    backend = resolve_backend(args.backend)  # before loading: a missing backend fails fast
    if args.path is None:
        ds = coco.load_sample()
    else:
        # the dropped boxes are reported in the output, so the warning would only repeat it
        ds = coco.load(args.path, warn=False)
    image_size = tuple(args.image_size) if args.image_size else None
    report = inspect_dataset(ds, backend=backend, image_size=image_size, high=args.high,
                             low=args.low, progress=Progress(len(ds)))
    if args.json:
        json.dump(report, out, indent=2, ensure_ascii=False)
        out.write("\n")
    else:
        print_report(report, out)
    return 0


# ============================================================================ parser


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def _probability(text: str) -> float:
    value = _number(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def _nonnegative(text: str) -> float:
    value = _number(text)
    if not (math.isfinite(value) and value >= 0.0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


EXPLAIN_HELP = """\
Print the seed note's worked example side by side: a positive anchor with probabilities
[P(background), P(person)] = [0.1, 0.9] and a negative one with [0.8, 0.2], their p_t, CE,
FL and FL/CE (computed with the library's softmax losses from probabilities), then a table
of FL/CE for p_t in 0.5, 0.9, 0.968, 0.99 and γ in 0, 0.5, 1, 2, 5 (and --gamma).
The table shows the modulating factor (1 − p_t)^γ alone unless --alpha is given; then it
shows α_t (1 − p_t)^γ for a positive and for a negative anchor.
"""

INSPECT_HELP = """\
Match every image's boxes to RetinaNet anchors (P3-P7, 9 per location) and report:
anchors per image; positive, negative and ignored anchors (totals and per-image
percentiles); positives per ground truth (histogram); gts rescued by low-quality matches
(gts that own positives only because of the low-quality rule: no anchor reaches --high for
them) and gts with no positive at all; negatives per positive; and the share of the total
classification loss that easy negatives carry at initialization.

"Easy negatives" are the background anchors (IoU < --low): at initialization every logit
is -log((1 - π) / π) with prior π = 0.01, so each of their C class elements has p_t = 0.99.
The share is (loss of all C elements of every background anchor) / (loss of all elements
of every positive and background anchor; ignored anchors carry none), under unweighted
sigmoid CE and under focal loss (α = 0.25, γ = 2), with C the file's number of classes.

Without COCO.json the sample shipped with the package is used. Degenerate boxes
(width or height <= 0) are dropped and reported. A counter shows progress on a
terminal's stderr for more than 5 images.
"""


def build_parser() -> argparse.ArgumentParser:
    """The ``focal-array`` argument parser with its ``explain`` and ``inspect`` commands."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Focal loss and anchor matching for dense object detection: explain the "
                    "loss, inspect how a COCO file's boxes match RetinaNet anchors.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("explain", help="focal loss vs cross-entropy, with the worked example",
                       description=EXPLAIN_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--alpha", type=_probability, default=None, metavar="A",
                   help="α in [0, 1] (worked example: 0.25 if not given; the table applies "
                        "α_t only when given)")
    p.add_argument("--gamma", type=_nonnegative, default=2.0, metavar="G",
                   help="γ >= 0 of the worked example (default 2); added to the table")
    p.add_argument("--plot", metavar="FILE.png", default=None,
                   help="also draw loss against p_t for each γ (needs matplotlib: "
                        "pip install 'focal-array[plot]')")
    p.set_defaults(run=cmd_explain)

    p = sub.add_parser("inspect", help="match a COCO file's boxes to RetinaNet anchors",
                       description=INSPECT_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", nargs="?", default=None, metavar="COCO.json",
                   help="COCO instances file (default: the shipped sample)")
    p.add_argument("--image-size", type=_positive_int, nargs=2, metavar=("H", "W"),
                   default=None,
                   help="network input size for every image; each image is resized to fit "
                        "(aspect ratio kept, top-left, the rest padding) and its boxes "
                        "scaled. Default: each image's own height and width, unscaled")
    p.add_argument("--high", type=_probability, default=0.5,
                   help="IoU >= HIGH is positive (default 0.5)")
    p.add_argument("--low", type=_probability, default=0.4,
                   help="IoU < LOW is negative, in between ignored (default 0.4)")
    p.add_argument("--backend", choices=("numpy", "jax", "torch"), default="numpy",
                   help="array library the matcher runs on (default numpy; jax and torch "
                        "must be installed)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object instead of the text report")
    p.set_defaults(run=cmd_inspect)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``focal-array`` command and return its exit code (never raises SystemExit).

    Args:
        argv: the arguments after the program name; ``sys.argv[1:]`` if None.

    Returns:
        0 on success, 2 on bad input (with a one-line ``focal-array: error: ...`` on
        stderr), 1 when stdout is closed early (``| head``), 130 when interrupted;
        ``--help`` and ``--version`` return 0.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return int(args.run(args, sys.stdout))
    except SystemExit as exc:  # argparse's --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except BrokenPipeError:
        # the reader went away (``| head``): not an error worth a message; point stdout at
        # devnull so the interpreter's final flush does not raise again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except (UsageError, coco.CocoFormatError, OSError) as exc:
        # FileNotFoundError, IsADirectoryError, PermissionError are OSErrors; the message
        # already names the file, so a traceback would add nothing for the user
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted", file=sys.stderr)
        return 130


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.strerror}: {exc.filename}"
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
