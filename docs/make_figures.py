"""Draw the figures of the documentation into docs/figures/ (matplotlib, Agg backend).

    python docs/make_figures.py

`anchor_matching.png`: RetinaNet anchors matched to the ground truth of two images of the
sample COCO file shipped with the package (`focal_array.coco.load_sample()`), each at its
own size: image 123 (the source note's three persons) and image 200 (a street with a crowd
region and tiny boxes). Anchors come from `focal_array.anchors.retinanet_anchors`, the
assignment from `focal_array.matcher.match_anchors` with its defaults (IoU >= 0.5
positive, < 0.4 background, in between ignored, low-quality matches on, anchors mostly
inside a crowd box ignored). There are no pixels: the sample has annotations only.

`focal_variants.png`: each loss of the focal family (`focal_array.focal_variants`) as a
function of the predicted probability p = σ(x), for a positive (y = 1), a negative
(y = 0) and a soft IoU target (y = 0.6), computed by the library's own functions in
float64 next to BCE and the focal loss.

`assigners.png`: the locations/anchors each assigner of `focal_array.assigners` makes
positive on sample image 123 (three persons, at its own size), coloured by their gt:
`fcos_assign` on one square anchor per location (strides 8…128, side = stride,
`offset=0.0`, as in docs/assigners.md's example), `atss_assign` on RetinaNet's 9 anchors
per location (`focal_array.anchors.retinanet_anchors`), and `task_aligned_assign` with
YOLOv8's settings on points at the cell centres of strides 8/16/32. There is no network,
so the task-aligned panel uses a deterministic synthetic prediction: the score of the gt's
class is a Gaussian of the distance to the gt's centre (relative to its size), the
predicted box is the nearest gt's box jittered by a seeded RNG.
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
from focal_array import BACKGROUND, IGNORE, anchors, assigners, boxes, coco, matcher

FIGURES = pathlib.Path(__file__).resolve().parent / "figures"
GT_COLORS = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2"]
# The docs show a figure at the width of the text column, 688 px in a 1280-px window: a
# figure W inches wide is shown at 688 / (72 W) px per point, so for text of at least 11 px
# there every figure is about 9 inches wide with 11-pt text (_check_legible measures the
# saved file).
COLUMN_PX = 688
MIN_TEXT_PX = 11.0
WIDTH_IN = 9.0
FONT_PT = 11


def _check_legible(fig: plt.Figure, path: pathlib.Path) -> float:
    """The smallest text of the saved figure in px as the docs show it; raises below
    MIN_TEXT_PX (the figure would need a wider column to be read)."""
    from PIL import Image

    with Image.open(path) as im:
        width_px = im.size[0]
    # a narrower image is shown at its own size, a wider one scaled down to the column
    shown_px_per_pt = min(1.0, COLUMN_PX / width_px) * fig.dpi / 72
    sizes = [t.get_fontsize() for t in fig.findobj(matplotlib.text.Text)
             if t.get_visible() and t.get_text().strip()]
    smallest = min(sizes) * shown_px_per_pt
    if smallest < MIN_TEXT_PX - 0.05:
        raise ValueError(f"{path.name}: its smallest text is {smallest:.1f} px in the docs' "
                         f"{COLUMN_PX}-px column, under {MIN_TEXT_PX:g} px")
    return smallest


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
    names: dict[str, list[int]] = {}
    for g, (b, crowd, label) in enumerate(zip(ann.boxes, ann.crowd, ann.labels, strict=True)):
        color = "black" if crowd else GT_COLORS[g % len(GT_COLORS)]
        ax.add_patch(Rectangle(b[:2], b[2] - b[0], b[3] - b[1], fill=crowd, lw=2.6,
                               ec=color, fc="#00000014" if crowd else "none"))
        names.setdefault("crowd" if crowd else r["names"][int(label)], []).append(g)
        # the gt's number on a white ground, above its top-left corner (the names go below
        # the panel: whole names at a legible size would overlap on a crowded image)
        ax.text(b[0], b[1] - 6, str(g), color=color, fontsize=FONT_PT,
                fontweight="bold", va="bottom", ha="left",
                bbox={"fc": "white", "ec": "none", "alpha": 0.85, "pad": 1.0})
    ax.set_xlabel("; ".join(f"gt {', '.join(map(str, gs))}: {name}"
                            for name, gs in names.items()), fontsize=FONT_PT)
    ax.set_title(f"{title}\n{anc.shape[0]:,} anchors: {counts['positive']} positive "
                 f"({counts['low_quality']} low-quality),\n{counts['ignored']:,} ignored, "
                 f"{counts['background']:,} background", fontsize=FONT_PT)
    ax.tick_params(labelsize=FONT_PT)
    return counts


def anchor_matching(path: pathlib.Path) -> dict:
    ds = coco.load_sample()
    fig, axes = plt.subplots(1, 2, figsize=(WIDTH_IN, 5.0), dpi=160,
                             layout="constrained")
    counts = {}
    for ax, image_id, what in ((axes[0], 123, "three persons"),
                               (axes[1], 200, "a street")):
        r = match_image(ds, image_id)
        counts[image_id] = draw(ax, r, title=f"image {image_id} "
                                f"({r['info'].width}×{r['info'].height}), {what}")
    handles = [
        Line2D([], [], color="#d62728", lw=2.6, label="ground-truth box (colour per gt)"),
        Line2D([], [], color="#d62728", lw=0.7, label="positive anchor (IoU ≥ 0.5)"),
        Line2D([], [], color="#d62728", lw=1.6, ls=(0, (4, 1.5)),
               label="positive, low-quality match (IoU < 0.5)"),
        Line2D([], [], color="#7f7f7f", lw=0.8, ls=(0, (2, 2)),
               label="ignored anchor (0.4 ≤ best IoU < 0.5)"),
        Line2D([], [], color="#7f7f7f", ls="", marker=".", ms=4,
               label="centre of an anchor ignored as crowd"),
        Line2D([], [], color="black", lw=2.6, label="crowd region (iscrowd = 1)"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=2,
               fontsize=FONT_PT, frameon=False)
    _save(fig, path)
    return counts


def _save(fig: plt.Figure, path: pathlib.Path) -> None:
    fig.savefig(path, bbox_inches="tight", pad_inches=0.15)
    px = _check_legible(fig, path)
    plt.close(fig)
    print(f"{path.name}: smallest text {px:.1f} px in the docs' column")


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
    fig, axes = plt.subplots(1, 3, figsize=(WIDTH_IN, 3.6), dpi=160, layout="constrained",
                             sharey=True)
    styles = ["-", "-", "--", "-.", ":", (0, (5, 1, 1, 1))]
    for ax, (y, what) in zip(axes, ((1.0, "positive, y = 1"), (0.0, "negative, y = 0"),
                                    (0.6, "soft IoU target, y = 0.6")), strict=True):
        for (name, loss), ls in zip(_variant_curves(p, y).items(), styles, strict=False):
            ax.plot(p, loss, ls=ls, lw=1.6, label=name)
        if y not in (0.0, 1.0):
            ax.axvline(y, color="#7f7f7f", lw=0.8, ls=(0, (2, 2)))
        ax.set_title(what, fontsize=FONT_PT)
        ax.set_xlabel("predicted probability p = σ(x)", fontsize=FONT_PT)
        ax.set_ylim(0, 3)
        ax.set_xticks([0, 0.5, 1], ["0", "0.5", "1"])
        ax.tick_params(labelsize=FONT_PT)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("loss", fontsize=FONT_PT)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=3,
               fontsize=FONT_PT, frameon=False)
    _save(fig, path)


FCOS_STRIDES = (8, 16, 32, 64, 128)
TAL_STRIDES = (8, 16, 32)
LEVEL_MARKERS = {8: "o", 16: "s", 32: "^", 64: "D", 128: "p"}


def _gt_boxes_panel(ax: plt.Axes, info: coco.ImageInfo, gt: np.ndarray, names: list[str],
                    *, title: str) -> None:
    """Axes at the image's size with the gt boxes and their labels."""
    ax.set_xlim(0, info.width)
    ax.set_ylim(info.height, 0)
    ax.set_aspect("equal")
    ax.set_facecolor("#f4f4f4")
    for g, (b, name) in enumerate(zip(gt, names, strict=True)):
        color = GT_COLORS[g % len(GT_COLORS)]
        ax.add_patch(Rectangle(b[:2], b[2] - b[0], b[3] - b[1], fill=False, lw=2.4, ec=color,
                               zorder=3))
        ax.text(b[0], b[1] - 5, f"gt {g}: {name}", color=color, fontsize=FONT_PT,
                fontweight="bold", va="bottom", zorder=6,
                bbox={"fc": "white", "ec": "none", "alpha": 0.8, "pad": 1})
    ax.set_title(title, fontsize=FONT_PT)
    ax.tick_params(labelsize=FONT_PT)


def _level_of(index: np.ndarray, per_level: list[int], strides: tuple[int, ...]) -> np.ndarray:
    """The stride of the pyramid level of each flat anchor index."""
    return np.asarray(strides)[np.searchsorted(np.cumsum(per_level), index, side="right")]


def _synthetic_prediction(points: np.ndarray, gt: np.ndarray, labels: np.ndarray,
                          num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """A deterministic stand-in for a detection head's output at ``points``.

    Score of class c: the largest over the gts of class c of exp(-d²/2), d the distance
    from the point to the gt's centre in units of a quarter of the gt's width/height.
    Predicted box: the box of the gt nearest by that d, its sides moved by N(0, (8 % of
    the gt's width/height)²) from a seeded RNG.
    """
    centre = (gt[:, :2] + gt[:, 2:]) / 2
    wh = gt[:, 2:] - gt[:, :2]
    d = np.hypot(*np.moveaxis((points[:, None] - centre[None]) / (wh[None] / 4), -1, 0))
    near = np.exp(-0.5 * d**2)                                           # (A, G)
    scores = np.zeros((points.shape[0], num_classes))
    for c in range(num_classes):
        if np.any(labels == c):
            scores[:, c] = near[:, labels == c].max(axis=1)
    rng = np.random.default_rng(0)
    nearest = np.argmin(d, axis=1)
    jitter = rng.normal(0.0, 0.08, (points.shape[0], 4)) * np.tile(wh[nearest], 2)
    return scores, gt[nearest] + jitter


def assigners_figure(path: pathlib.Path) -> dict[str, list[int]]:
    """Positives of FCOS, ATSS and task-aligned on sample image 123; per gt counts."""
    ds = coco.load_sample()
    info, ann = ds.image(123), ds.annotations(123)
    size = (info.height, info.width)
    gt = np.asarray(ann.boxes, dtype=np.float64)
    labels = np.asarray(ann.labels)
    names = [ds.class_names[int(c)] for c in labels]
    counts: dict[str, list[int]] = {}
    # two rows of two: three panels and the legend, so that the text is legible at the
    # docs' column width
    fig, grid = plt.subplots(2, 2, figsize=(WIDTH_IN, 8.4), dpi=160, layout="constrained")
    axes = grid.ravel()

    # FCOS: one square anchor per location, side = stride, centred on the cell's corner
    one = {"sizes": FCOS_STRIDES, "scales": (1,), "aspect_ratios": (1,)}
    fcos_anc = anchors.retinanet_anchors(size, strides=FCOS_STRIDES, offset=0.0,
                                         dtype=np.float64, **one)
    fcos_levels = [g.num_anchors for g in anchors.anchors_per_level(
        size, strides=FCOS_STRIDES, **one)]
    m = np.asarray(assigners.fcos_assign(fcos_anc, gt, num_anchors_per_level=fcos_levels))
    counts["FCOS"] = [int(np.sum(m == g)) for g in range(len(gt))]
    ax = axes[0]
    _gt_boxes_panel(ax, info, gt, names, title=(
        f"FCOS: {len(fcos_anc):,} locations,\nstrides 8…128, radius 1.5 × stride\n"
        f"positives per gt: {counts['FCOS']}"))
    pts = (fcos_anc[:, :2] + fcos_anc[:, 2:]) / 2
    level = _level_of(np.arange(len(fcos_anc)), fcos_levels, FCOS_STRIDES)
    for g in range(len(gt)):
        for stride in FCOS_STRIDES:
            sel = (m == g) & (level == stride)
            ax.scatter(pts[sel, 0], pts[sel, 1], s=22, marker=LEVEL_MARKERS[stride],
                       color=GT_COLORS[g], ec="black", lw=0.4, zorder=5)
    used = sorted({int(s) for s in level[m >= 0]})

    # ATSS: RetinaNet's 9 anchors per location, positives drawn as boxes and centres
    retina = anchors.retinanet_anchors(size, dtype=np.float64)
    retina_levels = [g.num_anchors for g in anchors.anchors_per_level(size)]
    m = np.asarray(assigners.atss_assign(retina, gt, num_anchors_per_level=retina_levels))
    counts["ATSS"] = [int(np.sum(m == g)) for g in range(len(gt))]
    ax = axes[1]
    _gt_boxes_panel(ax, info, gt, names, title=(
        f"ATSS: {len(retina):,} RetinaNet anchors,\ntop 9 per level, IoU ≥ mean + std\n"
        f"positives per gt: {counts['ATSS']}"))
    positive = np.flatnonzero(m >= 0)
    atss_level = _level_of(positive, retina_levels, FCOS_STRIDES)
    for i in positive:
        a = retina[i]
        ax.add_patch(Rectangle(a[:2], a[2] - a[0], a[3] - a[1], fill=False, lw=0.9,
                               ls=(0, (4, 2)), ec=GT_COLORS[int(m[i])], alpha=0.8, zorder=2))
    # the positives share few locations: one marker per location, the counts under the gt
    centres = (retina[positive, :2] + retina[positive, 2:]) / 2
    for x, y, stride, g in np.unique(np.column_stack([centres, atss_level, m[positive]]),
                                     axis=0):
        ax.scatter([x], [y], s=40, marker=LEVEL_MARKERS[int(stride)],
                   color=GT_COLORS[int(g)], ec="black", lw=0.6, zorder=5)
    for g, b in enumerate(gt):
        per = [f"s{st}: {int(np.sum(atss_level[m[positive] == g] == st))}"
               for st in FCOS_STRIDES if np.any(atss_level[m[positive] == g] == st)]
        ax.text((b[0] + b[2]) / 2, max(b[3], retina[positive[m[positive] == g], 3].max()) + 6,
                "\n".join(per), color=GT_COLORS[g], fontsize=FONT_PT, fontweight="bold",
                ha="center", va="top", zorder=6,
                bbox={"fc": "white", "ec": "none", "alpha": 0.8, "pad": 1})
    atss_levels = sorted({int(s) for s in atss_level})

    # task-aligned: YOLO-style points at the cells' centres, synthetic predictions
    grids = [np.stack(np.meshgrid((np.arange(-(-info.width // s)) + 0.5) * s,
                                  (np.arange(-(-info.height // s)) + 0.5) * s), -1)
             .reshape(-1, 2) for s in TAL_STRIDES]
    points = np.concatenate(grids)
    scores, pred = _synthetic_prediction(points, gt, labels, len(ds.class_names))
    out = assigners.task_aligned_assign(scores[None], pred[None], points, labels[None],
                                        gt[None], topk=10, alpha=0.5, beta=6.0, iou="ciou",
                                        contested="all", topk_from="anchors")
    m = np.asarray(out["matched"])[0]
    target = np.asarray(out["target_scores"])[0].max(axis=1)
    counts["task-aligned"] = [int(np.sum(m == g)) for g in range(len(gt))]
    ax = axes[2]
    _gt_boxes_panel(ax, info, gt, names, title=(
        f"task-aligned: {len(points):,} points, YOLOv8's\ntop 10, α = 0.5, β = 6, CIoU; "
        f"synthetic\npredictions; positives per gt: {counts['task-aligned']}"))
    tal_level = _level_of(np.arange(len(points)), [len(p) for p in grids], TAL_STRIDES)
    inside = np.any((points[:, None, 0] > gt[None, :, 0]) & (points[:, None, 0] < gt[None, :, 2])
                    & (points[:, None, 1] > gt[None, :, 1])
                    & (points[:, None, 1] < gt[None, :, 3]), axis=1)
    ax.plot(points[inside & (m < 0), 0], points[inside & (m < 0), 1], ".", ms=2.5,
            color="#b0b0b0", zorder=4)
    for g in range(len(gt)):
        for stride in TAL_STRIDES:
            sel = (m == g) & (tal_level == stride)
            ax.scatter(points[sel, 0], points[sel, 1], s=12 + 60 * target[sel] / target.max(),
                       marker=LEVEL_MARKERS[stride], color=GT_COLORS[g], ec="black",
                       lw=0.4, zorder=5)
    tal_used = sorted({int(s) for s in tal_level[m >= 0]})

    handles = [Line2D([], [], color=GT_COLORS[g], lw=2.4, label=f"gt {g} box; its positives")
               for g in range(len(gt))]
    handles += [Line2D([], [], color="#555555", ls="", marker=LEVEL_MARKERS[s], ms=6,
                       label=f"location, stride {s}") for s in sorted(set(used + tal_used))]
    handles += [
        Line2D([], [], color="#555555", lw=0.9, ls=(0, (4, 2)),
               label="ATSS positive anchor box (counts\nunder each gt; s16: at stride 16)"),
        Line2D([], [], color="#b0b0b0", ls="", marker=".", ms=5,
               label="task-aligned: point inside\na gt, not selected"),
        Line2D([], [], color="#555555", ls="", marker="o", ms=9, mfc="none",
               label="task-aligned: marker area\n∝ target score"),
    ]
    axes[3].axis("off")
    axes[3].legend(handles=handles, loc="center", ncol=1, fontsize=FONT_PT, frameon=False)
    _save(fig, path)
    counts.update({f"{k} strides": v for k, v in
                   (("FCOS", used), ("ATSS", atss_levels), ("task-aligned", tal_used))})
    return counts


def main() -> None:
    FIGURES.mkdir(exist_ok=True)
    focal_variants(FIGURES / "focal_variants.png")
    counts = anchor_matching(FIGURES / "anchor_matching.png")
    for image_id, c in counts.items():
        print(f"image {image_id}: {c}")
    for name, c in assigners_figure(FIGURES / "assigners.png").items():
        print(f"assigners, {name}: {c}")


if __name__ == "__main__":
    main()
