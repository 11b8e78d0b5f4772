"""Draw the figures of the documentation into docs/figures/ (matplotlib, Agg backend).

    python docs/make_figures.py

`anchor_matching.png`: RetinaNet anchors matched to the ground truth of two images of the
sample COCO file shipped with the package (`focal_array.coco.load_sample()`), each at its
own size: image 123 (the seed note's three persons) and image 200 (a street with a crowd
region and tiny boxes). Anchors come from `focal_array.anchors.retinanet_anchors`, the
assignment from `focal_array.matcher.match_anchors` with its defaults (IoU >= 0.5
positive, < 0.4 background, in between ignored, low-quality matches on, anchors mostly
inside a crowd box ignored). There are no pixels: the sample has annotations only.

`focal_variants.png`: each loss of the focal family (`focal_array.focal_variants`) as a
function of the predicted probability p = σ(x), for a positive (y = 1), a negative
(y = 0) and a soft IoU target (y = 0.6), computed by the library's own functions in
float64 next to BCE and the focal loss.
"""

from __future__ import annotations

import pathlib

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

import focal_array as fa
from focal_array import BACKGROUND, IGNORE, anchors, boxes, coco, matcher

FIGURES = pathlib.Path(__file__).resolve().parent / "figures"
GT_COLORS = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2"]


def match_image(ds: coco.CocoDataset, image_id: int) -> dict:
    """Anchors, ground truth and the matcher's result for one image at its own size."""
    info = ds.image(image_id)
    ann = ds.annotations(image_id)
    anc = anchors.retinanet_anchors((info.height, info.width), dtype=np.float64)
    gt = np.asarray(ann.boxes, dtype=np.float64)
    matched = matcher.match_anchors(anc, gt, gt_crowd=np.asarray(ann.crowd))
    # the same without the crowd rule: anchors ignored only with it are the crowd's
    no_crowd = matcher.match_anchors(anc, gt, gt_valid=~np.asarray(ann.crowd))
    iou = boxes.box_iou(anc, gt)
    best = iou.max(axis=1) if gt.shape[0] else np.zeros(anc.shape[0])
    return {"info": info, "ann": ann, "anchors": anc, "matched": matched, "best_iou": best,
            "crowd_ignored": (matched == IGNORE) & (no_crowd != IGNORE), "names": ds.class_names}


def draw(ax: plt.Axes, r: dict, *, title: str) -> dict:
    info, ann, anc, m = r["info"], r["ann"], r["anchors"], r["matched"]
    ax.set_xlim(0, info.width)
    ax.set_ylim(info.height, 0)
    ax.set_aspect("equal")
    ax.set_facecolor("#f4f4f4")
    counts = {"positive": int(np.sum(m >= 0)), "ignored": int(np.sum(m == IGNORE)),
              "background": int(np.sum(m == BACKGROUND)), "low_quality": 0}
    crowd_ignored = r["crowd_ignored"]
    centres = (anc[crowd_ignored, :2] + anc[crowd_ignored, 2:]) / 2
    ax.plot(centres[:, 0], centres[:, 1], ".", ms=1.5, color="#7f7f7f", alpha=0.5)
    for a in anc[(m == IGNORE) & ~crowd_ignored]:
        ax.add_patch(Rectangle(a[:2], a[2] - a[0], a[3] - a[1], fill=False, lw=0.5,
                               ls=(0, (2, 2)), ec="#7f7f7f", alpha=0.6))
    order = np.argsort(m)  # draw positives over ignored ones, gt by gt
    for i in order:
        g = int(m[i])
        if g < 0:
            continue
        a = anc[i]
        low_quality = r["best_iou"][i] < 0.5
        counts["low_quality"] += int(low_quality)
        ax.add_patch(Rectangle(a[:2], a[2] - a[0], a[3] - a[1], fill=False,
                               lw=1.6 if low_quality else 0.7,
                               ls="-" if not low_quality else (0, (4, 1.5)),
                               ec=GT_COLORS[g % len(GT_COLORS)], alpha=0.9))
    for g, (b, crowd, label) in enumerate(zip(ann.boxes, ann.crowd, ann.labels, strict=True)):
        color = "black" if crowd else GT_COLORS[g % len(GT_COLORS)]
        ax.add_patch(Rectangle(b[:2], b[2] - b[0], b[3] - b[1], fill=crowd, lw=2.6,
                               ec=color, fc="#00000014" if crowd else "none"))
        name = "crowd" if crowd else r["names"][int(label)]
        ax.text(b[0] + 2, b[1] - 4, f"gt {g}: {name}", color=color, fontsize=8,
                fontweight="bold", va="bottom")
    ax.set_title(f"{title}\n{anc.shape[0]:,} anchors: {counts['positive']} positive "
                 f"({counts['low_quality']} low-quality), {counts['ignored']:,} ignored, "
                 f"{counts['background']:,} background", fontsize=9)
    ax.tick_params(labelsize=7)
    return counts


def anchor_matching(path: pathlib.Path) -> dict:
    ds = coco.load_sample()
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.4), dpi=110, layout="constrained")
    counts = {}
    for ax, image_id, what in ((axes[0], 123, "three persons"),
                               (axes[1], 200, "street: crowd region, tiny boxes")):
        r = match_image(ds, image_id)
        counts[image_id] = draw(ax, r, title=f"sample image {image_id} "
                                f"({r['info'].width}×{r['info'].height}), {what}")
    handles = [
        Line2D([], [], color="#d62728", lw=2.6, label="ground-truth box (colour per gt)"),
        Line2D([], [], color="#d62728", lw=0.7,
               label="positive anchor (IoU ≥ 0.5), its gt's colour"),
        Line2D([], [], color="#d62728", lw=1.6, ls=(0, (4, 1.5)),
               label="positive by low-quality match (IoU < 0.5)"),
        Line2D([], [], color="#7f7f7f", lw=0.8, ls=(0, (2, 2)),
               label="ignored anchor (0.4 ≤ best IoU < 0.5)"),
        Line2D([], [], color="#7f7f7f", ls="", marker=".", ms=4,
               label="centre of an anchor ignored by the crowd rule (IoA ≥ 0.5)"),
        Line2D([], [], color="black", lw=2.6, label="crowd region (iscrowd = 1), never matched"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    fig.savefig(path, bbox_inches="tight", pad_inches=0.15)
    plt.close(fig)
    return counts


def _variant_curves(p: np.ndarray, y: float) -> dict[str, np.ndarray]:
    """Each sigmoid loss of the family at probabilities ``p`` for the target ``y``."""
    x = np.log(p) - np.log1p(-p)
    t = np.full_like(x, y)
    curves = {
        "BCE": fa.binary_cross_entropy(x, t),
        "focal (α=0.25, γ=2)": fa.sigmoid_focal_loss(x, t),
        "QFL (β=2)": fa.quality_focal_loss(x, t),
        "VFL (α=0.75, γ=2)": fa.varifocal_loss(x, t),
        "Poly-1 (ε=1)": fa.poly1_focal_loss(x, t),
    }
    if y in (0.0, 1.0):
        curves["FL* (γ=4, β=0)"] = fa.sigmoid_focal_loss_star(x, t)
    return curves


def focal_variants(path: pathlib.Path) -> None:
    p = np.linspace(1e-3, 1 - 1e-3, 999)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2), dpi=110, layout="constrained")
    styles = ["-", "-", "--", "-.", ":", (0, (5, 1, 1, 1))]
    for ax, (y, what) in zip(axes, ((1.0, "positive, y = 1"), (0.0, "negative, y = 0"),
                                    (0.6, "soft IoU target, y = 0.6")), strict=True):
        for (name, loss), ls in zip(_variant_curves(p, y).items(), styles, strict=False):
            ax.plot(p, loss, ls=ls, lw=1.6, label=name)
        if y not in (0.0, 1.0):
            ax.axvline(y, color="#7f7f7f", lw=0.8, ls=(0, (2, 2)))
        ax.set_title(what, fontsize=12)
        ax.set_xlabel("predicted probability p = σ(x)", fontsize=11)
        ax.set_ylim(0, 3)
        ax.tick_params(labelsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("loss", fontsize=11)
    axes[0].legend(fontsize=10, frameon=False)
    fig.savefig(path, bbox_inches="tight", pad_inches=0.15)
    plt.close(fig)


def main() -> None:
    FIGURES.mkdir(exist_ok=True)
    focal_variants(FIGURES / "focal_variants.png")
    counts = anchor_matching(FIGURES / "anchor_matching.png")
    for image_id, c in counts.items():
        print(f"image {image_id}: {c}")


if __name__ == "__main__":
    main()
