"""Side-by-side benchmarks of focal_array and its peers on every installed backend.

One command runs every workload on NumPy, JAX (jit) and PyTorch (eager and
``torch.compile``) next to the implementations a user would otherwise pick — optax,
torchvision, Keras 3 (NumPy and JAX backends), a plain NumPy version of torchvision's
formula and a hand-fused stable reference — and prints a table, writes JSON and a markdown
page for the docs::

    python -m benchmarks.run                       # --size medium, results in benchmarks/results
    python -m benchmarks.run --size full           # every workload at the issue's sizes
    python -m benchmarks.run --size full --workloads sigmoid_1img
    python -m benchmarks.run --quick --out /tmp/b  # CI smoke run: tiny shapes, 1 repeat

Method. Each backend runs in its own process (Keras picks its backend at import). Inside
it, for each workload and mode (forward; forward + backward where the backend has
autodiff, or an analytic gradient), every implementation is built and warmed up (JIT and
``torch.compile`` compilation happen there), then the repeats are **interleaved** — repeat
r runs every implementation once, in an order rotated by r — so load changes on a shared
machine hit all of them alike. Reported: median, min and max per implementation, and for
each focal_array row its ratio to every peer **computed pair by pair** (repeat r of
focal_array over repeat r of the peer), summarised by median, min and max.

Peak extra memory per call is measured in a fresh process per implementation, after a
warm-up: NumPy with ``tracemalloc`` (NumPy reports its buffers to it), JAX with XLA's
compiled memory analysis (temporaries + outputs), and every backend also by resident-set
high-water mark (``/proc/self/clear_refs`` reset, then ``VmHWM`` − ``VmRSS``). For
``dense_b8`` on JAX, the compiled plan is searched for (B, A, C)-shaped buffers other than
the logits and the gradient: a materialized target tensor (a one-hot, a mask) or any
full-size intermediate of the classification term would be one. The gradient
accuracy column is the float32 gradient's largest elementwise relative error against a
float64 reference, differences below float32's smallest normal counting as zero.

Nothing here asserts anything about speed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

SCHEMA_VERSION = 1
BACKENDS = ("numpy", "jax", "torch")
WORKLOADS = ("sigmoid_1img", "sigmoid_8img", "softmax_rcnn", "match_1img_50",
             "match_1img_200", "match_b8_50", "match_b8_200", "dense_b8")
#: --quick runs one workload of each kind (compilation dominates tiny shapes)
QUICK_WORKLOADS = ("sigmoid_1img", "softmax_rcnn", "match_1img_50", "match_b8_50", "dense_b8")
MODES = ("fwd", "fwd+bwd")
ALPHA, GAMMA = 0.25, 2.0
POS_FRACTION = 0.01  # share of positive (anchor, class) pairs in the sigmoid workloads

#: workload sizes. "full" is the issue's; "medium" keeps the single-image sigmoid workload
#: full and shrinks the rest so a 2-core machine finishes in minutes; "quick" is for CI.
#: "heavy": (warm-up calls, timed repeats) for the workloads whose calls take seconds, so
#: that a full run fits in ~25 minutes on 2 cores (``--repeats`` overrides every workload).
SIZES: dict[str, dict[str, Any]] = {
    "full": {"anchors": 200_000, "classes": 80, "images": 8, "img8_anchors": 200_000,
             "rois": 512, "rcnn_classes": 81, "match_anchors": 200_000,
             "dense_anchors": 200_000, "dense_gts": 50, "repeats": 5,
             "accuracy_shape": (2_000, 80),
             "heavy": {"sigmoid_8img": (1, 2), "match_1img_200": (1, 3),
                       "match_b8_50": (1, 3), "match_b8_200": (1, 3), "dense_b8": (1, 3)}},
    "medium": {"anchors": 200_000, "classes": 80, "images": 8, "img8_anchors": 50_000,
               "rois": 512, "rcnn_classes": 81, "match_anchors": 50_000,
               "dense_anchors": 50_000, "dense_gts": 50, "repeats": 5,
               "accuracy_shape": (2_000, 80),
               "heavy": {"sigmoid_8img": (1, 3), "match_b8_200": (1, 3), "dense_b8": (1, 3)}},
    "quick": {"anchors": 2_000, "classes": 8, "images": 2, "img8_anchors": 1_000,
              "rois": 16, "rcnn_classes": 5, "match_anchors": 1_000,
              "dense_anchors": 1_000, "dense_gts": 5, "repeats": 1,
              "accuracy_shape": (64, 8)},
}
GTS = {"match_1img_50": (1, 50), "match_1img_200": (1, 200), "match_b8_50": (8, 50),
       "match_b8_200": (8, 200)}


@dataclass
class Case:
    """One implementation of one workload: ``run()`` computes and blocks until done."""

    impl: str
    run: Callable[[], Any] | None = None
    reason: str | None = None  # why ``run`` is None
    peer: bool = True  # False for focal_array's own rows
    jax_lowered: Callable[[], Any] | None = None  # for XLA memory analysis
    extra: dict[str, Any] = field(default_factory=dict)


def missing(impl: str, reason: str, peer: bool = True) -> Case:
    return Case(impl, None, reason, peer)


# --------------------------------------------------------------------------- inputs


def sigmoid_inputs(shape: tuple[int, ...], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """float32 logits ~ N(0, 3) and float32 0/1 targets with 1% positives (RetinaNet-like)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape, dtype=np.float32)
    x *= 3.0
    y = (rng.random(shape, dtype=np.float32) < POS_FRACTION).astype(np.float32)
    return x, y


def accuracy_inputs(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Logits spread over [−30, 30] (saturated and uncertain anchors), 10% positives."""
    rng = np.random.default_rng(1)
    x = rng.uniform(-30.0, 30.0, shape).astype(np.float32)
    y = (rng.random(shape) < 0.1).astype(np.float32)
    return x, y


def match_inputs(anchors: int, batch: int, gts: int):
    """Random xyxy anchors and gts (``bench_matcher_scale``'s): a single image has all
    ``gts`` real gts; a batch has 1..``gts`` real ones per image, padded to ``gts``."""
    from benchmarks.bench_matcher_scale import _inputs

    a, g, valid = _inputs(batch, anchors, gts)
    if batch == 1:
        valid[:] = True
    return a, g, valid


def import_or_reason(name: str) -> tuple[Any, str | None]:
    try:
        return __import__(name, fromlist=["_"]), None
    except Exception as exc:  # ImportError, or a peer that fails to import beside torch
        return None, f"{name} not installed ({type(exc).__name__}: {str(exc)[:80]})"


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


def keras_loss(backend: str) -> tuple[Any, str | None]:
    keras, reason = import_or_reason("keras")
    if keras is None:
        return None, reason
    if keras.backend.backend() != backend:
        return None, f"keras imported with backend {keras.backend.backend()!r}, not {backend!r}"
    return keras.losses.binary_focal_crossentropy, None


# --------------------------------------------------------------------------- case builders


def sigmoid_cases(backend: str, mode: str, x: np.ndarray, y: np.ndarray,
                  with_compile: bool = True, variants: bool = True) -> list[Case]:
    """``variants=False`` (the 8-image workload) drops focal_array's extra rows (boolean
    targets, the analytic-gradient candidates): each call there takes seconds."""
    cases = _sigmoid_cases(backend, mode, x, y, with_compile)
    if variants:
        return cases
    return [c for c in cases if c.peer or not ("bool targets" in c.impl
                                               or "candidate" in c.impl)]


def _sigmoid_cases(backend: str, mode: str, x: np.ndarray, y: np.ndarray,
                   with_compile: bool) -> list[Case]:
    import focal_array as fa
    from benchmarks import peers
    from focal_array.gradients import sigmoid_focal_loss_value_and_grad

    yb = y.astype(bool)
    cases: list[Case] = []
    if backend == "numpy":
        if mode == "fwd":
            cases.append(Case("focal_array", lambda: fa.sigmoid_focal_loss(
                x, y, reduction="sum"), peer=False))
            cases.append(Case("focal_array (bool targets)", lambda: fa.sigmoid_focal_loss(
                x, yb, reduction="sum"), peer=False))
            cases.append(Case("naive NumPy (torchvision formula)",
                              lambda: np.sum(peers.naive_sigmoid_focal_numpy(x, y))))
            cases.append(Case("stable log-space NumPy",
                              lambda: np.sum(peers.fused_stable(np, x, y))))
        else:
            cases.append(Case("focal_array (analytic gradient)",
                              lambda: sigmoid_focal_loss_value_and_grad(x, y, reduction="sum"),
                              peer=False))
            cases.append(Case("focal_array (analytic gradient, bool targets)",
                              lambda: sigmoid_focal_loss_value_and_grad(x, yb,
                                                                        reduction="sum"),
                              peer=False))
            cases.append(missing("naive NumPy (torchvision formula)",
                                 "NumPy has no autodiff; the baseline has no gradient"))
        loss, reason = keras_loss("numpy")
        if loss is None:
            cases.append(missing("Keras 3 BinaryFocalCrossentropy (numpy)", reason))
        elif mode == "fwd":
            cases.append(Case("Keras 3 BinaryFocalCrossentropy (numpy)", lambda: np.sum(
                loss(y, x, apply_class_balancing=True, alpha=ALPHA, gamma=GAMMA,
                     from_logits=True))))
        else:
            cases.append(missing("Keras 3 BinaryFocalCrossentropy (numpy)",
                                 "Keras' numpy backend has no autodiff"))
        return cases

    if backend == "jax":
        import jax
        import jax.numpy as jnp

        xj, yj, ybj = jnp.asarray(x), jnp.asarray(y), jnp.asarray(yb)
        optax, optax_reason = import_or_reason("optax")
        kloss, kreason = keras_loss("jax")
        fns: list[tuple[str, Any, Any, bool]] = [
            ("focal_array", lambda a, b: fa.sigmoid_focal_loss(a, b, reduction="sum"), yj,
             False),
            ("focal_array (bool targets)",
             lambda a, b: fa.sigmoid_focal_loss(a, b, reduction="sum"), ybj, False),
            ("hand-fused stable jnp reference",
             lambda a, b: jnp.sum(peers.fused_stable(jnp, a, b)), yj, True),
        ]
        if optax is not None:
            fns.append(("optax sigmoid_focal_loss", lambda a, b: jnp.sum(
                optax.losses.sigmoid_focal_loss(a, b, alpha=ALPHA, gamma=GAMMA)), yj, True))
        else:
            cases.append(missing("optax sigmoid_focal_loss", optax_reason))
        if kloss is not None:
            fns.append(("Keras 3 BinaryFocalCrossentropy (jax)", lambda a, b: jnp.sum(kloss(
                b, a, apply_class_balancing=True, alpha=ALPHA, gamma=GAMMA,
                from_logits=True)), yj, True))
        else:
            cases.append(missing("Keras 3 BinaryFocalCrossentropy (jax)", kreason))
        jitted_fns = [(name, jax.jit(f if mode == "fwd" else jax.value_and_grad(f)), tgt, peer)
                      for name, f, tgt, peer in fns]
        if mode == "fwd+bwd":  # the analytic gradient as a candidate custom derivative
            jitted_fns.append(("focal_array analytic gradient (candidate custom_vjp)", jax.jit(
                lambda a, b: sigmoid_focal_loss_value_and_grad(a, b, reduction="sum")), ybj,
                False))
        for name, jitted, tgt, peer in jitted_fns:

            def run(jitted=jitted, tgt=tgt):
                return jax.block_until_ready(jitted(xj, tgt))

            cases.append(Case(name, run, peer=peer,
                              jax_lowered=lambda jitted=jitted, tgt=tgt: jitted.lower(xj, tgt)))
        return cases

    if backend == "torch":
        import torch

        xt, yt, ybt = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(yb)
        tv, tv_reason = import_or_reason("torchvision.ops")

        def fa_sum(a, b):
            return fa.sigmoid_focal_loss(a, b, reduction="sum")

        def tvf_sum(a, b):
            return peers.torchvision_formula(a, b, ALPHA, GAMMA).sum()

        def tv_sum(a, b):
            return tv.sigmoid_focal_loss(a, b, ALPHA, GAMMA, reduction="sum")

        eager: list[tuple[str, Any, Any, bool]] = [
            ("focal_array eager", fa_sum, yt, False),
            ("focal_array eager (bool targets)", fa_sum, ybt, False),
            ("torchvision formula eager (transcribed)", tvf_sum, yt, True),
        ]
        if tv is not None:
            eager.append(("torchvision eager", tv_sum, yt, True))
        else:
            cases.append(missing("torchvision eager", tv_reason))
        compiled: list[tuple[str, Any, Any, bool]] = []
        for name, f, tgt, peer in [("focal_array compiled", fa_sum, yt, False),
                                   ("focal_array compiled (bool targets)", fa_sum, ybt, False),
                                   ("torchvision formula compiled (transcribed)", tvf_sum,
                                    yt, True)] + ([("torchvision compiled", tv_sum, yt, True)]
                                                  if tv is not None else []):
            if with_compile:
                compiled.append((name, torch.compile(f), tgt, peer))
            else:
                cases.append(missing(name, "torch.compile skipped in --quick (compile time)",
                                     peer))
        if tv is None:
            cases.append(missing("torchvision compiled", tv_reason))
        if mode == "fwd+bwd":  # the analytic gradient as a candidate autograd.Function
            cases.append(Case("focal_array analytic gradient eager (candidate)", lambda:
                              sigmoid_focal_loss_value_and_grad(xt, ybt, reduction="sum"),
                              peer=False))
        for name, f, tgt, peer in eager + compiled:
            if mode == "fwd":
                def run(f=f, tgt=tgt):
                    with torch.no_grad():
                        return f(xt, tgt)
            else:
                def run(f=f, tgt=tgt):
                    xg = xt.detach().requires_grad_(True)
                    loss = f(xg, tgt)
                    (g,) = torch.autograd.grad(loss, xg)
                    return loss.detach(), g
            cases.append(Case(name, run, peer=peer))
        return cases
    raise ValueError(backend)


def softmax_cases(backend: str, mode: str, shape: tuple[int, int, int]) -> list[Case]:
    import focal_array as fa
    from benchmarks import peers
    from focal_array.gradients import softmax_focal_loss_value_and_grad

    rng = np.random.default_rng(2)
    x = (rng.standard_normal(shape, dtype=np.float32) * 3.0)
    labels = rng.integers(0, shape[-1], shape[:-1])
    labels[rng.random(shape[:-1]) < 0.75] = 0  # mostly background RoIs
    cases: list[Case] = []
    if backend == "numpy":
        if mode == "fwd":
            cases += [
                Case("focal_array softmax_focal_loss", lambda: fa.softmax_focal_loss(
                    x, labels, alpha=ALPHA, reduction="sum"), peer=False),
                Case("focal_array softmax_cross_entropy", lambda: fa.softmax_cross_entropy(
                    x, labels, reduction="sum"), peer=False),
                Case("naive NumPy softmax focal", lambda: np.sum(
                    peers.naive_softmax_focal_numpy(x, labels))),
            ]
        else:
            cases += [
                Case("focal_array softmax focal (analytic gradient)",
                     lambda: softmax_focal_loss_value_and_grad(x, labels, alpha=ALPHA,
                                                               reduction="sum"), peer=False),
                Case("focal_array softmax CE (analytic gradient)",
                     lambda: softmax_focal_loss_value_and_grad(x, labels, gamma=0.0,
                                                               reduction="sum"), peer=False),
                missing("naive NumPy softmax focal", "NumPy has no autodiff"),
            ]
        return cases
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        xj, lj = jnp.asarray(x), jnp.asarray(labels)
        optax, reason = import_or_reason("optax")
        fns = [("focal_array softmax_focal_loss", lambda a: fa.softmax_focal_loss(
                    a, lj, alpha=ALPHA, reduction="sum"), False),
               ("focal_array softmax_cross_entropy", lambda a: fa.softmax_cross_entropy(
                   a, lj, reduction="sum"), False)]
        if optax is not None:
            fns.append(("optax softmax_cross_entropy_with_integer_labels", lambda a: jnp.sum(
                optax.losses.softmax_cross_entropy_with_integer_labels(a, lj)), True))
        else:
            cases.append(missing("optax softmax_cross_entropy_with_integer_labels", reason))
        for name, f, peer in fns:
            jitted = jax.jit(f if mode == "fwd" else jax.value_and_grad(f))
            cases.append(Case(name, lambda jitted=jitted: jax.block_until_ready(jitted(xj)),
                              peer=peer))
        return cases
    if backend == "torch":
        import torch
        import torch.nn.functional as F

        xt, lt = torch.from_numpy(x), torch.from_numpy(labels)
        fns = [("focal_array softmax_focal_loss eager", lambda a: fa.softmax_focal_loss(
                    a, lt, alpha=ALPHA, reduction="sum"), False),
               ("focal_array softmax_cross_entropy eager", lambda a: fa.softmax_cross_entropy(
                   a, lt, reduction="sum"), False),
               ("torch F.cross_entropy eager", lambda a: F.cross_entropy(
                   a.reshape(-1, a.shape[-1]), lt.reshape(-1), reduction="sum"), True)]
        for name, f, peer in fns:
            if mode == "fwd":
                def run(f=f):
                    with torch.no_grad():
                        return f(xt)
            else:
                def run(f=f):
                    xg = xt.detach().requires_grad_(True)
                    return torch.autograd.grad(f(xg), xg)
            cases.append(Case(name, run, peer=peer))
        return cases
    raise ValueError(backend)


def match_cases(backend: str, mode: str, anchors: int, batch: int, gts: int) -> list[Case]:
    from benchmarks import peers
    from focal_array.matcher import match_anchors

    if mode != "fwd":
        return []
    a, g, valid = match_inputs(anchors, batch, gts)
    n_real = valid.sum(axis=1)
    per_image = [g[i, : n_real[i]] for i in range(batch)]
    loop_note = "loop over images" if batch > 1 else "per image"
    cases: list[Case] = []
    if backend == "numpy":
        if batch == 1:
            cases.append(Case("focal_array match_anchors", lambda: match_anchors(
                a, per_image[0]), peer=False))
        else:
            cases.append(Case("focal_array match_anchors (batched, padded)", lambda: match_anchors(
                a, g, gt_valid=valid), peer=False))
        cases.append(Case(f"plain NumPy box_iou + Matcher ({loop_note})", lambda: [
            peers.plain_match(np, a, gi) for gi in per_image]))
        return cases
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        aj = jnp.asarray(a)
        gj = [jnp.asarray(gi) for gi in per_image]
        if batch == 1:
            f = jax.jit(lambda a_, g_: match_anchors(a_, g_))
            cases.append(Case("focal_array match_anchors (jit)",
                              lambda: jax.block_until_ready(f(aj, gj[0])), peer=False))
        else:
            gb, vb = jnp.asarray(g), jnp.asarray(valid)
            fb = jax.jit(jax.vmap(lambda g_, v_: match_anchors(aj, g_, gt_valid=v_)))
            cases.append(Case("focal_array match_anchors (jit + vmap, padded)",
                              lambda: jax.block_until_ready(fb(gb, vb)), peer=False))
        pm = jax.jit(lambda a_, g_: peers.plain_match(jnp, a_, g_))
        cases.append(Case(f"plain jnp box_iou + Matcher (jit, {loop_note})",
                          lambda: jax.block_until_ready([pm(aj, gi) for gi in gj])))
        return cases
    if backend == "torch":
        import array_api_compat.torch as xpt
        import torch

        at = torch.from_numpy(a)
        gt = [torch.from_numpy(np.ascontiguousarray(gi)) for gi in per_image]
        if batch == 1:
            def run_fa():
                with torch.no_grad():
                    return match_anchors(at, gt[0])
            cases.append(Case("focal_array match_anchors eager", run_fa, peer=False))
        else:
            gb, vb = torch.from_numpy(g), torch.from_numpy(valid)

            def run_fa():
                with torch.no_grad():
                    return match_anchors(at, gb, gt_valid=vb)
            cases.append(Case("focal_array match_anchors eager (batched, padded)", run_fa,
                              peer=False))

        def run_plain():
            with torch.no_grad():
                return [peers.plain_match(xpt, at, gi) for gi in gt]
        cases.append(Case(f"torchvision box_iou + Matcher formula (transcribed, {loop_note})",
                          run_plain))
        tv_match, tv_reason = torchvision_matcher()
        if tv_match is None:
            cases.append(missing(f"torchvision box_iou + Matcher ({loop_note})", tv_reason))
        else:
            def run_tv():
                with torch.no_grad():
                    return [tv_match(at, gi) for gi in gt]
            cases.append(Case(f"torchvision box_iou + Matcher ({loop_note})", run_tv))
        return cases
    raise ValueError(backend)


def dense_cases(backend: str, mode: str, batch: int, anchors: int, classes: int,
                gts: int) -> list[Case]:
    from focal_array.detection import dense_detection_loss

    a, g, valid = match_inputs(anchors, batch, gts)
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((batch, anchors, classes), dtype=np.float32) * 3.0 - 4.0
    deltas = rng.standard_normal((batch, anchors, 4), dtype=np.float32) * 0.1
    labels = rng.integers(0, classes, (batch, gts))
    name = "focal_array dense_detection_loss"
    if backend == "numpy":
        if mode == "fwd":
            return [Case(name, lambda: dense_detection_loss(
                logits, deltas, a, g, labels, gt_valid=valid)["total"], peer=False)]
        return [missing(name, "NumPy has no autodiff (no analytic gradient for the whole "
                              "call yet)", peer=False)]
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        args = [jnp.asarray(v) for v in (logits, deltas, a, g, labels, valid)]

        def f(lg, dl, a_, g_, lb, v_):
            return dense_detection_loss(lg, dl, a_, g_, lb, gt_valid=v_)["total"]
        jitted = jax.jit(f if mode == "fwd" else jax.value_and_grad(f, argnums=(0, 1)))
        return [Case(name + " (jit)", lambda: jax.block_until_ready(jitted(*args)),
                     peer=False, jax_lowered=lambda: jitted.lower(*args))]
    if backend == "torch":
        import torch

        args = [torch.from_numpy(v) for v in (logits, deltas, a, g, labels, valid)]

        def run():
            if mode == "fwd":
                with torch.no_grad():
                    return dense_detection_loss(*args[:5], gt_valid=args[5])["total"]
            lg = args[0].detach().requires_grad_(True)
            dl = args[1].detach().requires_grad_(True)
            out = dense_detection_loss(lg, dl, *args[2:5], gt_valid=args[5])["total"]
            return torch.autograd.grad(out, (lg, dl))
        return [Case(name + " eager", run, peer=False)]
    raise ValueError(backend)


def build_cases(workload: str, backend: str, mode: str, size: dict, quick: bool) -> list[Case]:
    if workload == "sigmoid_1img":
        x, y = sigmoid_inputs((size["anchors"], size["classes"]))
        return sigmoid_cases(backend, mode, x, y, with_compile=not quick)
    if workload == "sigmoid_8img":
        x, y = sigmoid_inputs((size["images"], size["img8_anchors"], size["classes"]))
        return sigmoid_cases(backend, mode, x, y, with_compile=not quick, variants=False)
    if workload == "softmax_rcnn":
        return softmax_cases(backend, mode, (8, size["rois"], size["rcnn_classes"]))
    if workload in GTS:
        batch, gts = GTS[workload]
        if quick:
            gts = max(2, gts // 10)
        return match_cases(backend, mode, size["match_anchors"], batch, gts)
    if workload == "dense_b8":
        return dense_cases(backend, mode, 8, size["dense_anchors"], size["classes"],
                           size["dense_gts"])
    raise ValueError(workload)


def workload_shape(workload: str, size: dict, quick: bool) -> str:
    if workload == "sigmoid_1img":
        return f"{size['anchors']:,} × {size['classes']}"
    if workload == "sigmoid_8img":
        return f"{size['images']} × {size['img8_anchors']:,} × {size['classes']}"
    if workload == "softmax_rcnn":
        return f"8 × {size['rois']} × {size['rcnn_classes']}"
    if workload in GTS:
        batch, gts = GTS[workload]
        gts = max(2, gts // 10) if quick else gts
        if batch == 1:
            return f"1 × {size['match_anchors']:,} anchors × {gts} gts"
        real = int(match_inputs(size["match_anchors"], batch, gts)[2].sum())
        return (f"{batch} × {size['match_anchors']:,} anchors × ≤ {gts} gts "
                f"({real} real in all, padded to {gts} per image)")
    real = int(match_inputs(size["dense_anchors"], 8, size["dense_gts"])[2].sum())
    return (f"8 × {size['dense_anchors']:,} × {size['classes']}, ≤ {size['dense_gts']} gts "
            f"per image ({real} real in all)")


# --------------------------------------------------------------------------- timing worker


def _summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def time_group(cases: list[Case], repeats: int, warmups: int = 2) -> list[dict]:
    """Warm up every case (``warmups`` calls, the first one compiles), then interleave
    ``repeats`` rounds; ratios pair by pair."""
    rows: dict[str, dict] = {}
    live = []
    for c in cases:
        if c.run is None:
            rows[c.impl] = {"impl": c.impl, "peer": c.peer, "status": "missing",
                            "reason": c.reason}
            continue
        try:
            t0 = time.perf_counter()
            c.run()  # compilation / first-call costs
            first = time.perf_counter() - t0
            for _ in range(warmups - 1):
                c.run()
        except Exception as exc:
            rows[c.impl] = {"impl": c.impl, "peer": c.peer, "status": "missing",
                            "reason": f"failed: {type(exc).__name__}: {str(exc)[:160]}"}
            continue
        rows[c.impl] = {"impl": c.impl, "peer": c.peer, "status": "measured",
                        "reason": None, "first_call_ms": first * 1e3, "times_ms": []}
        live.append(c)
    for r in range(repeats):
        k = r % len(live) if live else 0
        for c in live[k:] + live[:k]:
            t0 = time.perf_counter()
            c.run()
            rows[c.impl]["times_ms"].append((time.perf_counter() - t0) * 1e3)
    for c in live:
        row = rows[c.impl]
        row.update({f"{k}_ms": v for k, v in _summary(row["times_ms"]).items()})
        if not c.peer:
            ratios = {}
            for other in live:
                if other.peer:
                    pairs = [a / b for a, b in zip(row["times_ms"],
                                                   rows[other.impl]["times_ms"], strict=True)]
                    ratios[other.impl] = _summary(pairs)
            row["ratios"] = ratios
    return [rows[c.impl] for c in cases]


def gradient_accuracy(backend: str, shape: tuple[int, int], quick: bool) -> list[dict]:
    """Largest elementwise relative error of each float32 gradient vs a float64 reference."""
    from benchmarks import peers

    x, y = accuracy_inputs(shape)
    ref = peers.reference_sigmoid_grad64(x, y, ALPHA, GAMMA)
    tiny = float(np.finfo(np.float32).smallest_normal)
    out = []
    for c in sigmoid_cases(backend, "fwd+bwd", x, y, with_compile=not quick):
        if c.run is None:
            out.append({"backend": backend, "impl": c.impl, "peer": c.peer,
                        "status": "missing", "reason": c.reason})
            continue
        try:
            res = c.run()
            g = np.asarray(res[1].detach() if hasattr(res[1], "detach") else res[1],
                           dtype=np.float64)
        except Exception as exc:
            out.append({"backend": backend, "impl": c.impl, "peer": c.peer,
                        "status": "missing", "reason": f"failed: {type(exc).__name__}"})
            continue
        diff = np.abs(g - ref)
        diff = np.where(diff <= tiny, 0.0, diff)
        rel = diff / np.maximum(np.abs(ref), tiny)
        out.append({"backend": backend, "impl": c.impl, "peer": c.peer,
                    "status": "measured", "reason": None,
                    "max_rel_err": float(np.max(rel)),
                    "frac_rel_err_gt_1e-5": float(np.mean(rel > 1e-5)),
                    "finite": bool(np.all(np.isfinite(g)))})
    return out


def timing_worker(backend: str, size_name: str, workloads: list[str], quick: bool) -> dict:
    size = SIZES[size_name]
    if backend == "torch":
        import torch  # noqa: F401  (import cost outside the measurement)
    groups: list[dict] = []
    memory: list[dict] = []
    durations: list[dict] = []
    for w in workloads:
        for mode in MODES:
            if backend == "numpy" and mode == "fwd+bwd" and w.startswith("match"):
                continue
            t_group = time.perf_counter()
            try:
                cases = build_cases(w, backend, mode, size, quick)
            except Exception as exc:
                cases = [missing(f"{w} ({backend})",
                                 f"failed to build: {type(exc).__name__}: {str(exc)[:160]}")]
            if not cases:
                continue
            warmups, repeats = plan(size, w)
            rows = time_group(cases, repeats, warmups)
            for row in rows:
                row.update({"workload": w, "backend": backend, "mode": mode,
                            "shape": workload_shape(w, size, quick), "warmups": warmups,
                            "repeats": repeats})
            groups.extend(rows)
            if backend == "jax" and w == "dense_b8":
                memory.extend(dense_memory(cases, mode, size))
            del cases
            seconds = time.perf_counter() - t_group
            durations.append({"backend": backend, "workload": w, "mode": mode,
                              "seconds": round(seconds, 1)})
            print(f"[benchmarks] {backend} {w} {mode}: {seconds:.1f} s", file=sys.stderr,
                  flush=True)
    t_accuracy = time.perf_counter()
    accuracy = gradient_accuracy(backend, size["accuracy_shape"], quick)
    durations.append({"backend": backend, "workload": "accuracy", "mode": "fwd+bwd",
                      "seconds": round(time.perf_counter() - t_accuracy, 1)})
    return {"rows": groups, "accuracy": accuracy, "memory": memory, "durations": durations}


def plan(size: dict, workload: str) -> tuple[int, int]:
    """(warm-up calls, timed repeats) of a workload; ``--repeats`` sets every workload's."""
    if os.environ.get("FOCAL_ARRAY_BENCH_REPEATS"):
        return 2, size["repeats"]
    return size.get("heavy", {}).get(workload, (2, size["repeats"]))


def _full_size_temporaries(hlo: str, shape: tuple[int, ...]) -> list[str]:
    """Names of the buffers of ``shape`` in a compiled XLA module's entry computation that
    are neither parameters nor outputs (any element type)."""
    entry = hlo[hlo.index("\nENTRY"):].splitlines()[1:]
    root = next((line for line in entry if line.strip().startswith("ROOT")), "")
    outputs = set(re.findall(r"%([\w.\-]+)", root.split("=", 1)[1] if "=" in root else ""))
    dims = ",".join(str(d) for d in shape)
    found = []
    for line in entry:
        m = re.match(r"\s*(?:ROOT )?%([\w.\-]+) = \w+\[" + re.escape(dims) + r"\]", line)
        if m and "parameter(" not in line and m.group(1) not in outputs:
            found.append(m.group(1))
    return found


def dense_memory(cases: list[Case], mode: str, size: dict) -> list[dict]:
    """(B, A, C)-shaped temporaries in XLA's plan of the jitted dense_detection_loss.

    A materialized (B, A, C) target tensor (a one-hot of the labels, a mask, or any
    intermediate of the classification term) shows as a buffer of that shape that is
    neither the logits (a parameter) nor the gradient (an output); the count of such
    buffers is the measured value, and XLA's total temporaries are reported beside it (they
    include the matcher's (B, A, G) matrices).
    """
    out = []
    shape = (8, size["dense_anchors"], size["classes"])
    bac = math.prod(shape) * 4
    for c in cases:
        m: dict[str, Any] = {"backend": "jax", "impl": c.impl, "mode": mode,
                             "workload": "dense_b8", "peer": False, "logits_bytes": bac}
        if c.run is None or c.jax_lowered is None:
            m.update(status="missing", reason=c.reason or "no jitted function")
            out.append(m)
            continue
        try:
            compiled = c.jax_lowered().compile()
            ma = compiled.memory_analysis()
            temp = int(ma.temp_size_in_bytes)
            full = _full_size_temporaries(compiled.as_text(), shape)
        except Exception as exc:  # memory analysis is optional in XLA
            m.update(status="missing", reason=f"{type(exc).__name__}: {str(exc)[:80]}")
            out.append(m)
            continue
        m.update(status="measured", reason=None, peak_extra_bytes=temp, x_logits=temp / bac,
                 bac_temporaries=len(full), xla_temp_bytes=temp,
                 xla_output_bytes=int(ma.output_size_in_bytes),
                 method=f"XLA's compiled plan: {len(full)} (B, A, C) buffer(s) besides the "
                        f"logits and the gradient; all temporaries {temp / bac:.2f}× B·A·C·4 "
                        "bytes (the matcher's (B, A, G) matrices included)")
        out.append(m)
    return out


# --------------------------------------------------------------------------- memory worker


def _proc_status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def memory_worker(backend: str, impl: str, mode: str, size_name: str, quick: bool) -> dict:
    size = SIZES[size_name]
    x, y = sigmoid_inputs((size["anchors"], size["classes"]))
    cases = {c.impl: c for c in sigmoid_cases(backend, mode, x, y, with_compile=not quick)}
    c = cases[impl]
    result: dict[str, Any] = {"backend": backend, "impl": impl, "mode": mode,
                              "workload": "sigmoid_1img", "peer": c.peer,
                              "logits_bytes": int(x.nbytes)}
    if c.run is None:
        result.update(status="missing", reason=c.reason)
        return result
    c.run()
    c.run()
    import gc

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
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        result["tracemalloc_peak_bytes"] = int(peak)
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
        peak_bytes, method = result["tracemalloc_peak_bytes"], "tracemalloc"
    elif "xla_temp_bytes" in result:
        peak_bytes = result["xla_temp_bytes"] + result["xla_output_bytes"]
        method = "XLA memory analysis (temp + output)"
    elif "rss_peak_extra_bytes" in result:
        peak_bytes, method = result["rss_peak_extra_bytes"], "RSS high-water mark"
    else:
        result.update(status="missing", reason="no memory measurement available")
        return result
    result.update(status="measured", reason=None, peak_extra_bytes=int(peak_bytes),
                  method=method, x_logits=peak_bytes / x.nbytes)
    return result


# --------------------------------------------------------------------------- driver


def _subprocess(args: list[str], backend: str, timeout: float) -> tuple[Any, str | None]:
    env = dict(os.environ)
    env["KERAS_BACKEND"] = backend
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    cmd = [sys.executable, "-m", "benchmarks.run", *args]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:.0f} s"
    for line in proc.stderr.splitlines():  # the worker's progress, after the fact
        if line.startswith("[benchmarks]"):
            print(line, file=sys.stderr, flush=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return None, f"worker failed (exit {proc.returncode}): {tail[:200]}"
    return json.loads(lines[-1]), None


def backend_available(backend: str) -> str | None:
    if backend == "numpy":
        return None
    return import_or_reason(backend)[1]


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
    for name in ("numpy", "jax", "optax", "torch", "torchvision", "keras", "array-api-compat"):
        try:  # metadata, not import: keras would pick a backend in this process
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "versions": versions, "loadavg_at_start": load,
            "gpu": None}


def _row(rows: list[dict], workload: str, backend: str, mode: str, impl: str) -> dict | None:
    for r in rows:
        if (r["workload"], r["backend"], r["mode"], r["impl"]) == (workload, backend, mode, impl):
            return r
    return None


def evaluate_targets(result: dict) -> list[dict]:
    """The issue's targets, each with the measured value, the limit and met/not met."""
    rows, mem, acc = result["rows"], result["memory"], result["accuracy"]
    out: list[dict] = []

    def ratio(target: str, workload: str, backend: str, mode: str, impl: str, peer: str,
              limit: float, note: str = "") -> None:
        r = _row(rows, workload, backend, mode, impl)
        p = _row(rows, workload, backend, mode, peer)
        value = None
        if r and r["status"] == "measured" and peer in r.get("ratios", {}):
            value = r["ratios"][peer]
        why = None
        if value is None:
            why = (p or {}).get("reason") or (r or {}).get("reason") or "not measured"
        out.append({"target": target, "workload": workload, "mode": mode,
                    "measured": value, "limit": limit, "kind": "ratio",
                    "met": None if value is None else value["median"] <= limit,
                    "note": why or note})

    def cross(target: str, a: tuple, b: tuple, limit: float, note: str) -> None:
        ra, rb = _row(rows, *a), _row(rows, *b)
        value = None
        if ra and rb and ra["status"] == rb["status"] == "measured":
            value = {"median": ra["median_ms"] / rb["median_ms"]}
        why = None if value else ((rb or {}).get("reason") or (ra or {}).get("reason")
                                  or "not measured")
        out.append({"target": target, "workload": a[0], "mode": a[2], "measured": value,
                    "limit": limit, "kind": "ratio of medians (two processes)",
                    "met": None if value is None else value["median"] <= limit,
                    "note": why or note})

    def stand_in(workload: str, mode: str, real: str) -> str:
        r = _row(rows, workload, "torch", mode, real)
        if r and r["status"] == "measured":
            return f"torchvision's formula, transcribed; torchvision itself: row \"{real}\""
        return "torchvision not installed in this environment; its formula, transcribed"

    def tv_match_peer(workload: str, loop: str) -> tuple[str, str]:
        """The real torchvision matcher row when measured, else the transcribed formula."""
        real = f"torchvision box_iou + Matcher ({loop})"
        r = _row(rows, workload, "torch", "fwd", real)
        if r and r["status"] == "measured":
            return real, "torchvision eager"
        return (f"torchvision box_iou + Matcher formula (transcribed, {loop})",
                "torchvision not installed in this environment; its formula, transcribed, "
                "eager")

    for w in ("sigmoid_1img", "sigmoid_8img"):
        for mode in MODES:
            ratio("JAX jit ≤ 0.25× optax", w, "jax", mode, "focal_array",
                  "optax sigmoid_focal_loss", 0.25)
            ratio("JAX jit ≤ 1.1× hand-fused jnp", w, "jax", mode, "focal_array",
                  "hand-fused stable jnp reference", 1.1)
            ratio("PyTorch eager ≤ 0.9× torchvision", w, "torch", mode, "focal_array eager",
                  "torchvision eager", 0.9)
            ratio("PyTorch eager ≤ 0.9× torchvision formula (stand-in)", w, "torch", mode,
                  "focal_array eager", "torchvision formula eager (transcribed)", 0.9,
                  stand_in(w, mode, "torchvision eager"))
            ratio("PyTorch compiled ≤ 1.0× torchvision compiled", w, "torch", mode,
                  "focal_array compiled", "torchvision compiled", 1.0)
            ratio("PyTorch compiled ≤ 1.0× torchvision formula compiled (stand-in)", w,
                  "torch", mode, "focal_array compiled",
                  "torchvision formula compiled (transcribed)", 1.0,
                  stand_in(w, mode, "torchvision compiled"))
        ratio("NumPy ≤ 0.5× naive NumPy", w, "numpy", "fwd", "focal_array",
              "naive NumPy (torchvision formula)", 0.5)
        ratio("NumPy ≤ 0.5× Keras (numpy)", w, "numpy", "fwd", "focal_array",
              "Keras 3 BinaryFocalCrossentropy (numpy)", 0.5)

    def memory(target: str, workload: str, backend: str, impl: str, mode: str,
               limit: float, kind: str = "× logits bytes", strict: bool = False,
               key: str = "x_logits") -> None:
        m = next((m for m in mem if (m.get("workload", "sigmoid_1img"), m["backend"],
                                     m["impl"], m["mode"]) == (workload, backend, impl, mode)),
                 None)
        value = m.get(key) if m and m["status"] == "measured" else None
        out.append({"target": target, "workload": workload, "mode": mode,
                    "measured": None if value is None else {"median": value},
                    "limit": limit, "kind": kind,
                    "met": None if value is None else (value < limit if strict
                                                       else value <= limit),
                    "note": (m or {}).get("method") or (m or {}).get("reason", "not measured")})

    w = "sigmoid_1img"
    for mode in MODES:
        memory("JAX peak extra memory ≤ 2× logits", w, "jax", "focal_array", mode, 2.0)
    memory("NumPy peak extra memory ≤ 4× logits", w, "numpy", "focal_array", "fwd", 4.0)
    memory("NumPy (analytic gradient) peak extra memory ≤ 4× logits", w, "numpy",
           "focal_array (analytic gradient)", "fwd+bwd", 4.0)
    for mode in MODES:
        memory("dense_detection_loss never materializes a (B, A, C) tensor: JAX, "
               "(B, A, C) temporaries in XLA's plan", "dense_b8", "jax",
               "focal_array dense_detection_loss (jit)", mode, 0,
               "buffers besides the logits and the gradient", key="bac_temporaries")
    for a in acc:
        if a["peer"]:
            continue
        value = a.get("max_rel_err")
        out.append({"target": f"float32 gradient ≤ 2e-6 relative ({a['backend']}, "
                              f"{a['impl']})", "workload": "accuracy", "mode": "fwd+bwd",
                    "measured": None if value is None else {"median": value}, "limit": 2e-6,
                    "kind": "max relative error", "met": None if value is None else
                    value <= 2e-6, "note": a.get("reason") or ""})
    for gts in (50, 200):
        single, batched = f"match_1img_{gts}", f"match_b8_{gts}"
        ratio(f"matcher PyTorch eager ≤ 0.8× torchvision per image (×{gts})", single, "torch",
              "fwd", "focal_array match_anchors eager",
              "torchvision box_iou + Matcher (per image)", 0.8)
        ratio(f"matcher PyTorch eager ≤ 0.8× torchvision formula per image (×{gts}, stand-in)",
              single, "torch", "fwd", "focal_array match_anchors eager",
              "torchvision box_iou + Matcher formula (transcribed, per image)", 0.8,
              stand_in(single, "fwd", "torchvision box_iou + Matcher (per image)"))
        peer, how = tv_match_peer(single, "per image")
        cross(f"matcher NumPy ≤ 1.0× torchvision per image (×{gts})",
              (single, "numpy", "fwd", "focal_array match_anchors"),
              (single, "torch", "fwd", peer), 1.0, how + "; medians from two processes")
        ratio(f"matcher JAX jit ≤ 1.0× plain jnp per image (×{gts})", single, "jax", "fwd",
              "focal_array match_anchors (jit)", "plain jnp box_iou + Matcher (jit, per image)",
              1.0)
        peer, how = tv_match_peer(batched, "loop over images")
        cross(f"matcher JAX jit+vmap batch 8 ≤ 0.2× torchvision loop (×{gts})",
              (batched, "jax", "fwd", "focal_array match_anchors (jit + vmap, padded)"),
              (batched, "torch", "fwd", peer), 0.2,
              how + " loop; medians from two processes")
    return out


MEMORY_IMPLS = {
    "numpy": {"fwd": ["focal_array", "focal_array (bool targets)",
                      "naive NumPy (torchvision formula)", "stable log-space NumPy",
                      "Keras 3 BinaryFocalCrossentropy (numpy)"],
              "fwd+bwd": ["focal_array (analytic gradient)",
                          "focal_array (analytic gradient, bool targets)"]},
    "jax": {m: ["focal_array", "focal_array (bool targets)", "hand-fused stable jnp reference",
                "optax sigmoid_focal_loss", "Keras 3 BinaryFocalCrossentropy (jax)"]
            for m in MODES},
    "jax+": {"fwd+bwd": ["focal_array analytic gradient (candidate custom_vjp)"]},
    "torch": {m: ["focal_array eager", "torchvision formula eager (transcribed)",
                  "torchvision eager"] for m in MODES},
}


def run_all(size_name: str, workloads: list[str], backends: list[str], quick: bool,
            memory: bool, timeout: float) -> dict:
    t_start = time.perf_counter()
    result: dict[str, Any] = {
        "schema": SCHEMA_VERSION, "date": datetime.datetime.now().astimezone().isoformat(
            timespec="seconds"),
        "size": size_name, "quick": quick, "repeats": SIZES[size_name]["repeats"],
        "workloads": workloads, "machine": machine(), "rows": [], "memory": [],
        "accuracy": [], "durations": [],
        "method": "interleaved repeats after warm-up; ratios pair by pair; one process per "
                  "backend; memory in a fresh process per implementation",
    }
    for backend in backends:
        reason = backend_available(backend)
        if reason is None:
            print(f"[benchmarks] timing on {backend} ...", file=sys.stderr, flush=True)
            res, reason = _subprocess(["--worker", "time", "--backend", backend, "--size",
                                       size_name, "--workloads", ",".join(workloads)]
                                      + (["--quick"] if quick else []), backend, timeout)
        else:
            res = None
        if res is None:
            for w in workloads:
                result["rows"].append({"workload": w, "backend": backend, "mode": "fwd",
                                       "impl": f"all ({backend})", "peer": False,
                                       "status": "missing", "reason": reason,
                                       "shape": workload_shape(w, SIZES[size_name], quick)})
            continue
        result["rows"].extend(res["rows"])
        result["accuracy"].extend(res["accuracy"])
        result["memory"].extend(res.get("memory", []))
        result["durations"].extend(res.get("durations", []))
        if memory and "sigmoid_1img" in workloads:
            extra = MEMORY_IMPLS.get(backend + "+", {})
            plans = [(m, i) for m, i in MEMORY_IMPLS[backend].items()]
            plans += [] if quick else list(extra.items())
            for mode, impls in plans:
                if quick and mode != "fwd":
                    continue  # --quick checks the measurement path once per backend
                for impl in impls[:1] if quick else impls:
                    print(f"[benchmarks] memory {backend} {mode} {impl} ...", file=sys.stderr,
                          flush=True)
                    t_memory = time.perf_counter()
                    m, why = _subprocess(["--worker", "memory", "--backend", backend,
                                          "--impl", impl, "--mode", mode, "--size", size_name]
                                         + (["--quick"] if quick else []), backend, timeout)
                    result["memory"].append(m if m is not None else {
                        "backend": backend, "impl": impl, "mode": mode, "status": "missing",
                        "reason": why})
                    result["durations"].append({
                        "backend": backend, "workload": "memory", "mode": mode,
                        "seconds": round(time.perf_counter() - t_memory, 1)})
    result["targets"] = evaluate_targets(result)
    result["wall_s"] = round(time.perf_counter() - t_start, 1)
    return result


# --------------------------------------------------------------------------- reporting


def _fmt_ms(v: float) -> str:
    return f"{v:.3g}" if v < 10 else f"{v:.0f}"


def _fmt_ratio(r: dict | None) -> str:
    if not r:
        return "—"
    if "min" in r:
        return f"{r['median']:.2f}× ({r['min']:.2f}–{r['max']:.2f})"
    return f"{r['median']:.3g}"


def table_lines(result: dict) -> list[str]:
    lines = ["| workload | backend | mode | implementation | median ms | min–max ms | "
             "focal_array ÷ peer (median, min–max, pair by pair) |",
             "|---|---|---|---|---:|---:|---|"]
    for r in result["rows"]:
        if r["status"] != "measured":
            lines.append(f"| {r['workload']} | {r['backend']} | {r['mode']} | {r['impl']} | "
                         f"— | — | {r['reason']} |")
            continue
        ratios = "; ".join(f"vs {k}: {_fmt_ratio(v)}" for k, v in r.get("ratios", {}).items())
        lines.append(f"| {r['workload']} | {r['backend']} | {r['mode']} | {r['impl']} | "
                     f"{_fmt_ms(r['median_ms'])} | {_fmt_ms(r['min_ms'])}–"
                     f"{_fmt_ms(r['max_ms'])} | {ratios} |")
    return lines


def run_time_lines(result: dict) -> list[str]:
    """Wall time of the run and seconds per workload (all backends and modes together)."""
    if "wall_s" not in result:
        return []
    per: dict[str, float] = {}
    for d in result.get("durations", []):
        per[d["workload"]] = per.get(d["workload"], 0.0) + d["seconds"]
    parts = ", ".join(f"{w} {v:.0f} s" for w, v in per.items())
    return [f"- **Run time:** {result['wall_s'] / 60:.1f} min in all ({parts}; the rest is "
            "process start-up and input generation)."]


def heavy_note(result: dict) -> str:
    """The workloads timed with fewer warm-ups/repeats (their calls take seconds)."""
    plans = {}
    for r in result["rows"]:
        if "repeats" in r and (r.get("warmups"), r["repeats"]) != (2, result["repeats"]):
            plans[r["workload"]] = (r["warmups"], r["repeats"])
    return "".join(f"; {w}: {n} timed after {k} warm-up" for w, (k, n) in plans.items())


def markdown(result: dict) -> str:
    m = result["machine"]
    shapes: dict[str, str] = {}
    for r in result["rows"]:
        shapes.setdefault(r["workload"], r.get("shape", ""))
    out = [
        "# Benchmarks",
        "",
        "Generated by `python -m benchmarks.run` "
        f"(`--size {result['size']}`{', `--quick`' if result['quick'] else ''}); "
        "do not edit by hand — rerun the command.",
        "",
        f"- **Date:** {result['date']}",
        f"- **Machine:** {m['cpu']}, {m['cores']} cores, {m['platform']}, Python "
        f"{m['python']}; load average at start {m['loadavg_at_start']}",
        "- **Versions:** " + ", ".join(f"{k} {v or 'not installed'}"
                                       for k, v in m["versions"].items()),
        f"- **Method:** {result['method']}; {result['repeats']} timed repeats per "
        "implementation after 2 warm-up calls" + heavy_note(result) + ". float32 "
        "throughout; sigmoid targets are 0/1 float32 with 1% "
        "positives (\"bool targets\" rows pass the same targets as a boolean mask); losses "
        "are summed; fwd+bwd is the loss and its gradient.",
        *run_time_lines(result),
        "- **Caveat:** the machine may be shared with other jobs (see the load average): "
        "absolute times are noisy. The ratios are computed pair by pair within one run "
        "(each repeat of focal_array against the same repeat of the peer), which cancels "
        "most of the load; read the min–max ranges before trusting a difference under ~15%.",
        "- **GPU:** no accelerator was lent to this run, so no HBM-bandwidth fraction is "
        "reported.",
        "",
        "## Workloads",
        "",
        "| workload | shape |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in shapes.items()],
        "",
        "## Targets",
        "",
        "| target | workload | mode | measured | limit | met | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in result["targets"]:
        met = "—" if t["met"] is None else ("yes" if t["met"] else "**no**")
        out.append(f"| {t['target']} | {t['workload']} | {t['mode']} | "
                   f"{_fmt_ratio(t['measured'])} | {t['limit']:g} | {met} | {t['note']} |")
    out += ["", "## Timings", "", *table_lines(result), "",
            "## Peak extra memory per call", "",
            "sigmoid_1img: fresh process per implementation, after a warm-up call. dense_b8: "
            "XLA's temporaries of the jitted call (\"× logits\" is × B·A·C·4 bytes; they "
            "include the matcher's (B, A, G) matrices) and, in the method column, how many "
            "(B, A, C) buffers XLA keeps besides the logits and the gradient.", "",
            "| workload | backend | mode | implementation | peak extra | × logits | method | "
            "RSS high-water extra |", "|---|---|---|---|---:|---:|---|---:|"]
    for r in result["memory"]:
        head = (f"| {r.get('workload', 'sigmoid_1img')} | {r['backend']} | {r['mode']} | "
                f"{r['impl']} |")
        if r["status"] != "measured":
            out.append(f"{head} — | — | {r['reason']} | — |")
            continue
        rss = r.get("rss_peak_extra_bytes")
        out.append(f"{head} {r['peak_extra_bytes'] / 2**20:.1f} MiB | {r['x_logits']:.2f} | "
                   f"{r['method']} | {'—' if rss is None else f'{rss / 2**20:.1f} MiB'} |")
    out += ["", "## Gradient accuracy (float32 vs float64)", "",
            "Logits uniform in [−30, 30], 10% positives, α = 0.25, γ = 2; largest elementwise "
            "relative error, differences below float32's smallest normal counting as 0.", "",
            "| backend | implementation | max relative error | share > 1e-5 | finite |",
            "|---|---|---:|---:|---|"]
    for a in result["accuracy"]:
        if a["status"] != "measured":
            out.append(f"| {a['backend']} | {a['impl']} | — | — | {a['reason']} |")
            continue
        out.append(f"| {a['backend']} | {a['impl']} | {a['max_rel_err']:.2e} | "
                   f"{100 * a['frac_rel_err_gt_1e-5']:.2f}% | {a['finite']} |")
    notes = result.get("notes")
    if notes:
        out += ["", "## Notes", "", notes.strip()]
    return "\n".join(out) + "\n"


def print_table(result: dict) -> None:
    for r in result["rows"]:
        head = f"{r['workload']:14} {r['backend']:6} {r['mode']:7} {r['impl'][:58]:58}"
        if r["status"] != "measured":
            print(f"{head}  missing: {r['reason']}")
            continue
        ratios = " ".join(f"[{_fmt_ratio(v)} vs {k[:28]}]" for k, v in r.get("ratios", {}).items())
        print(f"{head} {r['median_ms']:9.2f} ms ({r['min_ms']:.2f}–{r['max_ms']:.2f}) {ratios}")
    for t in result["targets"]:
        met = "—" if t["met"] is None else ("met" if t["met"] else "NOT met")
        print(f"target: {t['target']} [{t['mode']}]: {_fmt_ratio(t['measured'])} "
              f"(limit {t['limit']:g}) {met}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=("full", "medium", "quick"), default="medium",
                   help="workload sizes (default medium; full is the issue's; quick = --quick)")
    p.add_argument("--quick", action="store_true",
                   help="CI smoke run: tiny shapes, 1 repeat, no torch.compile")
    p.add_argument("--workloads", default=None,
                   help=f"comma-separated subset of {','.join(WORKLOADS)} (default: all; "
                   f"with --quick: {','.join(QUICK_WORKLOADS)})")
    p.add_argument("--backends", default=",".join(BACKENDS))
    p.add_argument("--repeats", type=int, help="timed repeats (default: 5; 1 with --quick)")
    p.add_argument("--no-memory", action="store_true", help="skip the memory processes")
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"),
                   help="directory for results.json and benchmarks.md")
    p.add_argument("--docs", action="store_true",
                   help="also write the markdown page to docs/benchmarks.md")
    p.add_argument("--notes", help="markdown file appended to the page as its closing note")
    p.add_argument("--from-json", metavar="RESULTS_JSON",
                   help="measure nothing: render the page again from a results.json (e.g. "
                        "with new --notes)")
    p.add_argument("--timeout", type=float, default=3600.0,
                   help="seconds allowed per worker process")
    p.add_argument("--worker", choices=("time", "memory"), help=argparse.SUPPRESS)
    p.add_argument("--backend", help=argparse.SUPPRESS)
    p.add_argument("--impl", help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.quick = args.quick or args.size == "quick"
    size_name = "quick" if args.quick else args.size
    if args.repeats:
        os.environ["FOCAL_ARRAY_BENCH_REPEATS"] = str(args.repeats)  # seen by the workers
    if os.environ.get("FOCAL_ARRAY_BENCH_REPEATS"):
        SIZES[size_name]["repeats"] = max(1, int(os.environ["FOCAL_ARRAY_BENCH_REPEATS"]))
    default = QUICK_WORKLOADS if args.quick else WORKLOADS
    workloads = [w for w in (args.workloads or ",".join(default)).split(",") if w]
    unknown = set(workloads) - set(WORKLOADS)
    if unknown:
        p.error(f"unknown workloads {sorted(unknown)}; choose from {','.join(WORKLOADS)}")
    if args.worker == "time":
        print(json.dumps(timing_worker(args.backend, size_name, workloads, args.quick)))
        return 0
    if args.worker == "memory":
        print(json.dumps(memory_worker(args.backend, args.impl, args.mode, size_name,
                                       args.quick)))
        return 0
    if args.from_json:
        with open(args.from_json) as f:
            result = json.load(f)
    else:
        result = run_all(size_name, workloads, [b for b in args.backends.split(",") if b],
                         args.quick, not args.no_memory, args.timeout)
    if args.notes:
        with open(args.notes) as f:
            result["notes"] = f.read()
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(result, f, indent=1)
    page = markdown(result)
    with open(os.path.join(args.out, "benchmarks.md"), "w") as f:
        f.write(page)
    if args.docs:
        with open(os.path.join(ROOT, "docs", "benchmarks.md"), "w") as f:
            f.write(page)
    print_table(result)
    print(f"wrote {os.path.join(args.out, 'results.json')} and benchmarks.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
