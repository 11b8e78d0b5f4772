"""Matcher and CLI workloads: RetinaNet anchors of real image sizes, random gts, and
``focal-array inspect`` on a generated COCO-like file."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from typing import Any

import numpy as np

from benchmarks.workloads import Case, import_or_reason, missing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def match_inputs(image: tuple[int, int], batch: int, gts: int, seed: int = 0):
    """RetinaNet anchors of an ``image`` (H, W) input and ``batch`` images of random xyxy
    gts inside it: a single image has all ``gts`` real; each image of a batch has
    ⌈gts/2⌉..gts real ones (images differ in their counts), padded to ``gts``."""
    from focal_array.anchors import retinanet_anchors

    h, w = image
    a = np.asarray(retinanet_anchors(image), dtype=np.float32)
    rng = np.random.default_rng(seed)
    # COCO-like: many small boxes, a few large ones (log-uniform sides)
    side = np.exp(rng.uniform(np.log(8.0), np.log(0.6 * min(h, w)), size=(batch, gts, 2)))
    x0 = rng.uniform(0, w - side[..., 0])
    y0 = rng.uniform(0, h - side[..., 1])
    g = np.stack([x0, y0, x0 + side[..., 0], y0 + side[..., 1]], axis=-1).astype(np.float32)
    n_real = (np.full((batch, 1), gts) if batch == 1
              else rng.integers((gts + 1) // 2, gts + 1, size=(batch, 1)))
    valid = np.arange(gts)[None, :] < n_real
    return a, g, valid


def torchvision_matcher() -> tuple[Any, str | None]:
    """torchvision's ``box_iou`` + ``Matcher(0.5, 0.4, allow_low_quality_matches=True)``
    as RetinaNet calls them (quality matrix (G, A)), or why it is unavailable."""
    ops, reason = import_or_reason("torchvision.ops")
    if ops is None:
        return None, reason
    try:
        from torchvision.models.detection._utils import Matcher
    except Exception as exc:
        return None, f"torchvision Matcher not importable ({type(exc).__name__}: {exc})"[:120]
    matcher = Matcher(0.5, 0.4, allow_low_quality_matches=True)
    return (lambda anchors, gts: matcher(ops.box_iou(gts, anchors))), None


def _torch_peer(at: Any, per_image: list, loop: bool) -> Case:
    """The real torchvision matcher, or its rule transcribed where torchvision is absent."""
    import torch

    tv_match, _ = torchvision_matcher()
    name = "torchvision box_iou + Matcher"
    if tv_match is None:
        import array_api_compat.torch as xpt

        from benchmarks import peers

        name = ("torchvision's box_iou + Matcher, transcribed (stand-in: torchvision not "
                "importable)")

        def tv_match(anchors, gts):
            return peers.plain_match(xpt, anchors, gts)
    name += " (loop over 8 images)" if loop else ""

    def run():
        with torch.no_grad():
            return [tv_match(at, gi) for gi in per_image]
    return Case("tv_loop" if loop else "tv", name, run)


def match_cases(workload: str, backend: str, mode: str, a: np.ndarray, g: np.ndarray,
                valid: np.ndarray) -> list[Case]:
    from focal_array.matcher import match_anchors

    if mode != "fwd":
        return []
    per_image = [np.ascontiguousarray(g[i][valid[i]]) for i in range(g.shape[0])]
    if workload == "match_1img":
        if backend == "numpy":
            return [Case("fa", "focal_array match_anchors", lambda: match_anchors(
                a, per_image[0]), peer=False)]
        if backend == "torch":
            import torch

            at, gt = torch.from_numpy(a), torch.from_numpy(per_image[0])

            def run_fa():
                with torch.no_grad():
                    return match_anchors(at, gt)
            return [Case("fa", "focal_array match_anchors eager", run_fa, peer=False,
                         vs=("tv",)), _torch_peer(at, [gt], loop=False)]
        return []  # the issue times per-image matching on NumPy and PyTorch
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        aj, gb, vb = jnp.asarray(a), jnp.asarray(g), jnp.asarray(valid)
        # anchors are an argument: a closed-over array would be compiled in as a constant
        batched = jax.jit(lambda a_, g_, v_: match_anchors(a_, g_, gt_valid=v_))
        # the same padded per-image arrays, so one compiled shape serves every image
        single = jax.jit(lambda a_, g_, v_: match_anchors(a_, g_, gt_valid=v_))
        rows = [(gb[i], vb[i]) for i in range(g.shape[0])]
        return [Case("fa", "focal_array match_anchors (jit, padded batch of 8)",
                     lambda: jax.block_until_ready(batched(aj, gb, vb)), peer=False,
                     vs=("jax_loop",), jax_lowered=lambda: batched.lower(aj, gb, vb)),
                Case("jax_loop", "focal_array match_anchors (jit, loop of 8 single-image "
                                 "calls)",
                     lambda: jax.block_until_ready([single(aj, gi, vi) for gi, vi in rows]))]
    if backend == "torch":
        import torch

        return [_torch_peer(torch.from_numpy(a), [torch.from_numpy(gi) for gi in per_image],
                            loop=True)]
    return []


# --------------------------------------------------------------------------- inspect


def coco_file(images: int, out_dir: str) -> tuple[str | None, str | None, float]:
    """Write (or reuse) the COCO-like file of ``images`` images: (path, why not, seconds)."""
    if importlib.util.find_spec("benchmarks.coco_like") is None:
        return None, "benchmarks/coco_like.py (the COCO-like generator) does not exist yet", 0.0
    os.makedirs(out_dir, exist_ok=True)  # the worker runs before the driver writes there
    path = os.path.join(out_dir, f"coco_like_{images}.json")
    t0 = time.perf_counter()
    if not os.path.exists(path):
        from benchmarks import coco_like

        data = coco_like.generate(images, seed=0)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(data, f)
        os.replace(tmp, path)
    return path, None, time.perf_counter() - t0


def _cli(*args: str) -> None:
    """``focal-array ARGS`` as a user runs it: a fresh interpreter, start-up included."""
    code = "import sys; from focal_array.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"focal-array {' '.join(args)} exited {proc.returncode}: {tail}")


def inspect_cases(backend: str, mode: str, images: int, out_dir: str | None) -> list[Case]:
    if backend != "numpy" or mode != "fwd":
        return []  # a CLI run: timed once, in the NumPy process (its default backend)
    names = [("inspect_native", "focal-array inspect (native image sizes)", ()),
             ("inspect_800x1333", "focal-array inspect --image-size 800 1333",
              ("--image-size", "800", "1333"))]
    path, why, seconds = coco_file(images, out_dir or os.path.join(ROOT, "benchmarks",
                                                                   "results"))
    if path is None:
        return [missing(k, n, why, peer=False) for k, n, _ in names]
    return [Case(k, n, lambda extra=extra: _cli("inspect", path, *extra), peer=False,
                 extra={"generate_s": round(seconds, 1)}) for k, n, extra in names]
