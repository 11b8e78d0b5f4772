"""The Flax example's dense detector in PyTorch: same network, data, loss and evaluation.

:func:`focal_array.dense_detection_loss` takes the head's torch tensors directly and
autograd differentiates through it; ``--compile`` wraps forward pass + loss in
``torch.compile``. The EMA normalizer is an ordinary tensor carried from step to step.
:func:`load_params` copies the Flax model's parameters into this one, so the two
compute the same outputs (``tests/test_examples.py`` checks that).

Run::

    python examples/torch_dense_detector.py              # γ = 2 (focal)
    python examples/torch_dense_detector.py --compare    # γ = 0 (CE) vs γ = 2
    python examples/torch_dense_detector.py --compile    # torch.compile the step
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import synthetic

import focal_array
from focal_array.normalization import ema_normalizer, init_ema_normalizer


def _conv(cin: int, cout: int, *, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1)


class DenseDetector(nn.Module):
    """``(N, 1, 64, 64)`` images → ``(logits (N, A, C), deltas (N, A, 4))``, in the anchor
    order of :func:`synthetic.make_anchors` (level, row, column, anchor)."""

    def __init__(self, num_classes: int = synthetic.NUM_CLASSES) -> None:
        super().__init__()
        self.num_classes = num_classes
        k = synthetic.ANCHORS_PER_LOCATION
        self.backbone = nn.ModuleList(_conv(i, o, stride=s) for i, o, s in synthetic.BACKBONE)
        width, top = synthetic.HEAD_WIDTH, synthetic.BACKBONE[-1][1]
        self.cls_tower, self.cls_out = _conv(top, width), _conv(width, k * num_classes)
        self.box_tower, self.box_out = _conv(top, width), _conv(width, k * 4)
        # the π = 0.01 prior bias and the rest of the initialization: load_params

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = []
        for conv in self.backbone:
            x = torch.relu(conv(x))
            feats.append(x)
        logits, deltas = [], []
        for f in feats[-2:]:
            n = f.shape[0]
            # NCHW → NHWC so the flattening order is (row, column, anchor) as the anchors'
            logits.append(self.cls_out(torch.relu(self.cls_tower(f))).permute(0, 2, 3, 1)
                          .reshape(n, -1, self.num_classes))
            deltas.append(self.box_out(torch.relu(self.box_tower(f))).permute(0, 2, 3, 1)
                          .reshape(n, -1, 4))
        return torch.cat(logits, dim=1), torch.cat(deltas, dim=1)


def load_params(model: DenseDetector, params: Mapping[str, Any]) -> DenseDetector:
    """Copy parameters in the Flax layout (:func:`synthetic.init_params`, or a trained
    Flax model's) into ``model``: kernels ``(H, W, in, out)`` become ``(out, in, H, W)``."""
    layers = {f"backbone_{i}": conv for i, conv in enumerate(model.backbone)}
    layers |= {name: getattr(model, name)
               for name in ("cls_tower", "cls_out", "box_tower", "box_out")}
    with torch.no_grad():
        for name, conv in layers.items():
            kernel = np.asarray(params[name]["kernel"]).transpose(3, 2, 0, 1)
            conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel)))
            conv.bias.copy_(torch.from_numpy(np.array(params[name]["bias"])))
    return model


def to_torch(batch: synthetic.Batch) -> tuple[torch.Tensor, ...]:
    """A :class:`synthetic.Batch` as tensors, images NCHW."""
    return (torch.from_numpy(batch.images).permute(0, 3, 1, 2).contiguous(),
            torch.from_numpy(batch.boxes), torch.from_numpy(batch.labels).long(),
            torch.from_numpy(batch.valid))


def make_loss_fn(model: DenseDetector, anchors: torch.Tensor, *, gamma: float,
                 alpha: float | None) -> Any:
    """``(ema, images, boxes, labels, valid) -> (loss, new_ema, stats)``; the loss is the
    sum from ``dense_detection_loss`` over the EMA of the positive count."""

    def loss_fn(ema: torch.Tensor, images: torch.Tensor, boxes: torch.Tensor,
                labels: torch.Tensor, valid: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        logits, deltas = model(images)
        out = focal_array.dense_detection_loss(
            logits, deltas, anchors, boxes, labels, gt_valid=valid, loss="focal",
            alpha=alpha, gamma=gamma, normalize=1.0)
        new_ema = ema_normalizer(ema, out["num_positives"])
        stats = {"classification": out["classification"] / new_ema,
                 "box_regression": out["box_regression"] / new_ema,
                 "num_positives": out["num_positives"]}
        # the per-positive loss does not drift with the EMA: it is what shows progress
        stats["per_positive"] = out["total"] / out["num_positives"].clamp(min=1.0)
        return out["total"] / new_ema, new_ema, stats

    return loss_fn


def train(*, steps: int, gamma: float, alpha: float | None = 0.25, seed: int = 0,
          batch_size: int = 16, lr: float = 2e-3, train_images: int = 1024,
          eval_images: int = 256, log_every: int = 50, compile: bool | str = False,
          verbose: bool = True, model: DenseDetector | None = None) -> dict[str, Any]:
    """Train one detector; return its losses, the model and COCO AP on held-out images
    (``"ap"``: :func:`synthetic.coco_metrics`).

    Same data, initial weights (unless ``model`` is given), batch order and schedule as
    the Flax example for the same ``seed``. ``compile``: True for ``torch.compile``'s
    default backend (inductor), or a backend name such as ``"aot_eager"``.
    """
    torch.manual_seed(seed)
    data = synthetic.make_dataset(train_images, seed=seed)
    held_out = synthetic.make_dataset(eval_images, seed=seed + 10_000)
    anchors = torch.from_numpy(synthetic.make_anchors())
    if model is None:
        model = load_params(DenseDetector(), synthetic.init_params(seed))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    # the same cosine decay as optax.cosine_decay_schedule
    sched = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda i: 0.5 * (1 + math.cos(math.pi * min(i, steps) / max(steps, 1))))
    loss_fn = make_loss_fn(model, anchors, gamma=gamma, alpha=alpha)
    if compile:
        loss_fn = torch.compile(loss_fn, **({} if compile is True else {"backend": compile}))
    ema = init_ema_normalizer(100.0, xp=torch, dtype=torch.float32)
    order = np.random.default_rng(seed).permutation(
        np.resize(np.arange(train_images), steps * batch_size))

    probe = to_torch(held_out.take(slice(0, 32)))

    def probe_loss() -> float:
        # loss per positive anchor on fixed held-out images: comparable across steps,
        # unlike the training batches' (other images) or the EMA-normalized loss
        with torch.no_grad():
            _, _, s = make_loss_fn(model, anchors, gamma=gamma, alpha=alpha)(
                torch.tensor(100.0), *probe)
        return s["per_positive"].item()

    before = probe_loss()
    losses, per_positive = [], []
    start = time.perf_counter()
    for i in range(steps):
        b = data.take(order[i * batch_size:(i + 1) * batch_size])
        loss, ema, stats = loss_fn(ema, *to_torch(b))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        sched.step()
        ema = ema.detach()
        losses.append(loss.item())
        per_positive.append(stats["per_positive"].item())
        if verbose and (i % log_every == 0 or i == steps - 1):
            synthetic.log_step(gamma, i, losses[-1], stats["classification"].item(),
                               stats["box_regression"].item(),
                               int(stats["num_positives"].item()), ema.item())
    seconds = time.perf_counter() - start
    after = probe_loss()
    if verbose:
        print(f"  held-out loss per positive anchor: {before:.4f} → {after:.4f}")

    with torch.no_grad():
        logits, deltas = model(to_torch(held_out)[0])
    dets = synthetic.detect(logits.numpy(), deltas.numpy(), anchors.numpy())
    return {"gamma": gamma, "losses": losses, "per_positive": per_positive,
            "held_out_loss": (before, after),
            "seconds": seconds, "model": model, "detections": dets,
            "ap": synthetic.coco_metrics(dets, held_out)}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line: ``--steps``, ``--gamma``, ``--alpha``, ``--seed``, ``--compare``,
    ``--compile``."""
    p = synthetic.base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--compile", action="store_true", help="torch.compile forward + loss")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[float, dict[str, Any]]:
    """Run the example; return ``{gamma: result of train()}`` for the runs made."""
    args = parse_args(argv)
    alpha = None if args.alpha < 0 else args.alpha
    results = {}
    for g in (0.0, 2.0) if args.compare else (args.gamma,):
        print(f"training γ = {g:g} ({'cross-entropy' if g == 0 else 'focal'}), "
              f"α = {alpha}, {args.steps} steps of {args.batch_size} images"
              f"{', torch.compile' if args.compile else ''}", flush=True)
        results[g] = train(steps=args.steps, gamma=g, alpha=alpha, seed=args.seed,
                           batch_size=args.batch_size, lr=args.lr,
                           train_images=args.train_images, eval_images=args.eval_images,
                           compile=args.compile)
    print()
    print(f"{'γ':>4}  {synthetic.METRICS_HEADER}  {'train s':>7}")
    for g, r in results.items():
        print(f"{g:4g}  {synthetic.metrics_row(r['ap'])}  {r['seconds']:7.1f}")
    return results


if __name__ == "__main__":
    main()
