"""The loss rows of the sweep on a CUDA device, JAX and PyTorch, with the fraction of HBM
bandwidth each call reaches.

Prepared for a machine with an NVIDIA GPU (none is lent to this project's runs)::

    python -m benchmarks.gpu                       # every loss row, both backends
    python -m benchmarks.gpu --backends torch --out gpu.json
    python -m benchmarks.gpu --peak-gbps 3350      # a device the table does not know
    python -m benchmarks.gpu --dry-run             # CPU smoke run of every code path

Rows: sigmoid focal loss at the sweep's sizes (batch 1 and 8), softmax cross-entropy and
softmax focal loss at theirs, forward and forward + backward, focal_array next to the same
peers as on CPU (torchvision eager and compiled, ``F.cross_entropy``, the log_softmax
focal losses, optax), built by :mod:`benchmarks.workloads` with the tensors on the device.
Each call is followed by a device synchronization (``torch.cuda.synchronize``; JAX's
``block_until_ready`` is in every case already), repeats are interleaved as on CPU.

Bandwidth: the least traffic a loss can have is reading its inputs once and, for
fwd+bwd, writing the gradient once: bytes = logits + targets/labels (+ gradient, the
logits' size). The fraction is bytes / median time / the device's peak (``PEAK_GBPS`` by
device name, ``--peak-gbps`` to override); 1.0 is a loss as fast as a copy.

Exit codes: 0 measured, or no CUDA device for any requested backend (a message says so
and nothing is measured); 1 a backend's worker failed; 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks import timing  # noqa: E402
from benchmarks import workloads as W  # noqa: E402

#: peak HBM bandwidth, GB/s, by words of the device name (all must occur; first match
#: wins): "NVIDIA H100 80GB HBM3" is the SXM part, the PCIe card says so in its name
PEAK_GBPS = [(("H200",), 4800.0), (("H100", "PCIe"), 2000.0), (("H100",), 3350.0),
             (("A100", "80GB"), 2000.0), (("A100",), 1555.0), (("L4",), 300.0)]
DRY_RUN_GBPS = 20.0  # a nominal figure so the CPU smoke run exercises the arithmetic
LOSS_WORKLOADS = W.LOSS_WORKLOADS


def peak_gbps(name: str) -> float | None:
    words = set(re.split(r"[\s\-_]+", name.upper()))  # "L4" must not match "L40S"
    for keys, gbps in PEAK_GBPS:
        if all(k.upper() in words for k in keys):
            return gbps
    return None


def traffic_bytes(inputs: tuple, mode: str) -> int:
    """Least bytes moved: every input read once, the gradient (logits-sized) written once."""
    moved = sum(int(a.nbytes) for a in inputs)
    return moved + (int(inputs[0].nbytes) if mode == "fwd+bwd" else 0)


def _device(backend: str, dry_run: bool) -> tuple[Any, str | None]:
    """(device handle, device name), or (None, why there is none)."""
    if backend == "torch":
        import torch

        if dry_run:
            return "cpu", "CPU (dry run)"
        if not torch.cuda.is_available():
            return None, "torch sees no CUDA device"
        return "cuda", torch.cuda.get_device_name(0)
    import jax

    if dry_run:
        return jax.devices("cpu")[0], "CPU (dry run)"
    try:
        dev = jax.devices("gpu")[0]
    except RuntimeError:
        return None, "jax sees no GPU (is jax[cuda12] installed?)"
    return dev, dev.device_kind


def worker(backend: str, dry_run: bool, repeats: int, peak: float | None) -> dict:
    import warnings

    warnings.filterwarnings("ignore")
    dev, name = _device(backend, dry_run)
    if dev is None:
        return {"backend": backend, "device": None, "reason": name, "rows": []}
    source = ("--peak-gbps" if peak else "nominal (dry run)" if dry_run
              else "table" if peak_gbps(name) else "unknown device: pass --peak-gbps")
    peak = peak or (DRY_RUN_GBPS if dry_run else peak_gbps(name))
    if backend == "jax":
        import jax

        jax.config.update("jax_default_device", dev)
        sync = None  # every JAX case blocks until ready already
    else:
        import torch

        sync = torch.cuda.synchronize if dev == "cuda" else None
    rows = []
    for w in LOSS_WORKLOADS:
        # the dry run takes every other quick size: each code path, half the compiles
        for size in W.sizes(w, quick=dry_run)[::2 if dry_run else 1]:
            inputs = W.inputs_for(size)
            for mode in W.MODES:
                if backend == "torch":
                    import torch

                    torch._dynamo.reset()  # one compile per shape, no recompile limit
                # the dry run compiles one size only: enough to run the path, and compiling
                # every tiny shape on a CPU would take most of its time
                compile_torch = not dry_run or (w, size.key) == ("sigmoid_b1", "500")
                cases = W.build_cases(size, backend, mode, inputs, compile_torch=compile_torch,
                                      device=dev if backend == "torch" else "cpu")
                if sync is not None:
                    for c in cases:
                        if c.run is not None:
                            c.run = (lambda f: lambda: (f(), sync()))(c.run)
                moved = traffic_bytes(inputs, mode)
                for r in timing.time_group(cases, 1 if dry_run else 3, repeats):
                    r.update(workload=w, size=size.key, size_label=size.label, x=size.x,
                             backend=backend, mode=mode, bytes=moved)
                    if r["status"] == "measured":
                        gbps = moved / (r["median_ms"] * 1e-3) / 1e9
                        r.update(achieved_gbps=gbps,
                                 hbm_fraction=None if peak is None else gbps / peak)
                    rows.append(r)
                print(f"[gpu] {backend} {w} {size.key} {mode}", file=sys.stderr, flush=True)
    return {"backend": backend, "device": name, "peak_gbps": peak, "peak_source": source,
            "rows": rows, "reason": None}


def table(results: list[dict]) -> str:
    out = ["| backend | device | workload | size | mode | implementation | median ms | "
           "GB/s | × peak | focal_array ÷ peer |", "|---|---|---|---|---|---|---:|---:|---:|---|"]
    for res in results:
        for r in res["rows"]:
            head = (f"| {res['backend']} | {res['device']} | {r['workload']} | "
                    f"{r['size_label']} | {r['mode']} | {r['impl']} |")
            if r["status"] != "measured":
                out.append(f"{head} — | — | — | {r['reason']} |")
                continue
            frac = "—" if r["hbm_fraction"] is None else f"{r['hbm_fraction']:.2f}"
            ratios = "; ".join(f"vs {k}: {v['median']:.2f}×"
                               for k, v in r.get("ratios", {}).items())
            out.append(f"{head} {r['median_ms']:.3g} | {r['achieved_gbps']:.3g} | {frac} | "
                       f"{ratios} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backends", default="jax,torch")
    p.add_argument("--dry-run", action="store_true",
                   help="run every code path on the CPU at tiny sizes (a smoke test)")
    p.add_argument("--peak-gbps", type=float, default=None,
                   help="the device's peak memory bandwidth in GB/s (default: by name, "
                        + ", ".join(f"{' '.join(k)} {v:g}" for k, v in PEAK_GBPS) + ")")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed repeats after 3 warm-up calls (default 20; 2 in --dry-run)")
    p.add_argument("--out", help="write the results as JSON here")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    repeats = args.repeats or (2 if args.dry_run else 20)
    if args.worker:
        print(json.dumps(worker(args.worker, args.dry_run, repeats, args.peak_gbps)))
        return 0
    results, failed = [], False
    for backend in [b for b in args.backends.split(",") if b]:
        if W.import_or_reason(backend)[0] is None:
            results.append({"backend": backend, "device": None, "rows": [],
                            "reason": f"{backend} not installed"})
            continue
        env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false")  # share the device
        cmd = [sys.executable, "-m", "benchmarks.gpu", "--worker", backend,
               "--repeats", str(repeats)] + (["--dry-run"] if args.dry_run else []) + (
            ["--peak-gbps", str(args.peak_gbps)] if args.peak_gbps else [])
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                              check=False)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            failed = True
            tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            results.append({"backend": backend, "device": None, "rows": [],
                            "reason": f"worker failed (exit {proc.returncode}): {tail}"})
            continue
        res = json.loads(lines[-1])
        res["seconds"] = round(time.perf_counter() - t0, 1)
        results.append(res)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"dry_run": args.dry_run, "results": results}, f, indent=1)
    for res in results:
        if res["device"] is None:
            print(f"{res['backend']}: nothing measured: {res['reason']}")
    if all(res["device"] is None for res in results) and not failed:
        print("no CUDA device for any requested backend: nothing measured (exit 0). "
              "On a CPU-only machine, --dry-run checks this script's code paths.")
        return 0
    print(table([res for res in results if res["device"] is not None]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
