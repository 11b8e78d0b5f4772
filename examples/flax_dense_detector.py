"""A small RetinaNet-style dense detector in Flax, trained with optax and focal_array.

The network (``synthetic.BACKBONE``: five 3×3 convs, pyramid levels at strides 8 and 16)
feeds a classification head and a box head shared by both levels; the classification
bias starts at −log((1 − π)/π), π = 0.01, so every anchor begins at P(object) = 0.01 and
the thousands of easy negatives do not swamp the first steps. One ``jax.jit``-compiled
train step does the forward pass, :func:`focal_array.dense_detection_loss` (matching,
targets, classification and box losses), the gradient and the optax update. The loss is
divided by an EMA of the positive-anchor count (detectron2's normalizer), carried in and
out of the step as an array.

Run::

    python examples/flax_dense_detector.py              # γ = 2 (focal), ~35 s on 2 idle cores
    python examples/flax_dense_detector.py --compare    # γ = 0 (CE) vs γ = 2, same budget
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import synthetic

import focal_array
from focal_array.normalization import ema_normalizer, init_ema_normalizer


def build_model() -> Any:
    """The Flax linen detector; ``apply`` maps ``(N, 64, 64, 1)`` images to
    ``(logits (N, A, C), deltas (N, A, 4))`` in the anchor order of
    :func:`synthetic.make_anchors`."""
    import flax.linen as nn
    import jax.numpy as jnp

    k = synthetic.ANCHORS_PER_LOCATION
    pad = ((1, 1), (1, 1))  # as torch's padding=1, so the PyTorch twin computes the same

    def conv(features: int, name: str, *, stride: int = 1) -> nn.Conv:
        # initial values come from init_params (synthetic.init_params), not from here
        return nn.Conv(features, (3, 3), strides=stride, padding=pad, name=name)

    class DenseDetector(nn.Module):
        num_classes: int = synthetic.NUM_CLASSES

        @nn.compact
        def __call__(self, x: Any) -> tuple[Any, Any]:
            feats = []
            for i, (_, out, stride) in enumerate(synthetic.BACKBONE):
                x = nn.relu(conv(out, f"backbone_{i}", stride=stride)(x))
                feats.append(x)
            # one set of head weights applied to every level, as in RetinaNet
            cls_tower = conv(synthetic.HEAD_WIDTH, "cls_tower")
            cls_out = conv(k * self.num_classes, "cls_out")
            box_tower = conv(synthetic.HEAD_WIDTH, "box_tower")
            box_out = conv(k * 4, "box_out")
            logits, deltas = [], []
            for f in feats[-2:]:
                n, h, w, _ = f.shape
                logits.append(cls_out(nn.relu(cls_tower(f))).reshape(
                    n, h * w * k, self.num_classes))
                deltas.append(box_out(nn.relu(box_tower(f))).reshape(n, h * w * k, 4))
            return jnp.concatenate(logits, axis=1), jnp.concatenate(deltas, axis=1)

    return DenseDetector()


def init_params(seed: int = 0) -> Any:
    """Initial parameters for :func:`build_model`: :func:`synthetic.init_params` as a
    pytree of float32 JAX arrays.

    (Flax's own ``model.init`` would do too, but compiling it costs ~10 s on a CPU, and
    sharing the NumPy initialization gives the PyTorch example the same starting point.)
    """
    import jax
    import jax.numpy as jnp

    return jax.tree_util.tree_map(jnp.asarray, synthetic.init_params(seed))


def make_train_step(model: Any, optimizer: Any, anchors: Any, *, gamma: float,
                    alpha: float | None) -> Any:
    """The jitted ``(params, opt_state, ema, batch...) -> (params, opt_state, ema, stats)``.

    The EMA normalizer is an explicit input and output (no hidden state): the step asks
    ``dense_detection_loss`` for plain sums (``normalize=1.0``) and divides them by the
    EMA it updates with this batch's positive count.
    """
    import jax
    import optax

    def loss_fn(params: Any, ema: Any, images: Any, boxes: Any, labels: Any, valid: Any
                ) -> tuple[Any, tuple[Any, Any]]:
        logits, deltas = model.apply({"params": params}, images)
        out = focal_array.dense_detection_loss(
            logits, deltas, anchors, boxes, labels, gt_valid=valid, loss="focal",
            alpha=alpha, gamma=gamma, normalize=1.0)
        new_ema = ema_normalizer(ema, out["num_positives"])
        stats = {"loss": out["total"] / new_ema,
                 "classification": out["classification"] / new_ema,
                 "box_regression": out["box_regression"] / new_ema,
                 "num_positives": out["num_positives"]}
        # the per-positive loss does not drift with the EMA: it is what shows progress
        stats["per_positive"] = out["total"] / jax.numpy.maximum(out["num_positives"], 1.0)
        return stats["loss"], (new_ema, stats)

    @jax.jit
    def train_step(params: Any, opt_state: Any, ema: Any, images: Any, boxes: Any,
                   labels: Any, valid: Any) -> tuple[Any, Any, Any, dict[str, Any]]:
        (_, (ema, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, ema, images, boxes, labels, valid)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, ema, stats

    return train_step


def train(*, steps: int, gamma: float, alpha: float | None = 0.25, seed: int = 0,
          batch_size: int = 16, lr: float = 2e-3, train_images: int = 1024,
          eval_images: int = 256, log_every: int = 50, verbose: bool = True
          ) -> dict[str, Any]:
    """Train one detector; return its losses, final parameters and COCO AP on held-out
    images (``"ap"``: :func:`synthetic.coco_metrics`).

    Data, initial weights and batch order depend only on ``seed``, so two calls that
    differ in ``gamma`` see exactly the same images in the same order from the same start.
    """
    import jax
    import jax.numpy as jnp
    import optax

    data = synthetic.make_dataset(train_images, seed=seed)
    held_out = synthetic.make_dataset(eval_images, seed=seed + 10_000)
    anchors = jnp.asarray(synthetic.make_anchors())
    model = build_model()
    params = init_params(seed)
    optimizer = optax.chain(optax.clip_by_global_norm(10.0),
                            optax.adam(optax.cosine_decay_schedule(lr, max(steps, 1))))
    opt_state = optimizer.init(params)
    ema = init_ema_normalizer(100.0, xp=jnp, dtype=jnp.float32)
    step = make_train_step(model, optimizer, anchors, gamma=gamma, alpha=alpha)
    order = np.random.default_rng(seed).permutation(
        np.resize(np.arange(train_images), steps * batch_size))

    probe_batch = [jnp.asarray(a) for a in held_out.take(slice(0, 32))]

    @jax.jit
    def probe_loss(params: Any) -> Any:
        # loss per positive anchor on fixed held-out images: comparable across steps,
        # unlike the training batches' (other images) or the EMA-normalized loss
        logits, deltas = model.apply({"params": params}, probe_batch[0])
        out = focal_array.dense_detection_loss(
            logits, deltas, anchors, *probe_batch[1:3], gt_valid=probe_batch[3],
            alpha=alpha, gamma=gamma, normalize="positives")
        return out["total"]

    before = float(probe_loss(params))
    losses, per_positive = [], []
    start = time.perf_counter()
    for i in range(steps):
        b = data.take(order[i * batch_size:(i + 1) * batch_size])
        params, opt_state, ema, stats = step(params, opt_state, ema, *map(jnp.asarray, b))
        losses.append(float(stats["loss"]))
        per_positive.append(float(stats["per_positive"]))
        if verbose and (i % log_every == 0 or i == steps - 1):
            synthetic.log_step(gamma, i, losses[-1], float(stats["classification"]),
                               float(stats["box_regression"]), int(stats["num_positives"]),
                               float(ema))
    seconds = time.perf_counter() - start
    after = float(probe_loss(params))
    if verbose:
        print(f"  held-out loss per positive anchor: {before:.4f} → {after:.4f}")

    apply = jax.jit(model.apply)
    logits, deltas = [], []
    for s in range(0, eval_images, 64):
        lg, dl = apply({"params": params}, jnp.asarray(held_out.images[s:s + 64]))
        logits.append(np.asarray(lg))
        deltas.append(np.asarray(dl))
    dets = synthetic.detect(np.concatenate(logits), np.concatenate(deltas),
                            np.asarray(anchors))
    ap = synthetic.coco_metrics(dets, held_out)
    return {"gamma": gamma, "losses": losses, "per_positive": per_positive,
            "held_out_loss": (before, after), "ap": ap, "detections": dets,
            "seconds": seconds, "params": params}


def _window_mean(losses: Sequence[float], n: int = 20) -> tuple[float, float]:
    n = max(1, min(n, len(losses) // 2))
    return float(np.mean(losses[:n])), float(np.mean(losses[-n:]))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line: ``--steps``, ``--gamma``, ``--alpha``, ``--seed``, ``--compare``."""
    p = synthetic.base_parser(__doc__.split("\n\n")[0])
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the example; return ``{gamma: result of train()}`` for the runs made."""
    args = parse_args(argv)
    alpha = None if args.alpha < 0 else args.alpha
    gammas = (0.0, 2.0) if args.compare else (args.gamma,)
    results = {}
    for g in gammas:
        print(f"training γ = {g:g} ({'cross-entropy' if g == 0 else 'focal'}), "
              f"α = {alpha}, {args.steps} steps of {args.batch_size} images", flush=True)
        results[g] = train(steps=args.steps, gamma=g, alpha=alpha, seed=args.seed,
                           batch_size=args.batch_size, lr=args.lr,
                           train_images=args.train_images, eval_images=args.eval_images)
    print()
    print(f"{'γ':>4}  {'loss first→last 20':>22}  {synthetic.METRICS_HEADER}  {'train s':>7}")
    for g, r in results.items():
        first, last = _window_mean(r["losses"])
        print(f"{g:4g}  {first:10.4f} → {last:9.4f}  {synthetic.metrics_row(r['ap'])}"
              f"  {r['seconds']:7.1f}")
    if len(results) == 2:
        print("(losses of different γ are on different scales; compare the AP)")
    return results


if __name__ == "__main__":
    main()
