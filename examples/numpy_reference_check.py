"""Check JAX and PyTorch against NumPy: the same saved batch, the same loss, three libraries.

A detection batch (synthetic ground truth plus a detector head's raw outputs: logits with
the π = 0.01 prior and small box deltas) is written with ``np.savez`` and read back. Then
:func:`focal_array.dense_detection_loss` runs on it as NumPy float64 (the reference),
NumPy float32, JAX float32 and PyTorch float32 arrays — one function, the caller's arrays —
and the script prints each value and its relative difference from the reference, and the
JAX-vs-PyTorch difference of the gradient with respect to the logits.

Run::

    python examples/numpy_reference_check.py [--out batch.npz] [--images 8] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import synthetic

from focal_array import dense_detection_loss

#: (label, keyword options) of the losses compared
CONFIGS = (
    ("focal γ=2, /positives", {"loss": "focal", "gamma": 2.0}),
    ("CE (γ=0), /positives", {"loss": "focal", "gamma": 0.0}),
    ("focal γ=2, /assigned", {"loss": "focal", "gamma": 2.0, "normalize": "assigned"}),
    ("focal γ=2, /image, giou", {"loss": "focal", "gamma": 2.0, "normalize": "image",
                                 "box_loss": "giou"}),
)
KEYS = ("classification", "box_regression", "total", "num_positives")
FIELDS = ("logits", "deltas", "anchors", "boxes", "labels", "valid")


def save_batch(path: str | Path, *, images: int = 8, seed: int = 0) -> Path:
    """Write a deterministic batch (ground truth + head outputs) to ``path`` (.npz)."""
    rng = np.random.default_rng(seed)
    data = synthetic.make_dataset(images, seed=seed)
    anchors = synthetic.make_anchors()
    a = anchors.shape[0]
    logits = synthetic.prior_bias() + rng.normal(0.0, 2.0, size=(images, a,
                                                                   synthetic.NUM_CLASSES))
    deltas = rng.normal(0.0, 0.2, size=(images, a, 4))
    np.savez(path, logits=logits.astype(np.float32), deltas=deltas.astype(np.float32),
             anchors=anchors, boxes=data.boxes, labels=data.labels, valid=data.valid)
    return Path(path)


def _values(out: dict[str, Any]) -> dict[str, float]:
    return {k: float(np.asarray(out[k].detach() if hasattr(out[k], "detach") else out[k]))
            for k in KEYS}


def check(path: str | Path, *, verbose: bool = True) -> dict[str, float]:
    """Compare the libraries on the batch at ``path``.

    Returns:
        ``{"<backend> <config>": max relative difference from NumPy float64}`` over the
        loss values, plus ``"grad <config>"``: the max difference of dL/dlogits between
        JAX and PyTorch relative to its largest magnitude.
    """
    with np.load(path) as z:
        batch = {k: z[k] for k in FIELDS}
    ref64 = {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in batch.items()}
    backends: dict[str, Any] = {"numpy float32": lambda b: b}
    grads: dict[str, Any] = {}
    try:
        import jax
        import jax.numpy as jnp

        backends["jax float32"] = lambda b: {k: jnp.asarray(v) for k, v in b.items()}

        def jax_grad(b: dict[str, Any], kw: dict[str, Any]) -> np.ndarray:
            def f(lg: Any) -> Any:
                return dense_detection_loss(lg, b["deltas"], b["anchors"], b["boxes"],
                                            b["labels"], gt_valid=b["valid"], **kw)["total"]
            return np.asarray(jax.grad(f)(b["logits"]))

        grads["jax"] = jax_grad
    except ImportError:
        print("jax not installed: skipped")
    try:
        import torch

        backends["torch float32"] = lambda b: {k: torch.from_numpy(np.asarray(v))
                                               for k, v in b.items()}

        def torch_grad(b: dict[str, Any], kw: dict[str, Any]) -> np.ndarray:
            lg = b["logits"].clone().requires_grad_(True)
            dense_detection_loss(lg, b["deltas"], b["anchors"], b["boxes"], b["labels"],
                                 gt_valid=b["valid"], **kw)["total"].backward()
            return lg.grad.numpy()

        grads["torch"] = torch_grad
    except ImportError:
        print("torch not installed: skipped")

    report: dict[str, float] = {}
    for label, kw in CONFIGS:
        ref = _values(dense_detection_loss(*(ref64[k] for k in FIELDS[:5]),
                                           gt_valid=ref64["valid"], **kw))
        if verbose:
            print(f"{label}:  NumPy float64 " + ", ".join(f"{k} {v:.7g}"
                                                          for k, v in ref.items()))
        converted = {}
        for name, convert in backends.items():
            b = convert(batch)
            converted[name.split()[0]] = b
            got = _values(dense_detection_loss(*(b[k] for k in FIELDS[:5]),
                                               gt_valid=b["valid"], **kw))
            rel = max(abs(got[k] - ref[k]) / max(abs(ref[k]), 1e-30) for k in KEYS)
            report[f"{name} {label}"] = rel
            if verbose:
                print(f"    {name:14s} total {got['total']:.7g}   max rel diff {rel:.1e}")
        if len(grads) == 2:
            gj = grads["jax"](converted["jax"], kw)
            gt = grads["torch"](converted["torch"], kw)
            diff = float(np.max(np.abs(gj - gt)) / np.max(np.abs(gt)))
            report[f"grad {label}"] = diff
            if verbose:
                print(f"    dL/dlogits     JAX vs PyTorch: max diff / max |grad| {diff:.1e}")
    return report


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """Save (or reuse) a batch, compare, print; return :func:`check`'s report."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", help="where to write the batch (.npz; default: a temp dir)")
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = save_batch(args.out or Path(tmp) / "batch.npz", images=args.images,
                          seed=args.seed)
        print(f"batch saved to {path}")
        report = check(path)
    worst = max(report.values())
    print(f"worst relative difference: {worst:.1e}")
    return report


if __name__ == "__main__":
    main()
