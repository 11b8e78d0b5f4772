"""RetinaNet-scale matching: time and peak extra memory of ``match_anchors`` per backend,
and (``--sweep``) its speed against torchvision at COCO's ground-truth counts.

An 800×1333 image has ≈200,700 RetinaNet anchors (5 FPN levels × 9 anchors); with 100
ground truths per image and a batch of 16 the float32 IoU matrices alone take
B·A·G·4 bytes ≈ 1.28 GB. The target is a peak extra memory of at most four times that.

Each backend runs in a fresh subprocess; its peak extra memory is the process's maximum
resident set size (``resource.getrusage``) minus its resident size just before the first
call (inputs already built, libraries imported), so compile-time (JAX) and allocator
(PyTorch) overheads are included. Usage::

    python benchmarks/bench_matcher_scale.py                 # numpy, jax, torch
    python benchmarks/bench_matcher_scale.py --backends torch --batch 4
    python benchmarks/bench_matcher_scale.py --sweep           # G x image size, vs torchvision

The sweep times, per image and G in {3, 7, 20, 50, 200} gts, on the RetinaNet anchors of
a 480x640 and an 800x1333 image: NumPy and PyTorch eager ``match_anchors``, torchvision's
``box_iou`` + ``Matcher(0.5, 0.4, allow_low_quality_matches=True)`` (when importable),
a plain NumPy IoU in the (G, A) layout, and JAX ``jit`` on a padded batch of 8 against a
loop of 8 single-image ``jit`` calls and a torchvision loop over the 8 images. The rows of
one size run interleaved (one call of each, ``--repeats`` rounds), so a slow spell on a
shared machine hits every row alike; medians and pairwise ratios are printed.
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


# --------------------------------------------------------------------------- sweep


def _coco_like_gts(rng, n: int, height: int, width: int, batch: int = 1):
    """``(batch, n, 4)`` float32 xyxy boxes inside the image, COCO-like sizes (log-uniform
    side 8 px .. image, aspect ratio in [1/e, e])."""
    import numpy as np

    cx = rng.uniform(0, width, (batch, n))
    cy = rng.uniform(0, height, (batch, n))
    side = np.exp(rng.uniform(np.log(8), np.log(min(height, width)), (batch, n)))
    ratio = np.exp(rng.uniform(-1, 1, (batch, n)))
    w, h = side * np.sqrt(ratio), side / np.sqrt(ratio)
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)
    boxes[..., 0::2] = boxes[..., 0::2].clip(0, width)
    boxes[..., 1::2] = boxes[..., 1::2].clip(0, height)
    return boxes.astype(np.float32)


def _numpy_iou_ga(anchors, gts):
    """A plain NumPy IoU in the (G, A) layout: the floor of any NumPy matcher."""
    import numpy as np

    a, g = anchors.T[:, None, :], gts[:, :, None]
    w = np.maximum(np.minimum(a[2], g[:, 2]) - np.maximum(a[0], g[:, 0]), 0)
    h = np.maximum(np.minimum(a[3], g[:, 3]) - np.maximum(a[1], g[:, 1]), 0)
    inter = w * h
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_g = (g[:, 2] - g[:, 0]) * (g[:, 3] - g[:, 1])
    return inter / (area_a + area_g - inter)


def _sweep_rows(size, n_gts, batch, seed, skip=()):
    """name -> zero-argument callable, all for one image size and G (torch/jax rows only
    when importable). Every row's matches are also checked equal to NumPy's."""
    import array_api_compat.numpy as xnp
    import numpy as np

    from focal_array.anchors import retinanet_anchors
    from focal_array.matcher import match_anchors

    rng = np.random.default_rng(seed)
    anchors = np.asarray(retinanet_anchors(size, xp=xnp))
    gts = _coco_like_gts(rng, n_gts, *size)[0]
    rows = {"numpy": lambda: match_anchors(anchors, gts),
            "numpy IoU (G,A)": lambda: _numpy_iou_ga(anchors, gts)}
    reference = np.asarray(match_anchors(anchors, gts))
    checks = {}
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        ta, tg = torch.from_numpy(anchors), torch.from_numpy(gts)
        rows["torch"] = lambda: match_anchors(ta, tg)
        checks["torch"] = match_anchors(ta, tg).numpy()
        try:
            from torchvision.models.detection._utils import Matcher
            from torchvision.ops import box_iou
        except ImportError:
            pass
        else:
            tv = Matcher(0.5, 0.4, allow_low_quality_matches=True)
            rows["torchvision"] = lambda: tv(box_iou(tg, ta))
            batch_gts = _coco_like_gts(rng, n_gts, *size, batch=batch)
            tbg = [torch.from_numpy(g) for g in batch_gts]
            rows[f"torchvision loop x{batch}"] = lambda: [tv(box_iou(g, ta)) for g in tbg]
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        jax = None
    if "jax" in skip:
        jax = None
    if jax is not None:
        batch_gts = _coco_like_gts(rng, n_gts, *size, batch=batch)
        valid = np.ones((batch, n_gts), bool)
        valid[::2, max(n_gts // 2, 1):] = False  # every other image padded to about G/2
        ja, jg, jv = jnp.asarray(anchors), jnp.asarray(batch_gts), jnp.asarray(valid)
        fn = jax.jit(lambda a, g, v: match_anchors(a, g, gt_valid=v))
        rows[f"jax jit batch x{batch}"] = lambda: fn(ja, jg, jv).block_until_ready()
        singles = [(jg[i], jv[i]) for i in range(batch)]
        rows[f"jax jit loop x{batch}"] = lambda: [fn(ja, g, v) for g, v in singles][-1] \
            .block_until_ready()
        fn(ja, jg, jv).block_until_ready()
        fn(ja, *singles[0]).block_until_ready()  # compile both shapes outside the timing
        checks["jax batch"] = (np.asarray(fn(ja, jg, jv)), np.stack([
            np.asarray(match_anchors(anchors, batch_gts[i], gt_valid=valid[i]))
            for i in range(batch)]))
    for name, got in checks.items():
        got, want = got if isinstance(got, tuple) else (got, reference)
        if not np.array_equal(got, want):
            print(f"  note: {name} matches differ from NumPy's in "
                  f"{int((got != want).sum())} anchors (float32 rounding of exact ties)")
    return rows, anchors.shape[0]


_RATIOS = [
    ("numpy", "torchvision", 0.8),
    ("torch", "torchvision", 0.8),
    ("numpy", "numpy IoU (G,A)", None),
    ("jax jit batch x{b}", "torchvision loop x{b}", 0.25),
    ("jax jit batch x{b}", "jax jit loop x{b}", 0.8),
]


def sweep(sizes, gt_counts, batch: int, repeats: int, threads: int,
          cell_seconds: float = 8.0, skip=()) -> list[dict]:
    """Interleaved timing of every row per (size, G); returns one record per cell."""
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass
    records = []
    for size in sizes:
        for n_gts in gt_counts:
            rows, n_anchors = _sweep_rows(size, n_gts, batch, seed=n_gts, skip=skip)
            times = {name: [] for name in rows}
            for fn in rows.values():  # warm-up (JAX compiled above)
                fn()
            start = time.perf_counter()
            for done in range(repeats):
                # at least 3 rounds; more while the cell stays within its time budget
                if done >= 3 and time.perf_counter() - start > cell_seconds:
                    break
                for name, fn in rows.items():
                    t0 = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - t0)
            medians = {k: statistics.median(v) for k, v in times.items()}
            record = {"size": list(size), "anchors": n_anchors, "gts": n_gts,
                      "rounds": len(times["numpy"]),
                      "median_ms": {k: v * 1e3 for k, v in medians.items()}, "ratios": {}}
            for num, den, target in _RATIOS:
                num, den = num.format(b=batch), den.format(b=batch)
                if num in medians and den in medians:
                    record["ratios"][f"{num} / {den}"] = {
                        "ratio": medians[num] / medians[den], "target": target}
            records.append(record)
            _print_record(record)
    return records


def _print_record(r: dict) -> None:
    h, w = r["size"]
    times = "  ".join(f"{k} {v:.2f}" for k, v in r["median_ms"].items())
    print(f"{h}x{w} A={r['anchors']} G={r['gts']} ({r['rounds']} rounds): {times} (ms)")
    for k, v in r["ratios"].items():
        target = v["target"]
        verdict = "" if target is None else (" ok" if v["ratio"] <= target else " MISSED") \
            + f" (target <= {target})"
        print(f"    {k:48s} {v['ratio']:6.2f}{verdict}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backends", default="numpy,jax,torch")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--anchors", type=int, default=200_700)
    p.add_argument("--gts", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--sweep", action="store_true",
                   help="G x image size sweep against torchvision (per image, medians)")
    p.add_argument("--gt-counts", default="3,7,20,50,200")
    p.add_argument("--sizes", default="480x640,800x1333")
    p.add_argument("--sweep-batch", type=int, default=8)
    p.add_argument("--sweep-repeats", type=int, default=15)
    p.add_argument("--cell-seconds", type=float, default=8.0,
                   help="time budget per (size, G) cell beyond the first 3 rounds")
    p.add_argument("--skip", default="", help="comma-separated row families to leave out "
                   "(jax)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (sweep)")
    p.add_argument("--json", help="also write the sweep records to this file")
    args = p.parse_args()
    if args.sweep:
        sys.path.insert(0, ROOT)
        sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
        gt_counts = [int(v) for v in args.gt_counts.split(",")]
        print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; torch threads "
              f"{args.threads}; {args.sweep_repeats} interleaved rounds; medians")
        records = sweep(sizes, gt_counts, args.sweep_batch, args.sweep_repeats, args.threads,
                        args.cell_seconds, tuple(filter(None, args.skip.split(","))))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(records, f, indent=1)
        return
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
