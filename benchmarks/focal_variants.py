"""The focal family against its peers' formulas, forward and forward+backward.

Each loss of :mod:`focal_array.focal_variants` is timed on JAX (``jit``) and PyTorch
(eager) next to a straightforward transcription of its reference implementation on the
same backend — mmdetection's ``quality_focal_loss``, ``varifocal_loss`` and
``distribution_focal_loss``; the PolyLoss paper's Poly-1 code (sigmoid and softmax; not in
mmdetection); fvcore's ``sigmoid_focal_loss_star`` (not in mmdetection) — summed
(``reduction="sum"``), float32, on 200,000 anchors × 80 classes (DFL: 200,000 × 4 sides ×
17 bins)::

    python -m benchmarks.focal_variants                     # full size, both backends
    python -m benchmarks.focal_variants --quick             # smoke run, small sizes
    python -m benchmarks.focal_variants --backends torch --json /tmp/variants.json

One process per backend (as :mod:`benchmarks.run`); inside it every implementation is
warmed up (JIT compilation there), then the rounds are interleaved and the ratio
focal_array / peer is taken round by round (:func:`benchmarks.timing.time_group`); the
table shows medians. The 0/1 labels of Poly-1 and FL* reach each side in the dtype its
API takes, both made from the same array before timing: float32 for the peers' code and
for focal_array on PyTorch; a boolean mask for focal_array on JAX (under ``jit`` a
floating target cannot be known to be 0/1, so floats would run the soft-target form).
mmdetection's QFL on PyTorch is its own code (``nonzero`` and an
indexed write); on JAX, where that shape is data-dependent, the same formula as a
``where`` over the dense target. Nothing here asserts anything about speed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # `python benchmarks/focal_variants.py` as well as `-m`
    sys.path.insert(0, ROOT)

from benchmarks.timing import time_group  # noqa: E402
from benchmarks.workloads import Case, import_or_reason  # noqa: E402

LOSSES = ("qfl", "dfl", "vfl", "poly1", "softmax_poly1", "fl_star")
MODES = ("fwd", "fwd+bwd")
BACKENDS = ("jax", "torch")
PEER = {"qfl": "mmdetection quality_focal_loss", "dfl": "mmdetection distribution_focal_loss",
        "vfl": "mmdetection varifocal_loss", "poly1": "PolyLoss paper's Poly-1 focal",
        "softmax_poly1": "PolyLoss Poly-1 on log_softmax", "fl_star": "fvcore FL*"}
BETA, ALPHA_VFL, GAMMA, ALPHA, EPSILON, GAMMA_STAR = 2.0, 0.75, 2.0, 0.25, 1.0, 4.0


def sizes(quick: bool) -> tuple[tuple[int, int], tuple[int, int, int]]:
    """((anchors, classes), (anchors, sides, bins)) of the sigmoid/softmax and DFL losses."""
    return ((2_000, 8), (2_000, 4, 17)) if quick else ((200_000, 80), (200_000, 4, 17))


def inputs(quick: bool, seed: int = 0) -> dict[str, np.ndarray]:
    """Logits ~ N(0, 3); 1% positive anchors, each with one class and an IoU target in
    [0.3, 1]; softmax labels three quarters background (0); DFL logits ~ N(0, 2) and
    distances uniform in [0, n − 1.01] (mmdetection's domain)."""
    (n, c), dshape = sizes(quick)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c), dtype=np.float32) * np.float32(3.0)
    label = rng.integers(0, c + 1, n)  # c: background, mmdetection's convention
    label[rng.random(n) >= 0.01] = c
    score = rng.uniform(0.3, 1.0, n).astype(np.float32)
    dense = np.zeros((n, c), np.float32)
    pos = label < c
    dense[np.flatnonzero(pos), label[pos]] = score[pos]
    labels = rng.integers(0, c, n)
    labels[rng.random(n) < 0.75] = 0
    dx = rng.standard_normal(dshape, dtype=np.float32) * np.float32(2.0)
    dy = rng.uniform(0, dshape[-1] - 1.01, dshape[:-1]).astype(np.float32)
    return {"x": x, "label": label, "score": score, "dense": dense,
            "hard": (dense > 0).astype(np.float32), "labels": labels, "dx": dx, "dy": dy}


# --------------------------------------------------------------------------- PyTorch


def _torch_fns(d: dict[str, Any]) -> dict[str, tuple[Any, Any, Any]]:
    """loss -> (ours(x), peer(x), the logits) on PyTorch, each summed."""
    import torch
    import torch.nn.functional as F

    from focal_array import focal_variants as fv

    t = {k: torch.from_numpy(v) for k, v in d.items()}
    x, dense, hard, dx = t["x"], t["dense"], t["hard"], t["dx"]
    bg = x.shape[1]

    def mmdet_qfl(pred: Any) -> Any:  # mmdet/models/losses/gfocal_loss.py
        label, score = t["label"], t["score"]
        pred_sigmoid = pred.sigmoid()
        scale_factor = pred_sigmoid
        zerolabel = scale_factor.new_zeros(pred.shape)
        loss = F.binary_cross_entropy_with_logits(pred, zerolabel, reduction="none") \
            * scale_factor.pow(BETA)
        pos = ((label >= 0) & (label < bg)).nonzero().squeeze(1)
        pos_label = label[pos].long()
        scale_factor = score[pos] - pred_sigmoid[pos, pos_label]
        loss[pos, pos_label] = F.binary_cross_entropy_with_logits(
            pred[pos, pos_label], score[pos], reduction="none") * scale_factor.abs().pow(BETA)
        return loss.sum(dim=1).sum()

    def mmdet_vfl(pred: Any) -> Any:  # mmdet/models/losses/varifocal_loss.py
        pred_sigmoid = pred.sigmoid()
        focal_weight = dense * (dense > 0.0).float() + ALPHA_VFL * (
            pred_sigmoid - dense).abs().pow(GAMMA) * (dense <= 0.0).float()
        return (F.binary_cross_entropy_with_logits(pred, dense, reduction="none")
                * focal_weight).sum()

    def mmdet_dfl(pred: Any) -> Any:  # mmdet distribution_focal_loss on (N·4, n) rows
        label = t["dy"].reshape(-1)
        pred = pred.reshape(-1, pred.shape[-1])
        dis_left = label.long()
        dis_right = dis_left + 1
        weight_left = dis_right.float() - label
        weight_right = label - dis_left.float()
        return (F.cross_entropy(pred, dis_left, reduction="none") * weight_left
                + F.cross_entropy(pred, dis_right, reduction="none") * weight_right).sum()

    def paper_poly1(logits: Any) -> Any:  # PolyLoss, Poly-1 focal (sigmoid)
        p = torch.sigmoid(logits)
        ce = F.binary_cross_entropy_with_logits(logits, hard, reduction="none")
        pt = hard * p + (1 - hard) * (1 - p)
        fl = ce * (1 - pt) ** GAMMA * (ALPHA * hard + (1 - ALPHA) * (1 - hard))
        return (fl + EPSILON * torch.pow(1 - pt, GAMMA + 1)).sum()

    def paper_softmax_poly1(logits: Any) -> Any:
        lp = F.log_softmax(logits, dim=-1).gather(1, t["labels"][:, None])[:, 0]
        pt = lp.exp()
        return (-(1 - pt) ** GAMMA * lp + EPSILON * (1 - pt) ** (GAMMA + 1)).sum()

    def fvcore_star(inputs_: Any) -> Any:  # fvcore/nn/focal_loss.py, alpha ≥ 0
        shifted = GAMMA_STAR * (inputs_ * (2 * hard - 1))
        loss = -F.logsigmoid(shifted) / GAMMA_STAR
        return (loss * (ALPHA * hard + (1 - ALPHA) * (1 - hard))).sum()

    return {
        "qfl": (lambda a: fv.quality_focal_loss(a, dense, beta=BETA, reduction="sum"),
                mmdet_qfl, x),
        "dfl": (lambda a: fv.distribution_focal_loss(a, t["dy"], reduction="sum"),
                mmdet_dfl, dx),
        "vfl": (lambda a: fv.varifocal_loss(a, dense, alpha=ALPHA_VFL, gamma=GAMMA,
                                            reduction="sum"), mmdet_vfl, x),
        "poly1": (lambda a: fv.poly1_focal_loss(a, hard, epsilon=EPSILON, alpha=ALPHA,
                                                gamma=GAMMA, reduction="sum"), paper_poly1, x),
        "softmax_poly1": (lambda a: fv.softmax_poly1_focal_loss(
            a, t["labels"], epsilon=EPSILON, gamma=GAMMA, reduction="sum"),
            paper_softmax_poly1, x),
        "fl_star": (lambda a: fv.sigmoid_focal_loss_star(a, hard, gamma=GAMMA_STAR,
                                                         alpha=ALPHA, reduction="sum"),
                    fvcore_star, x),
    }


def _torch_run(f: Any, x: Any, mode: str) -> Any:
    import torch

    if mode == "fwd":
        def run() -> Any:
            with torch.no_grad():
                return f(x)
        return run

    def run_bwd() -> Any:
        xg = x.detach().requires_grad_(True)
        loss = f(xg)
        (g,) = torch.autograd.grad(loss, xg)
        return loss.detach(), g
    return run_bwd


# --------------------------------------------------------------------------- JAX


def _jax_fns(d: dict[str, Any]) -> dict[str, tuple[Any, Any, Any, Any, Any]]:
    """loss -> (ours(x, aux), peer(x, aux), the logits, our aux, the peer's aux) on JAX,
    each summed. The aux arrays hold the same targets; for Poly-1 and FL* (0/1 labels)
    each side gets them in the dtype its API takes, made once outside the timing: a bool
    mask for focal_array, float32 0/1 for the peer's code (which does arithmetic on
    them)."""
    import jax
    import jax.numpy as jnp

    from focal_array import focal_variants as fv

    j = {k: jnp.asarray(v) for k, v in d.items()}
    mask = jnp.asarray(d["hard"] > 0)

    def bce(x: Any, y: Any) -> Any:  # F.binary_cross_entropy_with_logits, as optax has it
        return jnp.maximum(x, 0) - x * y + jnp.log1p(jnp.exp(-jnp.abs(x)))

    def mmdet_qfl(pred: Any, score: Any) -> Any:  # its formula; the write as a where
        sig = jax.nn.sigmoid(pred)
        neg = bce(pred, 0.0) * sig**BETA
        pos = bce(pred, score) * jnp.abs(score - sig) ** BETA
        return jnp.sum(jnp.where(score > 0, pos, neg))

    def mmdet_vfl(pred: Any, target: Any) -> Any:
        sig = jax.nn.sigmoid(pred)
        fw = target * (target > 0.0) + ALPHA_VFL * jnp.abs(sig - target) ** GAMMA \
            * (target <= 0.0)
        return jnp.sum(bce(pred, target) * fw)

    def mmdet_dfl(pred: Any, label: Any) -> Any:
        logp = jax.nn.log_softmax(pred, axis=-1)
        left = label.astype(jnp.int32)
        right = left + 1
        ce_l = -jnp.take_along_axis(logp, left[..., None], axis=-1)[..., 0]
        ce_r = -jnp.take_along_axis(logp, right[..., None], axis=-1)[..., 0]
        return jnp.sum(ce_l * (right - label) + ce_r * (label - left))

    def paper_poly1(logits: Any, labels: Any) -> Any:
        p = jax.nn.sigmoid(logits)
        pt = labels * p + (1 - labels) * (1 - p)
        fl = bce(logits, labels) * (1 - pt) ** GAMMA * (ALPHA * labels + (1 - ALPHA)
                                                         * (1 - labels))
        return jnp.sum(fl + EPSILON * (1 - pt) ** (GAMMA + 1))

    def paper_softmax_poly1(logits: Any, labels: Any) -> Any:
        lp = jnp.take_along_axis(jax.nn.log_softmax(logits, -1), labels[:, None], -1)[:, 0]
        pt = jnp.exp(lp)
        return jnp.sum(-(1 - pt) ** GAMMA * lp + EPSILON * (1 - pt) ** (GAMMA + 1))

    def fvcore_star(inputs_: Any, targets: Any) -> Any:
        shifted = GAMMA_STAR * (inputs_ * (2 * targets - 1))
        loss = -jax.nn.log_sigmoid(shifted) / GAMMA_STAR
        return jnp.sum(loss * (ALPHA * targets + (1 - ALPHA) * (1 - targets)))

    x = j["x"]
    return {
        "qfl": (lambda a, b: fv.quality_focal_loss(a, b, beta=BETA, reduction="sum"),
                mmdet_qfl, x, j["dense"], j["dense"]),
        "dfl": (lambda a, b: fv.distribution_focal_loss(a, b, reduction="sum"), mmdet_dfl,
                j["dx"], j["dy"], j["dy"]),
        "vfl": (lambda a, b: fv.varifocal_loss(a, b, alpha=ALPHA_VFL, gamma=GAMMA,
                                               reduction="sum"), mmdet_vfl, x, j["dense"],
                j["dense"]),
        "poly1": (lambda a, b: fv.poly1_focal_loss(a, b, epsilon=EPSILON, alpha=ALPHA,
                                                   gamma=GAMMA, reduction="sum"),
                  paper_poly1, x, mask, j["hard"]),
        "softmax_poly1": (lambda a, b: fv.softmax_poly1_focal_loss(
            a, b, epsilon=EPSILON, gamma=GAMMA, reduction="sum"), paper_softmax_poly1, x,
            j["labels"], j["labels"]),
        "fl_star": (lambda a, b: fv.sigmoid_focal_loss_star(a, b, gamma=GAMMA_STAR,
                                                            alpha=ALPHA, reduction="sum"),
                    fvcore_star, x, mask, j["hard"]),
    }


# --------------------------------------------------------------------------- worker


def cases(backend: str, loss: str, mode: str, fns: dict) -> list[Case]:
    """focal_array's case and its peer's, for one (backend, loss, mode)."""
    if backend == "torch":
        ours, peer, x = fns[loss]
        return [Case("fa", "focal_array eager", _torch_run(ours, x, mode), peer=False),
                Case("peer", PEER[loss] + " eager", _torch_run(peer, x, mode))]
    import jax

    ours, peer, x, aux_ours, aux_peer = fns[loss]
    out = []
    for key, name, f, aux, is_peer in (
            ("fa", "focal_array (jit)", ours, aux_ours, False),
            ("peer", PEER[loss] + " (jit)", peer, aux_peer, True)):
        jitted = jax.jit(f if mode == "fwd" else jax.value_and_grad(f))
        out.append(Case(key, name, lambda j=jitted, a=aux: jax.block_until_ready(j(x, a)),
                        peer=is_peer))
    return out


def worker(backend: str, losses: list[str], quick: bool, repeats: int | None) -> list[dict]:
    import warnings

    warnings.filterwarnings("ignore")
    d = inputs(quick)
    fns = _torch_fns(d) if backend == "torch" else _jax_fns(d)
    warm, reps = (1, 3) if quick else (1, 7)
    rows = []
    for loss in losses:
        for mode in MODES:
            for row in time_group(cases(backend, loss, mode, fns), warm, repeats or reps):
                row.update({"backend": backend, "loss": loss, "mode": mode})
                row.pop("times_ms", None)
                rows.append(row)
            print(f"[focal_variants] {backend} {loss} {mode}", file=sys.stderr, flush=True)
    return rows


def _run_worker(backend: str, args: argparse.Namespace) -> list[dict]:
    reason = import_or_reason(backend)[1]
    if reason is None:
        cmd = [sys.executable, "-m", "benchmarks.focal_variants", "--worker", backend,
               "--losses", ",".join(args.losses)] + (["--quick"] if args.quick else []) \
            + (["--repeats", str(args.repeats)] if args.repeats else [])
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                              timeout=args.timeout, check=False)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(("[{", "[]"))]
        if proc.returncode == 0 and lines:
            return json.loads(lines[-1])
        reason = f"worker failed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}"
    return [{"key": "fa", "impl": f"all ({backend})", "peer": False, "status": "missing",
             "reason": reason, "backend": backend, "loss": loss, "mode": mode}
            for loss in args.losses for mode in MODES]


def table(rows: list[dict]) -> str:
    """Markdown: one line per (backend, loss, mode): both medians, the median ratio."""
    out = ["| backend | loss | mode | focal_array ms | peer | peer ms | ours / peer |",
           "|---|---|---|---:|---|---:|---:|"]
    groups: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        groups.setdefault((r["backend"], r["loss"], r["mode"]), {})[r["key"]] = r
    for (backend, loss, mode), g in groups.items():
        fa, peer = g.get("fa", {}), g.get("peer", {})
        if fa.get("status") != "measured" or peer.get("status") != "measured":
            why = fa.get("reason") or peer.get("reason") or "not measured"
            out.append(f"| {backend} | {loss} | {mode} | — | {PEER[loss]} | — | {why} |")
            continue
        ratio = fa["ratios"]["peer"]["median"]
        out.append(f"| {backend} | {loss} | {mode} | {fa['median_ms']:.2f} | "
                   f"{peer['impl']} | {peer['median_ms']:.2f} | {ratio:.2f} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    ap.add_argument("--backends", default=",".join(BACKENDS))
    ap.add_argument("--losses", default=",".join(LOSSES))
    ap.add_argument("--repeats", type=int, default=None, help="timed rounds (default 7)")
    ap.add_argument("--json", default=None, help="also write the rows to this file")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per backend")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.losses = [s for s in args.losses.split(",") if s]
    unknown = sorted(set(args.losses) - set(LOSSES))
    if unknown:
        ap.error(f"unknown losses {unknown}; choose from {', '.join(LOSSES)}")
    if args.worker:
        print(json.dumps(worker(args.worker, args.losses, args.quick, args.repeats)))
        return 0
    rows = []
    for backend in [b for b in args.backends.split(",") if b]:
        if backend not in BACKENDS:
            ap.error(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
        print(f"[focal_variants] timing on {backend} ...", file=sys.stderr, flush=True)
        rows.extend(_run_worker(backend, args))
    (n, c), dshape = sizes(args.quick)
    print(f"focal family, float32, reduction='sum': {n:,} × {c} "
          f"(DFL {' × '.join(f'{s:,}' for s in dshape)}); medians of interleaved rounds\n")
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"quick": args.quick, "sizes": {"sigmoid": [n, c], "dfl": dshape},
                       "rows": rows}, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
