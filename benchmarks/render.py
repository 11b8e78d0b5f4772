"""The report: the markdown page (targets at every size, timings per workload and size,
memory, accuracy), the ratio plot, and the console table."""

from __future__ import annotations

import os

from benchmarks import targets as T
from benchmarks.workloads import B8_MAX_ANCHORS, WORKLOADS

FIGURE = os.path.join("figures", "benchmark_ratios.png")
PLOT_WIDTH_IN = 9.0
PLOT_FONT_PT = 11
COLORS = {"numpy": "#1f77b4", "jax": "#d62728", "torch": "#2ca02c",
          "torch compiled": "#9467bd"}
#: panels of the plot: (title, workloads, mode, x-axis label)
PANELS = [
    ("sigmoid focal, fwd", T.SIGMOID, "fwd", "logits elements"),
    ("sigmoid focal, fwd+bwd", T.SIGMOID, "fwd+bwd", "logits elements"),
    ("softmax CE, fwd", ("softmax_ce",), "fwd", "logits elements"),
    ("softmax CE, fwd+bwd", ("softmax_ce",), "fwd+bwd", "logits elements"),
    ("softmax focal, fwd", ("softmax_focal",), "fwd", "logits elements"),
    ("softmax focal, fwd+bwd", ("softmax_focal",), "fwd+bwd", "logits elements"),
    ("matcher, per image", ("match_1img",), "fwd", "gts per image"),
    ("matcher, batch of 8", ("match_b8",), "fwd", "gts per image (padded)"),
]
PEER_SHORT = {"tv": "torchvision", "tv_compiled": "torchvision compiled", "optax": "optax",
              "naive": "naive NumPy", "F.cross_entropy": "F.cross_entropy",
              "logsoftmax_focal": "log_softmax focal", "jax_loop": "JAX single-image loop",
              "tv_loop": "torchvision loop"}
BACKEND_SHORT = {"numpy": "NumPy", "jax": "JAX jit", "torch": "torch eager",
                 "torch compiled": "torch compiled"}


def _fmt_ms(v: float) -> str:
    return f"{v:.3g}" if v < 10 else f"{v:,.0f}"


def _fmt_ratio(r: dict | None) -> str:
    if not r:
        return "—"
    if "min" in r:
        return f"{r['median']:.2f}× ({r['min']:.2f}–{r['max']:.2f})"
    return f"{r['median']:.3g}"


def _series(result: dict):
    """(panel index, label, colour, marker, line style, [(x, median, lo, hi)], limit)."""
    rows = result["rows"]
    idx = T._index(rows)
    out = []
    specs = [(t, w, b, m, fk, pk, lim, False) for t, wls, b, ms, fk, pk, lim in T.RATIO_TARGETS
             for w in wls for m in ms]
    specs += [(t, w, fb, "fwd", fk, (pb, pk), lim, True)
              for t, w, (fb, fk), (pb, pk), lim in T.CROSS_TARGETS]
    for _, w, backend, mode, fa_key, peer, limit, cross in specs:
        panel = next((i for i, p in enumerate(PANELS) if w in p[1] and p[2] == mode), None)
        if panel is None:
            continue
        groups: dict[str, list] = {}
        for r in rows:
            if (r["workload"], r["backend"], r["mode"], r.get("key")) != (w, backend, mode,
                                                                           fa_key):
                continue
            if r["status"] != "measured":
                continue
            if cross:
                p = idx.get((w, r["size"], peer[0], "fwd", peer[1]))
                if not p or p["status"] != "measured":
                    continue
                v = r["median_ms"] / p["median_ms"]
                point = (r["x"], v, v, v)
            else:
                q = r.get("ratios", {}).get(peer)
                if not q:
                    continue
                point = (r["x"], q["median"], q["min"], q["max"])
            group = r["size"].split("-g")[0] if w.startswith("match") else ""
            groups.setdefault(group, []).append(point)
        back = "torch compiled" if fa_key == "fa_compiled" else backend
        for group, pts in groups.items():
            where = {"sigmoid_b1": ", b1", "sigmoid_b8": ", b8"}.get(w, "")
            peer_key = peer[1] if cross else peer
            label = (f"{BACKEND_SHORT[back]} ÷ {PEER_SHORT.get(peer_key, peer_key)}{where}"
                     f"{', ' + group if group else ''} (≤ {limit:g})")
            second = w == "sigmoid_b8" or group.startswith("800")
            style = "-." if cross else (":" if second else "-")
            marker = "^" if cross else ("s" if second else "o")
            out.append((panel, label, COLORS[back], marker, style, sorted(pts), limit))
    return out


def plot(result: dict, path: str) -> str | None:
    """Ratio vs size per backend, one panel per loss family and mode; None if drawn, else
    why not."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as exc:  # matplotlib is optional for measuring
        return f"matplotlib not importable ({type(exc).__name__})"
    from matplotlib.ticker import FuncFormatter, NullFormatter

    # 9 in wide, two panels a row, 11-pt text: the docs show it in their 688-px column at
    # 688 / (72 · 9) px a point, 11.7 px for the smallest text; constrained layout makes
    # room for the legends under the panels
    fig, axes = plt.subplots(4, 2, figsize=(PLOT_WIDTH_IN, 21), dpi=160,
                             layout="constrained")
    axes = axes.ravel()
    drawn_limits: dict[int, set] = {}
    panel_xs: dict[int, set] = {}
    for panel, label, color, marker, style, pts, limit in _series(result):
        ax = axes[panel]
        xs, med, lo, hi = zip(*pts, strict=True)
        panel_xs.setdefault(panel, set()).update(xs)
        ax.errorbar(xs, med, yerr=[[m - a for m, a in zip(med, lo, strict=True)],
                                   [b - m for m, b in zip(med, hi, strict=True)]],
                    color=color, marker=marker, ms=5, lw=1.4, capsize=2,
                    ls=style, label=label)
        if (limit, color) not in drawn_limits.setdefault(panel, set()):
            ax.axhline(limit, color=color, ls="--", lw=1.0, alpha=0.8)
            drawn_limits[panel].add((limit, color))
    for i, (ax, (title, _, _, xlabel)) in enumerate(zip(axes, PANELS, strict=True)):
        ax.set_title(title, fontsize=PLOT_FONT_PT + 1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel, fontsize=PLOT_FONT_PT)
        ax.grid(True, which="both", alpha=0.3)
        ax.tick_params(which="both", labelsize=PLOT_FONT_PT)
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))
        ax.yaxis.set_minor_formatter(FuncFormatter(
            lambda v, _: f"{v:g}" if str(f"{v:g}")[0] in "25" else ""))
        xs = sorted(panel_xs.get(i, ()))
        if xs and len(xs) <= 6:  # few sizes (gts): label each, not powers of ten
            ax.set_xticks(xs, [f"{x:,.0f}" if x >= 1 else f"{x:g}" for x in xs])
        if ax.lines:
            ax.legend(fontsize=PLOT_FONT_PT, loc="upper center", bbox_to_anchor=(0.5, -0.16),
                      frameon=False)
        else:
            ax.text(0.5, 0.5, "not measured", ha="center", va="center",
                    transform=ax.transAxes, color="gray", fontsize=PLOT_FONT_PT)
    for ax in axes[::2]:
        ax.set_ylabel("focal_array time ÷ peer time", fontsize=PLOT_FONT_PT)
    fig.suptitle("focal_array vs peers: time ratio (lower is faster;\ndashed: the target, "
                 "in the series' colour; bars: min–max over rounds)",
                 fontsize=PLOT_FONT_PT + 1)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return None


def _run_time(result: dict) -> list[str]:
    if "wall_s" not in result:
        return []
    per: dict[str, float] = {}
    for d in result.get("durations", []):
        per[d["workload"]] = per.get(d["workload"], 0.0) + d["seconds"]
    parts = ", ".join(f"{w} {v:.0f} s" for w, v in per.items())
    if result.get("merged"):
        return [f"- **Run time:** {result['wall_s'] / 60:.1f} min summed over "
                f"{result['merged']} merged partial runs ({parts})."]
    return [f"- **Run time:** {result['wall_s'] / 60:.1f} min in all ({parts}; the rest is "
            "process start-up; torch.compile's compilation counts in its workload)."]


def target_lines(result: dict) -> list[str]:
    ts = result["targets"]
    met = sum(t["met"] is True for t in ts)
    miss = sum(t["met"] is False for t in ts)
    out = [f"{met} met, {miss} not met, {len(ts) - met - miss} not measured "
           "(each target at every size it applies to).", "",
           "| target | workload | size | mode | measured | limit | met | note |",
           "|---|---|---|---|---|---|---|---|"]
    for t in ts:
        m = "—" if t["met"] is None else ("yes" if t["met"] else "**no**")
        out.append(f"| {t['target']} | {t['workload']} | {t['size_label']} | {t['mode']} | "
                   f"{_fmt_ratio(t['measured'])} | {t['limit']:g} | {m} | {t['note']} |")
    return out


def timing_lines(result: dict, workload: str) -> list[str]:
    out = ["| size | backend | mode | implementation | median ms | min–max ms | first call "
           "ms | focal_array ÷ peer (median, min–max, pair by pair) |",
           "|---|---|---|---|---:|---:|---:|---|"]
    for r in result["rows"]:
        if r["workload"] != workload:
            continue
        head = f"| {r.get('size_label', '')} | {r['backend']} | {r['mode']} | {r['impl']} |"
        if r["status"] != "measured":
            out.append(f"{head} — | — | — | {r['reason']} |")
            continue
        ratios = "; ".join(f"vs {k}: {_fmt_ratio(v)}" for k, v in r.get("ratios", {}).items())
        out.append(f"{head} {_fmt_ms(r['median_ms'])} | {_fmt_ms(r['min_ms'])}–"
                   f"{_fmt_ms(r['max_ms'])} | {_fmt_ms(r['first_call_ms'])} | {ratios} |")
    return out


def markdown(result: dict, figure: str | None = FIGURE) -> str:
    m = result["machine"]
    cmd = result.get("command", "python -m benchmarks.run")
    out = [
        "# Benchmarks", "",
        f"Generated by `{cmd}`; do not edit by hand — rerun the command.", "",
        f"- **Date:** {result['date']}",
        f"- **Machine:** {m['cpu']}, {m['cores']} cores, {m['platform']}, Python "
        f"{m['python']}; load average at start {m['loadavg_at_start']}",
        "- **Versions:** " + ", ".join(f"{k} {v or 'not installed'}"
                                       for k, v in m["versions"].items()),
        f"- **Method:** {result['method']}. float32 throughout; losses summed; fwd+bwd is "
        "the loss and its gradient (PyTorch autograd, `jax.value_and_grad`). Sigmoid targets "
        "are 0/1 with 1% positives, α = 0.25, γ = 2; softmax labels three quarters "
        "background, focal γ = 2 without α (as the log_softmax peers). Warm-up calls and "
        "timed repeats per size are in each row (`warmups`, `repeats` in results.json): "
        "fewer where one call takes seconds.",
        *_run_time(result),
        f"- **Left out:** sigmoid batch 8 × 1,000,000 × 80 (2.6 GB per float32 array; the "
        f"8-image sweep stops at {B8_MAX_ANCHORS:,} anchors).",
        "- **Caveat:** the machine may be shared (see the load average): absolute times are "
        "noisy. Ratios are pair by pair within one process and round, which cancels most "
        "of the load; cross-process ratios (NumPy and JAX matchers vs torchvision) are "
        "ratios of medians. Read the min–max ranges before trusting a difference under "
        "~15%.",
        "- **GPU:** none in this run; `python -m benchmarks.gpu` is the CUDA script.",
    ]
    if figure:
        out += ["", "## Ratios", "", f"![focal_array time ÷ peer time per size]({figure})"]
    out += ["", "## Targets", "", *target_lines(result), "", "## Timings"]
    for w in WORKLOADS:
        if any(r["workload"] == w for r in result["rows"]):
            out += ["", f"### {w}", "", *timing_lines(result, w)]
    out += ["", "## Peak extra memory per call", "",
            "A fresh process per implementation, after two warm-up calls.", "",
            "| workload | size | backend | mode | implementation | peak extra | × logits | "
            "method | RSS high-water extra |", "|---|---|---|---|---|---:|---:|---|---:|"]
    for r in result["memory"]:
        head = (f"| {r.get('workload', '')} | {r.get('size_label', '')} | {r['backend']} | "
                f"{r['mode']} | {r['impl']} |")
        if r["status"] != "measured":
            out.append(f"{head} — | — | {r['reason']} | — |")
            continue
        rss = r.get("rss_peak_extra_bytes")
        out.append(f"{head} {r['peak_extra_bytes'] / 2**20:.1f} MiB | {r['x_logits']:.2f} | "
                   f"{r['method']} | {'—' if rss is None else f'{rss / 2**20:.1f} MiB'} |")
    out += ["", "## Gradient accuracy (float32 vs float64)", "",
            "Sigmoid focal loss, logits uniform in [−30, 30], 10% positives; largest "
            "elementwise relative error, differences below float32's smallest normal "
            "counting as 0.", "",
            "| backend | implementation | max relative error | share > 1e-5 | finite |",
            "|---|---|---:|---:|---|"]
    for a in result["accuracy"]:
        if a["status"] != "measured":
            out.append(f"| {a['backend']} | {a['impl']} | — | — | {a['reason']} |")
            continue
        out.append(f"| {a['backend']} | {a['impl']} | {a['max_rel_err']:.2e} | "
                   f"{100 * a['frac_rel_err_gt_1e-5']:.2f}% | {a['finite']} |")
    if result.get("notes"):
        out += ["", "## Notes", "", result["notes"].strip()]
    return "\n".join(out) + "\n"


def print_table(result: dict) -> None:
    for r in result["rows"]:
        head = (f"{r['workload']:13} {r.get('size', ''):14} {r['backend']:6} {r['mode']:7} "
                f"{r['impl'][:50]:50}")
        if r["status"] != "measured":
            print(f"{head}  missing: {r['reason']}")
            continue
        ratios = " ".join(f"[{_fmt_ratio(v)} vs {k}]" for k, v in r.get("ratios", {}).items())
        print(f"{head} {r['median_ms']:10.2f} ms {ratios}")
    for t in result["targets"]:
        met = "—" if t["met"] is None else ("met" if t["met"] else "NOT met")
        print(f"target: {t['target']} [{t['workload']} {t['size']} {t['mode']}]: "
              f"{_fmt_ratio(t['measured'])} (limit {t['limit']:g}) {met}")
