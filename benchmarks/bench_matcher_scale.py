"""RetinaNet-scale matching: time and peak extra memory of ``match_anchors`` per backend.

An 800×1333 image has ≈200,700 RetinaNet anchors (5 FPN levels × 9 anchors); with 100
ground truths per image and a batch of 16 the float32 IoU matrices alone take
B·A·G·4 bytes ≈ 1.28 GB. The target is a peak extra memory of at most four times that.

Each backend runs in a fresh subprocess; its peak extra memory is the process's maximum
resident set size (``resource.getrusage``) minus its resident size just before the first
call (inputs already built, libraries imported), so compile-time (JAX) and allocator
(PyTorch) overheads are included. Usage::

    python benchmarks/bench_matcher_scale.py                 # numpy, jax, torch
    python benchmarks/bench_matcher_scale.py --backends torch --batch 4
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _inputs(batch: int, anchors: int, gts: int):
    import numpy as np

    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 1333, size=(anchors, 2))
    wh = rng.uniform(16, 512, size=(anchors, 2))
    a = np.concatenate([xy - wh / 2, xy + wh / 2], axis=1).astype(np.float32)
    gxy = rng.uniform(0, 1200, size=(batch, gts, 2))
    gwh = rng.uniform(8, 400, size=(batch, gts, 2))
    g = np.concatenate([gxy, gxy + gwh], axis=2).astype(np.float32)
    n_real = rng.integers(1, gts + 1, size=(batch, 1))
    valid = np.arange(gts)[None, :] < n_real
    return a, g, valid


def worker(backend: str, batch: int, anchors: int, gts: int, repeats: int) -> dict:
    sys.path.insert(0, ROOT)
    a, g, valid = _inputs(batch, anchors, gts)
    from focal_array.matcher import match_anchors

    if backend == "numpy":
        import array_api_compat.numpy  # noqa: F401  (import cost outside the measurement)

        args = (a, g, valid)

        def run():
            return match_anchors(args[0], args[1], gt_valid=args[2])

        sync = lambda out: out  # noqa: E731
    elif backend == "jax":
        import jax
        import jax.numpy as jnp

        args = tuple(jnp.asarray(x) for x in (a, g, valid))
        fn = jax.jit(lambda a, g, v: match_anchors(a, g, gt_valid=v))

        def run():
            return fn(*args)

        sync = lambda out: out.block_until_ready()  # noqa: E731
    elif backend == "torch":
        import torch

        args = tuple(torch.from_numpy(x) for x in (a, g, valid))

        def run():
            with torch.no_grad():
                return match_anchors(args[0], args[1], gt_valid=args[2])

        sync = lambda out: out  # noqa: E731
    else:
        raise ValueError(backend)
    del a, g, valid
    base = _rss_bytes()
    times = []
    out = None
    for _ in range(repeats + 1):  # the first call includes JAX's compilation
        del out
        t0 = time.perf_counter()
        out = sync(run())
        times.append(time.perf_counter() - t0)
    peak = _maxrss_bytes() - base
    import numpy as np

    matched = np.asarray(out)
    return {
        "backend": backend,
        "first_s": times[0],
        "median_s": statistics.median(times[1:]),
        "peak_extra_bytes": peak,
        "positives": int((matched >= 0).sum()),
        "ignored": int((matched == -2).sum()),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backends", default="numpy,jax,torch")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--anchors", type=int, default=200_700)
    p.add_argument("--gts", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        res = worker(args.worker, args.batch, args.anchors, args.gts, args.repeats)
        print(json.dumps(res))
        return
    matrix = args.batch * args.anchors * args.gts * 4
    budget = 4 * matrix
    print(f"match_anchors: B={args.batch} A={args.anchors} G={args.gts}; one float32 IoU "
          f"batch = {matrix / 1e9:.2f} GB, budget 4x = {budget / 1e9:.2f} GB")
    print(f"{'backend':8} {'first call s':>12} {'median s':>9} {'peak extra GB':>14} "
          f"{'x IoU':>6} {'ok':>3} {'positives':>10}")
    for backend in args.backends.split(","):
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", backend,
               "--batch", str(args.batch), "--anchors", str(args.anchors),
               "--gts", str(args.gts), "--repeats", str(args.repeats)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(f"{backend:8} failed: {proc.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        ratio = r["peak_extra_bytes"] / matrix
        print(f"{backend:8} {r['first_s']:12.2f} {r['median_s']:9.2f} "
              f"{r['peak_extra_bytes'] / 1e9:14.2f} {ratio:6.2f} "
              f"{'yes' if r['peak_extra_bytes'] <= budget else 'NO':>3} {r['positives']:10d}")


if __name__ == "__main__":
    main()
