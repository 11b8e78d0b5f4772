"""Size sweep of focal_array against its peers, side by side, one process per backend.

One command times every workload at every size on NumPy, JAX (jit) and PyTorch (eager and
``torch.compile``) next to what a user would otherwise pick — torchvision, optax,
``F.cross_entropy``, log_softmax-based focal losses, naive NumPy formulas — evaluates the
issue's targets at every size, and writes results.json, a markdown page and a ratio plot::

    python -m benchmarks.run                          # the full sweep, into benchmarks/results
    python -m benchmarks.run --workloads sigmoid_b1 --sizes 10k,200k
    python -m benchmarks.run --quick --out /tmp/b     # smoke run: tiny sizes, ~1–2 min
    python -m benchmarks.run --from-json benchmarks/results/results.json --docs

Layout: :mod:`benchmarks.workloads` (sizes, inputs, loss cases), :mod:`benchmarks.matching`
(matcher and CLI cases), :mod:`benchmarks.timing` (interleaved timing, worker processes,
memory), :mod:`benchmarks.targets`, :mod:`benchmarks.render` (page, plot), this module
(command line), :mod:`benchmarks.gpu` (the CUDA script). Nothing here asserts anything
about speed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # `python benchmarks/run.py` as well as `python -m benchmarks.run`
    sys.path.insert(0, ROOT)

from benchmarks import render, timing  # noqa: E402
from benchmarks.targets import evaluate_targets  # noqa: E402
from benchmarks.workloads import WORKLOADS, import_or_reason  # noqa: E402

SCHEMA_VERSION = 2
BACKENDS = ("numpy", "jax", "torch")


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    from importlib import metadata

    versions = {}
    for name in ("numpy", "jax", "optax", "torch", "torchvision", "array-api-compat"):
        try:  # metadata, not import: the driver process stays light
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "versions": versions, "loadavg_at_start": load,
            "gpu": None}


def run_all(args: argparse.Namespace, workloads: list[str], backends: list[str]) -> dict:
    t_start = time.perf_counter()
    result: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "quick": args.quick, "workloads": workloads, "backends": backends,
        "sizes": args.sizes, "repeats": args.repeats, "machine": machine(),
        "rows": [], "memory": [], "accuracy": [], "durations": [],
        "method": "one process per backend; per size and mode every implementation warmed "
                  "up (compilation there), then interleaved rounds; medians; ratios pair "
                  "by pair within a round; memory in a fresh process per implementation",
    }
    common = (["--quick"] if args.quick else []) + ["--out", args.out]
    plan = timing.QUICK_MEMORY_PLAN if args.quick else timing.MEMORY_PLAN
    for backend in backends:
        reason = None if backend == "numpy" else import_or_reason(backend)[1]
        res = None
        if reason is None:
            print(f"[benchmarks] timing on {backend} ...", file=sys.stderr, flush=True)
            res, reason = timing.subprocess_json(
                ["--worker", "time", "--backend", backend, "--workloads", ",".join(workloads)]
                + (["--sizes", args.sizes] if args.sizes else [])
                + (["--repeats", str(args.repeats)] if args.repeats else []) + common,
                args.timeout)
        if res is None:
            for w in workloads:
                result["rows"].append({"workload": w, "size": None, "size_label": "all",
                                       "backend": backend, "mode": "fwd", "key": None,
                                       "impl": f"all ({backend})", "peer": False,
                                       "status": "missing", "reason": reason})
            continue
        for k in ("rows", "accuracy", "durations"):
            result[k].extend(res[k])
        if args.no_memory:
            continue
        for b, w, size, mode, key in plan:
            if b != backend or w not in workloads:
                continue
            print(f"[benchmarks] memory {b} {w} {size} {mode} {key} ...", file=sys.stderr,
                  flush=True)
            t0 = time.perf_counter()
            m, why = timing.subprocess_json(["--worker", "memory", "--backend", b,
                                             "--workloads", w, "--sizes", size, "--mode", mode,
                                             "--key", key, *common], args.timeout)
            result["memory"].append(m if m is not None else {
                "backend": b, "workload": w, "size": size, "size_label": size, "mode": mode,
                "key": key, "impl": key, "peer": key != "fa", "status": "missing",
                "reason": why})
            result["durations"].append({"backend": b, "workload": "memory", "size": size,
                                        "mode": mode, "seconds": round(time.perf_counter()
                                                                       - t0, 1)})
    result["targets"] = evaluate_targets(result)
    result["wall_s"] = round(time.perf_counter() - t_start, 1)
    return result


def merge(results: list[dict]) -> dict:
    """One result from several (partial runs); a row measured again replaces the old one."""
    if len(results) == 1:
        return results[0]
    out = dict(results[-1])
    for k in ("rows", "memory", "accuracy"):
        seen: dict[tuple, dict] = {}
        for res in results:
            for r in res.get(k, []):
                seen[tuple(r.get(f) for f in ("workload", "size", "backend", "mode", "key",
                                              "impl"))] = r
        out[k] = list(seen.values())
    out["durations"] = [d for res in results for d in res.get("durations", [])]
    out["wall_s"] = round(sum(res.get("wall_s", 0) for res in results), 1)
    out["workloads"] = sorted({w for res in results for w in res.get("workloads", [])},
                              key=WORKLOADS.index)
    out["command"] = " + ".join(res.get("command", "?") for res in results)
    out["merged"] = len(results)
    out["targets"] = evaluate_targets(out)
    return out


def write_report(result: dict, out: str, docs: bool) -> list[str]:
    written = []
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "results.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    written.append(path)
    targets = [(out, render.FIGURE)]
    if docs:
        targets.append((os.path.join(ROOT, "docs"), render.FIGURE))
    for base, fig in targets:
        why = render.plot(result, os.path.join(base, fig))
        if why:
            print(f"[benchmarks] no plot: {why}", file=sys.stderr)
        page = render.markdown(result, None if why else fig.replace(os.sep, "/"))
        name = os.path.join(base, "benchmarks.md")
        with open(name, "w") as f:
            f.write(page)
        written += [name] + ([] if why else [os.path.join(base, fig)])
    return written


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="smoke run: tiny sizes, 1 warm-up + 2 repeats, no torch.compile")
    p.add_argument("--workloads", default=",".join(WORKLOADS),
                   help=f"comma-separated subset of {','.join(WORKLOADS)} (default: all)")
    p.add_argument("--sizes", default=None,
                   help="comma-separated size keys to keep (e.g. 10k,200k,rcnn,"
                        "800x1333-g50; default: every size)")
    p.add_argument("--backends", default=",".join(BACKENDS))
    p.add_argument("--repeats", type=int, default=None,
                   help="timed repeats at every size (default: 7, 5 or 3 by size)")
    p.add_argument("--no-memory", action="store_true", help="skip the memory processes")
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"),
                   help="directory for results.json, benchmarks.md and figures/")
    p.add_argument("--docs", action="store_true",
                   help="also write docs/benchmarks.md and docs/figures/benchmark_ratios.png")
    p.add_argument("--notes", help="markdown file appended to the page as its closing note")
    p.add_argument("--from-json", metavar="RESULTS_JSON[,...]",
                   help="measure nothing: render the page and plot again from a results.json "
                        "(several, comma-separated: partial runs merged, later ones winning)")
    p.add_argument("--timeout", type=float, default=3600.0,
                   help="seconds allowed per worker process")
    p.add_argument("--worker", choices=("time", "memory"), help=argparse.SUPPRESS)
    p.add_argument("--backend", help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
    p.add_argument("--key", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    workloads = [w for w in args.workloads.split(",") if w]
    unknown = set(workloads) - set(WORKLOADS)
    if unknown:
        p.error(f"unknown workloads {sorted(unknown)}; choose from {','.join(WORKLOADS)}")
    only = [s for s in args.sizes.split(",") if s] if args.sizes else None
    if args.worker == "time":
        print(json.dumps(timing.timing_worker(args.backend, workloads, args.quick,
                                              args.repeats, only, args.out)))
        return 0
    if args.worker == "memory":
        print(json.dumps(timing.memory_worker(args.backend, workloads[0], only[0], args.mode,
                                              args.key, args.quick)))
        return 0
    if args.from_json:
        result = merge([json.load(open(path)) for path in args.from_json.split(",")])
    else:
        result = run_all(args, workloads, [b for b in args.backends.split(",") if b])
        result["command"] = " ".join(["python -m benchmarks.run", *argv])
    if args.notes:
        with open(args.notes) as f:
            result["notes"] = f.read()
    written = write_report(result, args.out, args.docs)
    render.print_table(result)
    print("wrote " + ", ".join(written), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
