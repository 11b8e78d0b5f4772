"""The text report of ``focal-array inspect`` and the number formats the command shares.

Sizes are printed width × height (``640 × 480``), as images are described and as the
documentation's figures title them, and every size is labelled "width × height"; the JSON
keeps separate ``height`` and ``width`` keys and ``--image-size`` stays ``H W``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TextIO

from ._cli_stats import PERCENTILES

__all__ = ["PER_IMAGE_ROWS_MAX", "print_report"]

#: Per-image rows are printed in the text report up to this many images (always in JSON).
PER_IMAGE_ROWS_MAX = 10


def _fmt(x: float, digits: int = 4) -> str:
    """Numbers as a person writes them: 4 significant digits, no trailing zeros."""
    if x == 0:
        return "0"
    return f"{x:.{digits}g}"


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


def _size(width: int, height: int) -> str:
    """A size in the report's one order, width first: ``640 × 480``."""
    return f"{width} × {height}"


def _per_positive(value: float | None) -> str:
    return "" if value is None else f"   (total / positives = {value:,.3g})"


def print_report(r: dict[str, Any], out: TextIO) -> None:
    """The human-readable ``inspect`` report (see ``docs/cli.md`` for each line).

    Args:
        r: the report of :func:`~focal_array._cli_stats.inspect_dataset`; its per-image
            table is printed when ``r["per_image"]`` is a list of at most
            :data:`PER_IMAGE_ROWS_MAX` entries.
        out: the text stream to write to.
    """
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
    lq = (f"low-quality matches on (ties: {r['tie_rule']})"
          if r["allow_low_quality_matches"] else "no low-quality")
    line("matching", f"IoU >= {_fmt(r['high'])} positive, < {_fmt(r['low'])} negative, "
                     f"between ignored; {lq}")
    line("", f"inside a crowd region (IoA >= {_fmt(r['crowd_ioa'])}) ignored; "
             f"backend {r['backend']}")
    if r["image_size"] is None:
        line("input size", "each image's own width × height")
    else:
        h, w = r["image_size"]
        line("input size", f"width × height = {_size(w, h)} for every image (--image-size "
                           f"H W = {h} {w}; resized to fit, aspect kept, top-left, rest "
                           f"padding)")
    # the first size says which number is which; the others follow its order
    sizes = " · ".join(f"{_n(a['anchors'])} at {_size(a['width'], a['height'])} "
                       f"({'width × height, ' if k == 0 else ''}"
                       f"{a['images']} image{'s' if a['images'] != 1 else ''})"
                       for k, a in enumerate(r["anchors_per_image"]))
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

    per_image = r.get("per_image")
    if per_image is not None and len(per_image) <= PER_IMAGE_ROWS_MAX:
        print(file=out)
        print(f"  {'image':<24}{'width × height':>15}{'anchors':>10}{'gts':>5}{'crowd':>6}"
              f"{'pos':>6}{'neg':>10}{'ign':>8}{'rescued':>8}{'no pos':>7}", file=out)
        for im in per_image:
            name = f"{im['id']} {im['file_name']}"
            print(f"  {name[:23]:<24}{_size(im['width'], im['height']):>15}"
                  f"{_n(im['anchors']):>10}{im['gts']:>5}"
                  f"{im['crowd_gts']:>6}{im['positives']:>6}{_n(im['negatives']):>10}"
                  f"{_n(im['ignored']):>8}{len(im['rescued_gts']):>8}"
                  f"{len(im['unmatched_gts']):>7}", file=out)
    print(file=out)
    print(f"matched {r['images']} images in {r['seconds']:.2f} s", file=out)
