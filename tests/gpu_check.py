"""The cross-route equivalence checks of ``test_matching_routes`` on a CUDA device.

Prepared for a machine with an NVIDIA GPU, JAX with CUDA and a CUDA build of PyTorch::

    python tests/gpu_check.py                  # JAX and PyTorch on the GPU
    python tests/gpu_check.py --backends torch --out gpu_check.json
    python tests/gpu_check.py --dry-run        # every code path, on the CPU

On the COCO-like batch of ``test_matching_routes`` (16 images, float boxes, crowds,
padding) it checks, against the CPU NumPy result:

* matches, integer for integer: JAX eager (one image at a time), ``jit`` at every batch
  size 1–16, ``vmap``; PyTorch eager and ``torch.compile`` — for both tie rules;
* ``dense_detection_loss``: the number of positives (equal), the total and the gradients
  with respect to the logits and box deltas (within 1e-5 relative of NumPy's total and
  of CPU JAX's gradients).

Exit codes: 0 every check passed (or no CUDA device for any requested backend: a message
says so and nothing is checked); 1 a check failed (the JSON says which); 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
for p in (HERE, HERE.parent):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from test_matching_routes import BATCH, RULES, make_batch, reference_matches  # noqa: E402

from focal_array.detection import dense_detection_loss  # noqa: E402
from focal_array.matcher import match_anchors  # noqa: E402

RTOL = 1e-5
KEYS = ("gt", "valid", "crowd")
LOSS_KEYS = ("logits", "deltas", "gt", "labels", "valid", "crowd")


def _compare_matches(name: str, got: Any, want: np.ndarray, report: dict[str, Any]) -> None:
    got = np.asarray(got)
    report[name] = int((got != want).sum())


def _rel(got: Any, want: Any) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-30))


def check_jax(batch: dict[str, np.ndarray], expected: dict[str, np.ndarray], device: str,
              report: dict[str, Any], sizes: Any = range(1, BATCH + 1)) -> bool:
    import jax
    import jax.numpy as jnp

    devices = [d for d in jax.devices() if d.platform == device] if device != "cpu" else \
        jax.devices("cpu")
    if not devices:
        return False
    dev = devices[0]

    def put(x):
        return jax.device_put(jnp.asarray(x), dev)

    anchors = put(batch["anchors"])
    for rule in RULES:
        want = expected[rule]
        for i in range(0, BATCH, 5):
            one = match_anchors(anchors, *(put(batch[k][i]) for k in ("gt",)),
                                gt_valid=put(batch["valid"][i]),
                                gt_crowd=put(batch["crowd"][i]), tie_rule=rule)
            _compare_matches(f"jax/{rule}/eager image {i}", one, want[i], report)

        def step(gt, valid, crowd, rule=rule):
            return match_anchors(anchors, gt, gt_valid=valid, gt_crowd=crowd, tie_rule=rule)

        jitted = jax.jit(step)
        for b in sizes:
            got = jitted(*(put(batch[k][:b]) for k in KEYS))
            _compare_matches(f"jax/{rule}/jit batch {b}", got, want[:b], report)
        got = jax.jit(jax.vmap(step))(*(put(batch[k]) for k in KEYS))
        _compare_matches(f"jax/{rule}/vmap", got, want, report)

    cpu = jax.devices("cpu")[0]

    def total(logits, deltas, gt, labels, valid, crowd, anchors):
        out = dense_detection_loss(logits, deltas, anchors, gt, labels, gt_valid=valid,
                                   gt_crowd=crowd)
        return out["total"], out["num_positives"]

    grad = jax.jit(jax.value_and_grad(total, argnums=(0, 1), has_aux=True))
    (t_cpu, _), g_cpu = grad(*(jax.device_put(jnp.asarray(batch[k]), cpu) for k in LOSS_KEYS),
                             jax.device_put(jnp.asarray(batch["anchors"]), cpu))
    (t, npos), g = grad(*(put(batch[k]) for k in LOSS_KEYS), anchors)
    report["jax/loss"] = {"positives": float(npos), "total": float(t),
                          "total_cpu": float(t_cpu),
                          "grad_rel": [_rel(a, b) for a, b in zip(g, g_cpu, strict=True)]}
    report["jax/grads_cpu"] = [np.asarray(x) for x in g_cpu]  # for the torch comparison
    return True


def check_torch(batch: dict[str, np.ndarray], expected: dict[str, np.ndarray], device: str,
                report: dict[str, Any], compile_: bool) -> bool:
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        return False

    def put(x):
        return torch.as_tensor(x).to(device)

    anchors = put(batch["anchors"])
    for rule in RULES:
        def step(anchors, gt, valid, crowd, rule=rule):
            return match_anchors(anchors, gt, gt_valid=valid, gt_crowd=crowd, tie_rule=rule)

        routes = [("eager", step)]
        if compile_:
            torch._dynamo.reset()
            routes.append(("compile", torch.compile(step, fullgraph=True)))
        for name, fn in routes:
            got = fn(anchors, *(put(batch[k]) for k in KEYS))
            _compare_matches(f"torch/{rule}/{name}", got.cpu().numpy(), expected[rule],
                             report)

    def total(logits, deltas, gt, labels, valid, crowd):
        out = dense_detection_loss(logits, deltas, anchors, gt, labels, gt_valid=valid,
                                   gt_crowd=crowd)
        return out["total"], out["num_positives"]

    routes = [("eager", total)]
    if compile_:
        torch._dynamo.reset()
        routes.append(("compile", torch.compile(total, fullgraph=True)))
    for name, fn in routes:
        logits = put(batch["logits"]).requires_grad_(True)
        deltas = put(batch["deltas"]).requires_grad_(True)
        t, npos = fn(logits, deltas, *(put(batch[k]) for k in LOSS_KEYS[2:]))
        t.backward()
        entry = {"positives": float(npos), "total": float(t.detach())}
        if "jax/grads_cpu" in report:
            entry["grad_rel"] = [_rel(x.grad.cpu().numpy(), ref) for x, ref in
                                 zip((logits, deltas), report["jax/grads_cpu"], strict=True)]
        report[f"torch/loss/{name}"] = entry
    return True


def failures(report: dict[str, Any], reference: dict[str, float]) -> list[str]:
    """The names of the checks that failed."""
    bad = [k for k, v in report.items() if isinstance(v, int) and v != 0]
    for k, v in report.items():
        if not (k.endswith("/loss") or "/loss/" in k):
            continue
        if v["positives"] != reference["num_positives"]:
            bad.append(f"{k} positives")
        if abs(v["total"] - reference["total"]) > RTOL * abs(reference["total"]):
            bad.append(f"{k} total")
        if any(r > RTOL for r in v.get("grad_rel", [])):
            bad.append(f"{k} gradients")
    return bad


def main(argv: list[str] | None = None) -> int:
    """Run the checks; see the module docstring."""
    parser = argparse.ArgumentParser(prog="python tests/gpu_check.py",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="jax,torch")
    parser.add_argument("--dry-run", action="store_true",
                        help="run every code path on the CPU (no torch.compile, 2 jit batch "
                             "sizes), for a smoke test")
    parser.add_argument("--out", default=None, metavar="FILE.json")
    args = parser.parse_args(argv)
    backends = args.backends.split(",")
    if not set(backends) <= {"jax", "torch"}:
        parser.error(f"--backends must name jax and/or torch, got {args.backends!r}")
    batch = make_batch()
    expected = {rule: reference_matches(batch["anchors"], batch["gt"], batch["valid"],
                                        batch["crowd"], rule) for rule in RULES}
    numpy_loss = dense_detection_loss(batch["logits"], batch["deltas"], batch["anchors"],
                                      batch["gt"], batch["labels"], gt_valid=batch["valid"],
                                      gt_crowd=batch["crowd"])
    reference = {k: float(v) for k, v in numpy_loss.items()}
    report: dict[str, Any] = {}
    ran = []
    # the dry run compiles 2 batch sizes, not 16: it checks the code paths, not the device
    sizes = (1, BATCH) if args.dry_run else range(1, BATCH + 1)
    if "jax" in backends and check_jax(batch, expected, "cpu" if args.dry_run else "gpu",
                                       report, sizes):
        ran.append("jax")
    if "torch" in backends and check_torch(batch, expected,
                                           "cpu" if args.dry_run else "cuda", report,
                                           compile_=not args.dry_run):
        ran.append("torch")
    report.pop("jax/grads_cpu", None)
    if not ran:
        print(f"no CUDA device for {', '.join(backends)}: nothing checked")
        return 0
    bad = failures(report, reference)
    summary = {"backends": ran, "dry_run": args.dry_run, "reference": reference,
               "checks": report, "failed": bad}
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=1))
    print(f"{len(report)} checks on {', '.join(ran)}: "
          + ("all passed" if not bad else f"{len(bad)} failed: {', '.join(bad[:10])}"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
