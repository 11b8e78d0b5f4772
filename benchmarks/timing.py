"""Interleaved timing, the per-backend worker process, memory and accuracy workers.

Each backend runs in its own process, so one library's thread pools and allocator caches
do not slow another's. Inside it, for each (workload, size, mode) every implementation is
built and warmed up (JIT and ``torch.compile`` compilation happen there; the first call's
time is kept as ``first_call_ms``), then the repeats are **interleaved** — round r runs
every implementation once, in an order rotated by r — so load changes on a shared machine
hit all of them alike, and focal_array's ratio to a peer is computed **pair by pair**
(round r over round r).

Peak extra memory per call is measured in a fresh process per implementation, after a
warm-up: NumPy with ``tracemalloc`` (NumPy reports its buffers to it), JAX with XLA's
compiled memory analysis (temporaries + outputs), and every backend also by resident-set
high-water mark (``/proc/self/clear_refs`` reset, then ``VmHWM`` − ``VmRSS``).
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

import numpy as np

from benchmarks import workloads as W

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


#: seconds the timed rounds of one group may take in a full run: past it, after the first
#: round, the group stops at as many rounds as fit (at least 2), so one pathologically
#: slow implementation cannot push the sweep past its budget (rows record their repeats)
GROUP_BUDGET_S = 90.0


def time_group(cases: list[W.Case], warmups: int, repeats: int,
               budget_s: float | None = None) -> list[dict]:
    """Warm up every case, then interleave ``repeats`` rounds; ratios pair by pair."""
    rows: dict[str, dict] = {}
    live: list[W.Case] = []
    for c in cases:
        base = {"key": c.key, "impl": c.impl, "peer": c.peer, **c.extra}
        if c.run is None:
            rows[c.key] = {**base, "status": "missing", "reason": c.reason}
            continue
        try:
            first = None
            for i in range(warmups):
                t0 = time.perf_counter()
                c.run()
                if i == 0:  # compilation and first-call costs
                    first = (time.perf_counter() - t0) * 1e3
        except Exception as exc:
            rows[c.key] = {**base, "status": "missing",
                           "reason": f"failed: {type(exc).__name__}: {str(exc)[:160]}"}
            continue
        rows[c.key] = {**base, "status": "measured", "reason": None, "first_call_ms": first,
                       "times_ms": []}
        live.append(c)
    failed: set[str] = set()
    r = 0
    t_rounds = time.perf_counter()
    while r < repeats:
        if r == 1 and budget_s is not None:
            fit = int(budget_s // max(time.perf_counter() - t_rounds, 1e-9))
            repeats = min(repeats, max(2, fit))
        k = r % len(live) if live else 0
        r += 1
        for c in live[k:] + live[:k]:
            if c.key in failed:
                continue
            t0 = time.perf_counter()
            try:
                c.run()
            except Exception as exc:  # a CLI run has no warm-up to fail in
                failed.add(c.key)
                rows[c.key].update(status="missing", reason=f"failed: {type(exc).__name__}: "
                                                            f"{str(exc)[:200]}")
                continue
            rows[c.key]["times_ms"].append((time.perf_counter() - t0) * 1e3)
    live = [c for c in live if c.key not in failed]
    for c in live:
        row = rows[c.key]
        if row["first_call_ms"] is None:
            row["first_call_ms"] = row["times_ms"][0]
        row.update({f"{k}_ms": v for k, v in _summary(row["times_ms"]).items()})
        if not c.peer:
            ratios = {}
            for other in live:
                if other.peer and (not c.vs or other.key in c.vs):
                    pairs = [a / b for a, b in zip(row["times_ms"],
                                                   rows[other.key]["times_ms"], strict=True)]
                    ratios[other.key] = _summary(pairs)
            row["ratios"] = ratios
    return [rows[c.key] for c in cases]


def _cpu_s() -> float:
    """CPU seconds of this process and its finished children (the CLI runs)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def selected_sizes(workload: str, quick: bool, only: list[str] | None) -> list[W.Size]:
    return [s for s in W.sizes(workload, quick) if not only or s.key in only]


def timing_worker(backend: str, workloads: list[str], quick: bool, repeats: int | None,
                  only_sizes: list[str] | None, out_dir: str) -> dict:
    import warnings

    warnings.filterwarnings("ignore")  # torch.compile's notes on array-api-compat's caches
    if backend == "torch":
        import torch  # import cost outside the measurement
    rows: list[dict] = []
    durations: list[dict] = []
    for w in workloads:
        for size in selected_sizes(w, quick, only_sizes):
            t_inputs = time.perf_counter()
            inputs = W.inputs_for(size)
            t_inputs = time.perf_counter() - t_inputs
            for mode in W.MODES:
                t_group, cpu_group = time.perf_counter(), _cpu_s()
                if backend == "torch":
                    import torch

                    # a fresh compile cache per group: every shape compiles once (counted
                    # in this group's time) and the recompile limit is never reached
                    torch._dynamo.reset()
                try:
                    cases = W.build_cases(size, backend, mode, inputs,
                                          compile_torch=not quick, out_dir=out_dir)
                except Exception as exc:
                    cases = [W.missing("fa", f"all ({backend})", f"failed to build: "
                                       f"{type(exc).__name__}: {str(exc)[:160]}", peer=False)]
                if not cases:
                    continue
                warm, reps = size.plan
                reps = repeats if repeats and w != "inspect" else reps
                budget = None if quick or repeats else GROUP_BUDGET_S
                for row in time_group(cases, warm, reps, budget):
                    row.update({"workload": w, "size": size.key, "size_label": size.label,
                                "x": size.x, "backend": backend, "mode": mode,
                                "warmups": warm, "repeats_planned": reps,
                                "repeats": len(row.get("times_ms", [])) or reps})
                    rows.append(row)
                del cases
                gc.collect()
                seconds = time.perf_counter() - t_group + (t_inputs if mode == "fwd" else 0)
                # CPU seconds (all threads) beside wall seconds: on a loaded, shared
                # machine they are what a quiet machine's run time is estimated from
                durations.append({"backend": backend, "workload": w, "size": size.key,
                                  "mode": mode, "seconds": round(seconds, 1),
                                  "cpu_s": round(_cpu_s() - cpu_group, 1)})
                print(f"[benchmarks] {backend} {w} {size.key} {mode}: {seconds:.1f} s",
                      file=sys.stderr, flush=True)
            del inputs
            gc.collect()
    t_acc = time.perf_counter()
    accuracy = gradient_accuracy(backend, quick)
    durations.append({"backend": backend, "workload": "accuracy", "size": "-",
                      "mode": "fwd+bwd", "seconds": round(time.perf_counter() - t_acc, 1)})
    return {"rows": rows, "accuracy": accuracy, "durations": durations}


def gradient_accuracy(backend: str, quick: bool) -> list[dict]:
    """Largest elementwise relative error of each float32 gradient vs a float64 reference."""
    import focal_array as fa
    from benchmarks import peers

    x, y = W.accuracy_inputs((64, 8) if quick else (2_000, 80))
    ref = peers.reference_sigmoid_grad64(x, y, W.ALPHA, W.GAMMA)
    tiny = float(np.finfo(np.float32).smallest_normal)
    if backend == "numpy":
        cases = [W.Case("fa", "focal_array (analytic gradient)", lambda: (
            fa.sigmoid_focal_loss_value_and_grad(x, y, alpha=W.ALPHA, gamma=W.GAMMA,
                                                 reduction="sum")), peer=False)]
    else:
        cases = W.sigmoid_cases(backend, "fwd+bwd", x, y, compile_torch=False)
    out = []
    for c in cases:
        row: dict[str, Any] = {"backend": backend, "key": c.key, "impl": c.impl,
                               "peer": c.peer}
        if c.run is None:
            out.append({**row, "status": "missing", "reason": c.reason})
            continue
        try:
            res = c.run()
            g = np.asarray(res[1].detach() if hasattr(res[1], "detach") else res[1],
                           dtype=np.float64)
        except Exception as exc:
            out.append({**row, "status": "missing", "reason": f"failed: {type(exc).__name__}"})
            continue
        diff = np.abs(g - ref)
        diff = np.where(diff <= tiny, 0.0, diff)
        rel = diff / np.maximum(np.abs(ref), tiny)
        out.append({**row, "status": "measured", "reason": None,
                    "max_rel_err": float(np.max(rel)),
                    "frac_rel_err_gt_1e-5": float(np.mean(rel > 1e-5)),
                    "finite": bool(np.all(np.isfinite(g)))})
    return out


# --------------------------------------------------------------------------- memory

#: (backend, workload, size key, mode, case key) measured in a fresh process each. The
#: targets need focal_array's JAX and NumPy rows; the peers are there for scale.
MEMORY_PLAN = [
    *[("jax", w, s, m, "fa") for w, s in (("sigmoid_b1", "200k"), ("softmax_ce", "dense"),
                                           ("softmax_focal", "dense")) for m in W.MODES],
    ("jax", "sigmoid_b1", "200k", "fwd+bwd", "optax"),
    *[("numpy", w, s, "fwd", "fa") for w, s in (("sigmoid_b1", "200k"),
                                                  ("softmax_ce", "dense"),
                                                  ("softmax_focal", "dense"))],
    ("numpy", "sigmoid_b1", "200k", "fwd", "naive"),
    ("torch", "sigmoid_b1", "200k", "fwd+bwd", "fa"),
    ("torch", "sigmoid_b1", "200k", "fwd+bwd", "tv"),
]
QUICK_MEMORY_PLAN = [("numpy", "sigmoid_b1", "2k", "fwd", "fa"),
                     ("jax", "sigmoid_b1", "2k", "fwd+bwd", "fa"),
                     ("jax", "softmax_ce", "dense", "fwd", "fa"),
                     ("torch", "softmax_ce", "dense", "fwd", "fa")]


def _proc_status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def memory_worker(backend: str, workload: str, size_key: str, mode: str, key: str,
                  quick: bool) -> dict:
    size = next(s for s in W.sizes(workload, quick) if s.key == size_key)
    inputs = W.inputs_for(size)
    cases = {c.key: c for c in W.build_cases(size, backend, mode, inputs,
                                             compile_torch=False)}
    c = cases[key]
    result: dict[str, Any] = {"backend": backend, "workload": workload, "size": size_key,
                              "size_label": size.label, "mode": mode, "key": key,
                              "impl": c.impl, "peer": c.peer,
                              "logits_bytes": int(inputs[0].nbytes)}
    if c.run is None:
        result.update(status="missing", reason=c.reason)
        return result
    c.run()
    c.run()
    gc.collect()
    hwm_ok = True
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the resident-set high-water mark (Linux ≥ 4.0)
    except OSError:
        hwm_ok = False
    base = _proc_status_kib("VmRSS")
    if backend == "numpy":
        import tracemalloc

        tracemalloc.start()
        out = c.run()
        result["tracemalloc_peak_bytes"] = int(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    else:
        out = c.run()
    if hwm_ok:
        result["rss_peak_extra_bytes"] = max(0, (_proc_status_kib("VmHWM") - base) * 1024)
    del out
    if c.jax_lowered is not None:
        try:
            ma = c.jax_lowered().compile().memory_analysis()
            result["xla_temp_bytes"] = int(ma.temp_size_in_bytes)
            result["xla_output_bytes"] = int(ma.output_size_in_bytes)
        except Exception as exc:  # memory analysis is optional in XLA
            result["xla_reason"] = f"{type(exc).__name__}: {str(exc)[:80]}"
    if "tracemalloc_peak_bytes" in result:
        peak, method = result["tracemalloc_peak_bytes"], "tracemalloc"
    elif "xla_temp_bytes" in result:
        peak = result["xla_temp_bytes"] + result["xla_output_bytes"]
        method = "XLA memory analysis (temp + output)"
    elif "rss_peak_extra_bytes" in result:
        peak, method = result["rss_peak_extra_bytes"], "RSS high-water mark"
    else:
        result.update(status="missing", reason="no memory measurement available")
        return result
    result.update(status="measured", reason=None, peak_extra_bytes=int(peak), method=method,
                  x_logits=peak / inputs[0].nbytes)
    return result


# --------------------------------------------------------------------------- processes


def subprocess_json(args: list[str], timeout: float) -> tuple[Any, str | None]:
    """Run ``python -m benchmarks.run ARGS`` and read the JSON line it prints last."""
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    cmd = [sys.executable, "-m", "benchmarks.run", *args]
    try:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    except OSError as exc:
        return None, f"could not start: {exc}"
    lines_err: list[str] = []
    chunks: list[str] = []

    def pump_err() -> None:  # progress lines pass through as they come
        for line in proc.stderr:
            lines_err.append(line)
            if line.startswith("[benchmarks]"):
                print(line, end="", file=sys.stderr, flush=True)

    threads = [threading.Thread(target=pump_err, daemon=True),
               threading.Thread(target=lambda: chunks.append(proc.stdout.read()), daemon=True)]
    for t in threads:
        t.start()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None, f"timed out after {timeout:.0f} s"
    for t in threads:
        t.join(timeout=10)
    stdout = "".join(chunks)
    lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = ([ln.strip() for ln in lines_err if ln.strip()] or ["(no output)"])[-1]
        return None, f"worker failed (exit {proc.returncode}): {tail[:200]}"
    return json.loads(lines[-1]), None
