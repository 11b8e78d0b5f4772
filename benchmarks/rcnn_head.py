"""Faster R-CNN box-head loss path: focal_array's one jitted call against torchvision's.

Timed per call, for a padded batch of images with RPN-like proposals (a share of them
jittered around the gts) and up to ``--gts`` ground truths each:

* ``fa_jax`` — :func:`focal_array.rcnn.rcnn_head_loss` under ``jax.jit``: IoU matching of
  the proposals with the gts appended, balanced sampling, softmax cross-entropy and the
  class-specific smooth-L1 loss, and (mode ``fwd+bwd``) the gradient with respect to the
  logits and deltas of all ``P + G`` proposals (the sample is a mask).
* ``fa_torch`` — the same function on PyTorch, eager.
* ``tv`` — torchvision's RoI-head training path as ``RoIHeads`` runs it: per image
  ``add_gt_proposals``, ``box_ops.box_iou``, ``Matcher(0.5, 0.5, False)``, the labels,
  ``BalancedPositiveNegativeSampler(512, 0.25)``, the sampled proposals' ``BoxCoder
  ((10, 10, 5, 5)).encode``, then ``fastrcnn_loss`` on the head's outputs for the sampled
  proposals (a slice of a leaf tensor: in a real model the head runs on those only) and
  (``fwd+bwd``) their gradient. torchvision itself when importable, else a transcription
  of those steps in torch, labelled so.

Rounds are interleaved (:func:`benchmarks.timing.time_group`): round r runs every
implementation once, and ratios are per round. The head itself (RoI pooling, the FC
layers) is not timed; note that the static-shape path needs it on ``P + G`` proposals per
image where torchvision runs it on the ``num_samples`` sampled ones.

Usage::

    python -m benchmarks.rcnn_head [--quick] [--rounds 7] [--threads N] [--json OUT.json]

``--threads 1`` runs PyTorch and XLA single-threaded: on a small shared machine where
other work holds a core, PyTorch's OpenMP threads wait on each other at every operation
and small operations slow down by an order of magnitude (by default both libraries use
every core).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from typing import Any

import numpy as np

from benchmarks.timing import time_group
from benchmarks.workloads import Case, import_or_reason, missing

#: (images, proposals per image, gts per image at most, foreground classes, num_samples)
FULL = (8, 2000, 50, 80, 512)
QUICK = (2, 300, 8, 10, 64)
WEIGHTS = (10.0, 10.0, 5.0, 5.0)


def make_inputs(batch: int, proposals: int, max_gts: int, classes: int, seed: int = 0
                ) -> dict[str, np.ndarray]:
    """float32 xyxy proposals (30% jittered copies of gts, the rest random) and padded gts
    (``max_gts // 2 .. max_gts`` real per image) in an 800 × 1333 image, gts appended."""
    from focal_array.rcnn import append_gt_proposals

    r = np.random.default_rng(seed)
    h, w = 800.0, 1333.0
    side = np.exp(r.uniform(np.log(16.0), np.log(400.0), size=(batch, max_gts, 2)))
    x0 = r.uniform(0, w - side[..., 0])
    y0 = r.uniform(0, h - side[..., 1])
    gts = np.stack([x0, y0, x0 + side[..., 0], y0 + side[..., 1]], -1)
    n_real = r.integers(max(max_gts // 2, 1), max_gts + 1, size=(batch, 1))
    valid = np.arange(max_gts)[None, :] < n_real
    labels = r.integers(0, classes, size=(batch, max_gts))
    props = np.empty((batch, proposals, 4))
    for i in range(batch):
        real = gts[i][valid[i]]
        src = real[r.integers(0, len(real), size=proposals)]
        size = np.concatenate([src[:, 2:] - src[:, :2]] * 2, -1)
        jittered = src + r.normal(0, 0.12, size=(proposals, 4)) * size
        sx = np.exp(r.uniform(np.log(8.0), np.log(500.0), size=(proposals, 2)))
        px = r.uniform(0, w - sx[:, 0])
        py = r.uniform(0, h - sx[:, 1])
        rand = np.stack([px, py, px + sx[:, 0], py + sx[:, 1]], -1)
        box = np.where(r.random((proposals, 1)) < 0.3, jittered, rand)
        lo = np.minimum(box[:, :2], box[:, 2:])
        hi = np.maximum(box[:, :2], box[:, 2:]) + 1.0
        props[i] = np.clip(np.concatenate([lo, hi], -1), 0, [w, h, w, h])
    gts = np.where(valid[..., None], gts, 0.0).astype(np.float32)
    boxes, pvalid = append_gt_proposals(props.astype(np.float32), gts, gt_valid=valid)
    n = boxes.shape[1]
    return {"boxes": boxes, "proposal_valid": pvalid, "gts": gts, "gt_labels": labels,
            "gt_valid": valid, "proposals": props.astype(np.float32),
            "logits": r.normal(0, 1, size=(batch, n, classes + 1)).astype(np.float32),
            "deltas": r.normal(0, 0.3, size=(batch, n, (classes + 1) * 4)).astype(np.float32)}


# --------------------------------------------------------------------------- torchvision


def _torchvision_parts() -> tuple[dict[str, Any], str]:
    """torchvision's box_iou, Matcher, sampler, BoxCoder and fastrcnn_loss, or a torch
    transcription of each (the label says which)."""
    roi, _ = import_or_reason("torchvision.models.detection.roi_heads")
    if roi is not None:
        from torchvision.models.detection import _utils
        from torchvision.ops import boxes as box_ops

        return ({"box_iou": box_ops.box_iou, "matcher": _utils.Matcher(0.5, 0.5, False),
                 "sampler": _utils.BalancedPositiveNegativeSampler(512, 0.25),
                 "coder": _utils.BoxCoder(WEIGHTS), "loss": roi.fastrcnn_loss},
                "torchvision RoIHeads path (box_iou, Matcher, sampler, fastrcnn_loss)")
    return (_transcribed(), "torchvision RoIHeads path, torch transcription (torchvision "
                            "not importable)")


def _transcribed() -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    def box_iou(b1, b2):
        area1 = (b1[:, 2] - b1[:, 0]) * (b1[:, 3] - b1[:, 1])
        area2 = (b2[:, 2] - b2[:, 0]) * (b2[:, 3] - b2[:, 1])
        lt = torch.max(b1[:, None, :2], b2[:, :2])
        rb = torch.min(b1[:, None, 2:], b2[:, 2:])
        wh = (rb - lt).clamp(min=0)
        inter = wh[:, :, 0] * wh[:, :, 1]
        return inter / (area1[:, None] + area2 - inter)

    def matcher(q):  # Matcher(0.5, 0.5, allow_low_quality_matches=False)
        vals, matches = q.max(dim=0)
        matches[vals < 0.5] = -1
        matches[(vals >= 0.5) & (vals < 0.5)] = -2
        return matches

    class Sampler:
        batch_size_per_image, positive_fraction = 512, 0.25

        def __call__(self, matched_idxs):
            pos_idx, neg_idx = [], []
            for m in matched_idxs:
                positive = torch.where(m >= 1)[0]
                negative = torch.where(m == 0)[0]
                num_pos = int(self.batch_size_per_image * self.positive_fraction)
                num_pos = min(positive.numel(), num_pos)
                num_neg = min(negative.numel(), self.batch_size_per_image - num_pos)
                perm1 = torch.randperm(positive.numel(), device=positive.device)[:num_pos]
                perm2 = torch.randperm(negative.numel(), device=negative.device)[:num_neg]
                pm = torch.zeros_like(m, dtype=torch.uint8)
                nm = torch.zeros_like(m, dtype=torch.uint8)
                pm[positive[perm1]] = 1
                nm[negative[perm2]] = 1
                pos_idx.append(pm)
                neg_idx.append(nm)
            return pos_idx, neg_idx

    class Coder:
        def encode(self, reference_boxes, proposals):
            boxes_per_image = [len(b) for b in reference_boxes]
            ref, prop = torch.cat(reference_boxes), torch.cat(proposals)
            wx, wy, ww, wh = WEIGHTS
            pw, ph = prop[:, 2] - prop[:, 0], prop[:, 3] - prop[:, 1]
            px, py = prop[:, 0] + 0.5 * pw, prop[:, 1] + 0.5 * ph
            gw, gh = ref[:, 2] - ref[:, 0], ref[:, 3] - ref[:, 1]
            gx, gy = ref[:, 0] + 0.5 * gw, ref[:, 1] + 0.5 * gh
            t = torch.stack((wx * (gx - px) / pw, wy * (gy - py) / ph,
                             ww * torch.log(gw / pw), wh * torch.log(gh / ph)), dim=1)
            return t.split(boxes_per_image, 0)

    def fastrcnn_loss(class_logits, box_regression, labels, regression_targets):
        labels = torch.cat(labels, dim=0)
        regression_targets = torch.cat(regression_targets, dim=0)
        classification_loss = F.cross_entropy(class_logits, labels)
        pos = torch.where(labels > 0)[0]
        n, _ = class_logits.shape
        box_regression = box_regression.reshape(n, box_regression.size(-1) // 4, 4)
        box_loss = F.smooth_l1_loss(box_regression[pos, labels[pos]], regression_targets[pos],
                                    beta=1 / 9, reduction="sum")
        return classification_loss, box_loss / labels.numel()

    return {"box_iou": box_iou, "matcher": matcher, "sampler": Sampler(), "coder": Coder(),
            "loss": fastrcnn_loss}


def _tv_case(inp: dict[str, np.ndarray], num_samples: int, backward: bool) -> Case:
    import torch

    parts, name = _torchvision_parts()
    parts["sampler"].batch_size_per_image = num_samples
    b = inp["gts"].shape[0]
    props = [torch.from_numpy(inp["proposals"][i]) for i in range(b)]
    gts = [torch.from_numpy(inp["gts"][i][inp["gt_valid"][i]]) for i in range(b)]
    gls = [torch.from_numpy(inp["gt_labels"][i][inp["gt_valid"][i]] + 1) for i in range(b)]
    k = inp["logits"].shape[-1]
    # the head's outputs for the (at most num_samples per image) sampled proposals
    logits = torch.from_numpy(inp["logits"][:, :num_samples].reshape(-1, k).copy())
    deltas = torch.from_numpy(inp["deltas"][:, :num_samples].reshape(-1, 4 * k).copy())
    logits.requires_grad_(backward)
    deltas.requires_grad_(backward)

    def step():
        proposals = [torch.cat((p, g)) for p, g in zip(props, gts, strict=True)]
        matched_idxs, labels = [], []
        for p, g, gl in zip(proposals, gts, gls, strict=True):
            m = parts["matcher"](parts["box_iou"](g, p))
            clamped = m.clamp(min=0)
            lab = gl[clamped].to(dtype=torch.int64)
            lab[m == -1] = 0
            lab[m == -2] = -1
            matched_idxs.append(clamped)
            labels.append(lab)
        pos, neg = parts["sampler"](labels)
        matched_gt = []
        for i, (pi, ni) in enumerate(zip(pos, neg, strict=True)):
            inds = torch.where(pi | ni)[0]
            proposals[i] = proposals[i][inds]
            labels[i] = labels[i][inds]
            matched_gt.append(gts[i][matched_idxs[i][inds]])
        targets = parts["coder"].encode(matched_gt, proposals)
        n = sum(len(lab) for lab in labels)
        cls, box = parts["loss"](logits[:n], deltas[:n], labels, targets)
        total = cls + box
        if backward:
            return torch.autograd.grad(total, (logits, deltas))
        return total

    def run():
        if backward:
            return step()
        with torch.no_grad():
            return step()

    return Case("tv", name, run)


# --------------------------------------------------------------------------- focal_array


def _jax_case(inp: dict[str, np.ndarray], num_samples: int, backward: bool) -> Case:
    jax, reason = import_or_reason("jax")
    if jax is None:
        return missing("fa_jax", "focal_array rcnn_head_loss (jax.jit)", reason, peer=False)
    import jax.numpy as jnp

    from focal_array.rcnn import rcnn_head_loss

    names = ("logits", "deltas", "boxes", "gts", "gt_labels", "gt_valid", "proposal_valid")
    args = [jnp.asarray(inp[k]) for k in names]

    def total(x, d, boxes, gts, labels, gv, pv, key):
        return rcnn_head_loss(x, d, boxes, gts, labels, gt_valid=gv, proposal_valid=pv,
                              rng=key, num_samples=num_samples)["total"]

    fn = jax.jit(jax.value_and_grad(total, argnums=(0, 1)) if backward else total)
    key = jax.random.key(0)
    what = "fwd+bwd" if backward else "fwd"
    return Case("fa_jax", f"focal_array rcnn_head_loss (jax.jit, {what})",
                lambda: jax.block_until_ready(fn(*args, key)), peer=False, vs=("tv",),
                jax_lowered=lambda: fn.lower(*args, key))


def _torch_case(inp: dict[str, np.ndarray], num_samples: int, backward: bool) -> Case:
    import torch

    from focal_array.rcnn import rcnn_head_loss

    t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in inp.items()}
    x = t["logits"].clone().requires_grad_(backward)
    d = t["deltas"].clone().requires_grad_(backward)
    gen = torch.Generator().manual_seed(0)

    def step():
        out = rcnn_head_loss(x, d, t["boxes"], t["gts"], t["gt_labels"],
                             gt_valid=t["gt_valid"], proposal_valid=t["proposal_valid"],
                             rng=gen, num_samples=num_samples)["total"]
        return torch.autograd.grad(out, (x, d)) if backward else out

    def run():
        if backward:
            return step()
        with torch.no_grad():
            return step()

    return Case("fa_torch", "focal_array rcnn_head_loss (PyTorch eager)", run, peer=False,
                vs=("tv",))


# --------------------------------------------------------------------------- driver


def run(quick: bool, rounds: int | None) -> dict[str, Any]:
    import warnings

    warnings.filterwarnings("ignore")
    b, p, g, c, s = QUICK if quick else FULL
    inp = make_inputs(b, p, g, c)
    warm, reps = (1, 3) if quick else (2, 7)
    reps = rounds or reps
    rows = []
    for mode in ("fwd", "fwd+bwd"):
        backward = mode == "fwd+bwd"
        cases = [_jax_case(inp, s, backward), _torch_case(inp, s, backward),
                 _tv_case(inp, s, backward)]
        for row in time_group(cases, warm, reps):
            row["mode"] = mode
            rows.append(row)
    sampled = {"images": b, "proposals": p, "max_gts": g, "classes": c, "num_samples": s,
               "real_gts": int(inp["gt_valid"].sum()),
               "boxes_per_image": int(inp["boxes"].shape[1])}
    import torch

    return {"size": sampled, "quick": quick, "torch_threads": torch.get_num_threads(),
            "rows": rows}


def render(result: dict[str, Any]) -> str:
    z = result["size"]
    lines = [f"R-CNN head loss path: {z['images']} images x {z['proposals']} proposals "
             f"(+ up to {z['max_gts']} gts, {z['real_gts']} real in all; "
             f"{z['boxes_per_image']} boxes per image), {z['classes']} classes + background, "
             f"{z['num_samples']} sampled per image; median of interleaved rounds; "
             f"PyTorch threads: {result['torch_threads']}",
             "", f"{'mode':8} {'implementation':78} {'median ms':>10} {'min ms':>9} "
             f"{'first ms':>9} {'ratio vs tv':>12} {'min / min':>10}"]
    tv_min = {r["mode"]: r["min_ms"] for r in result["rows"]
              if r["key"] == "tv" and r["status"] == "measured"}
    for row in result["rows"]:
        if row["status"] != "measured":
            lines.append(f"{row['mode']:8} {row['impl'][:78]:78} missing: {row['reason']}")
            continue
        ratio = row.get("ratios", {}).get("tv")
        r = f"{ratio['median']:.2f}x" if ratio else ""
        m = f"{row['min_ms'] / tv_min[row['mode']]:.2f}x" if ratio and row["mode"] in tv_min \
            else ""
        lines.append(f"{row['mode']:8} {row['impl'][:78]:78} {row['median_ms']:10.2f} "
                     f"{row['min_ms']:9.2f} {row['first_call_ms']:9.0f} {r:>12} {m:>10}")
    lines.append("")
    lines.append("ratio vs tv = median over rounds of focal_array time / torchvision time in "
                 "the same round (< 1: faster); min / min = fastest round over fastest round "
                 "(less sensitive to other load on a shared machine).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few rounds")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds")
    parser.add_argument("--threads", type=int, default=None,
                        help="intra-op threads of PyTorch (and, with 1, of XLA)")
    parser.add_argument("--json", default=None, help="write the rows to this file")
    args = parser.parse_args(argv)
    if args.threads:
        if args.threads == 1 and "jax" not in sys.modules:
            os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_"
                                       "thread_eigen=false intra_op_parallelism_threads=1")
        import torch

        torch.set_num_threads(args.threads)
    result = run(args.quick, args.rounds)
    print(render(result))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1, default=float)
    medians = [r["median_ms"] for r in result["rows"] if r["status"] == "measured"]
    return 0 if medians and statistics.fmean(medians) > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
