"""The issue's targets, evaluated at every size: one target row per (target, size, mode)."""

from __future__ import annotations

from benchmarks.workloads import MODES, sizes

SIGMOID = ("sigmoid_b1", "sigmoid_b8")
#: (target, workloads, backend, modes, focal_array key, peer key, limit). The ratio is
#: focal_array's time over the peer's, pair by pair within one process.
RATIO_TARGETS = [
    ("PyTorch eager ≤ 0.9× torchvision", SIGMOID, "torch", MODES, "fa", "tv", 0.9),
    ("PyTorch compiled ≤ 1.0× torchvision compiled", SIGMOID, "torch", MODES, "fa_compiled",
     "tv_compiled", 1.0),
    ("JAX jit ≤ 0.25× optax", SIGMOID, "jax", MODES, "fa", "optax", 0.25),
    ("NumPy ≤ 0.5× naive NumPy", SIGMOID, "numpy", ("fwd",), "fa", "naive", 0.5),
    ("PyTorch eager CE ≤ 1.0× F.cross_entropy", ("softmax_ce",), "torch", MODES, "fa",
     "F.cross_entropy", 1.0),
    ("PyTorch eager softmax focal ≤ 1.0× log_softmax focal", ("softmax_focal",), "torch",
     MODES, "fa", "logsoftmax_focal", 1.0),
    ("JAX jit CE ≤ 1.0× optax", ("softmax_ce",), "jax", MODES, "fa", "optax", 1.0),
    ("JAX jit softmax focal ≤ 1.0× jnp log_softmax focal", ("softmax_focal",), "jax", MODES,
     "fa", "logsoftmax_focal", 1.0),
    ("NumPy CE ≤ 0.5× naive NumPy", ("softmax_ce",), "numpy", ("fwd",), "fa", "naive", 0.5),
    ("NumPy softmax focal ≤ 0.5× naive NumPy", ("softmax_focal",), "numpy", ("fwd",), "fa",
     "naive", 0.5),
    ("matcher PyTorch eager ≤ 0.8× torchvision per image", ("match_1img",), "torch",
     ("fwd",), "fa", "tv", 0.8),
    ("matcher JAX jit batch of 8 ≤ 0.8× loop of single-image JAX jit calls", ("match_b8",),
     "jax", ("fwd",), "fa", "jax_loop", 0.8),
]
#: (target, workload, (backend, key) of focal_array, (backend, key) of the peer, limit):
#: the two run in different processes, so the ratio is of medians.
CROSS_TARGETS = [
    ("matcher NumPy ≤ 0.8× torchvision per image", "match_1img", ("numpy", "fa"),
     ("torch", "tv"), 0.8),
    ("matcher JAX jit batch of 8 ≤ 0.25× torchvision loop", "match_b8", ("jax", "fa"),
     ("torch", "tv_loop"), 0.25),
]
#: (target, workload, key, limit in seconds)
SECONDS_TARGETS = [
    ("focal-array inspect ≤ 30 s (native sizes)", "inspect", "inspect_native", 30.0),
    ("focal-array inspect --image-size 800 1333 ≤ 180 s", "inspect", "inspect_800x1333",
     180.0),
]
#: backend → limit on peak extra memory, in logits bytes, of focal_array's rows
MEMORY_TARGETS = {"jax": 2.0, "numpy": 4.0}


def _index(rows: list[dict]) -> dict[tuple, dict]:
    return {(r["workload"], r.get("size"), r["backend"], r["mode"], r.get("key")): r
            for r in rows}


def _sizes(result: dict, workload: str) -> list[tuple[str, str]]:
    """Every size of a workload the run covered (so a size left out shows as not measured),
    and any other size its rows have."""
    seen: dict[str, str] = {}
    if workload in result.get("workloads", ()):
        seen.update((s.key, s.label) for s in sizes(workload, bool(result.get("quick"))))
    for r in result["rows"]:
        if r["workload"] == workload and r.get("size"):
            seen.setdefault(r["size"], r.get("size_label", r["size"]))
    return list(seen.items())


def _why(*rows: dict | None) -> str:
    for r in rows:
        if r and r.get("status") == "missing":
            return r["reason"]
    if not any(rows):
        return "not measured: size or backend not in this run"
    return "not measured"


def _entry(target: str, workload: str, size: str, label: str, mode: str, value: dict | None,
           limit: float, kind: str, note: str) -> dict:
    return {"target": target, "workload": workload, "size": size, "size_label": label,
            "mode": mode, "measured": value, "limit": limit, "kind": kind,
            "met": None if value is None else value["median"] <= limit, "note": note}


def evaluate_targets(result: dict) -> list[dict]:
    """Each target at each size it applies to, with the measured value and met/not met."""
    rows, out = result["rows"], []
    idx = _index(rows)
    for target, wls, backend, modes, fa_key, peer_key, limit in RATIO_TARGETS:
        for w in wls:
            for size, label in _sizes(result, w):
                for mode in modes:
                    r = idx.get((w, size, backend, mode, fa_key))
                    p = idx.get((w, size, backend, mode, peer_key))
                    value = None
                    if r and r["status"] == "measured":
                        value = r.get("ratios", {}).get(peer_key)
                    note = _why(p, r) if value is None else (
                        "peer: " + p["impl"] if "stand-in" in p["impl"] else "")
                    out.append(_entry(target, w, size, label, mode, value, limit,
                                      "ratio, pair by pair", note))
    for target, w, (fb, fk), (pb, pk), limit in CROSS_TARGETS:
        for size, label in _sizes(result, w):
            r, p = idx.get((w, size, fb, "fwd", fk)), idx.get((w, size, pb, "fwd", pk))
            value = None
            if r and p and r["status"] == p["status"] == "measured":
                value = {"median": r["median_ms"] / p["median_ms"]}
            note = _why(p, r) if value is None else "medians from two processes" + (
                "; peer: " + p["impl"] if "stand-in" in p["impl"] else "")
            out.append(_entry(target, w, size, label, "fwd", value, limit,
                              "ratio of medians", note))
    for target, w, key, limit in SECONDS_TARGETS:
        for size, label in _sizes(result, w) or [("-", "-")]:
            r = idx.get((w, size, "numpy", "fwd", key))
            value = ({"median": r["median_ms"] / 1e3} if r and r["status"] == "measured"
                     else None)
            note = _why(r) if value is None else "one run, a fresh interpreter, start-up included"
            out.append(_entry(target, w, size, label, "fwd", value, limit, "seconds", note))
    for m in result.get("memory", []):
        limit = MEMORY_TARGETS.get(m["backend"])
        if limit is None or m.get("peer", True):
            continue
        value = {"median": m["x_logits"]} if m["status"] == "measured" else None
        out.append(_entry(f"{m['backend']} peak extra memory ≤ {limit:g}× logits",
                          m["workload"], m["size"], m.get("size_label", m["size"]), m["mode"],
                          value, limit, "× logits bytes",
                          m.get("method") if value else m.get("reason", "not measured")))
    return out
