"""The workloads of the sweep: their sizes, inputs and the implementations timed side by side.

A *workload* is one loss family (or the matcher, or the CLI) at a list of *sizes*; each
(workload, size, mode) is one group of :class:`Case` objects that :mod:`benchmarks.timing`
times interleaved. A case's ``key`` is stable across runs and backends ("fa", "tv",
"optax", ...) so that targets and the plot find rows without parsing display names.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ALPHA, GAMMA = 0.25, 2.0
POS_FRACTION = 0.01  # share of positive (anchor, class) pairs, RetinaNet-like
MODES = ("fwd", "fwd+bwd")
CLASSES = 80
SIGMOID_ANCHORS = (10_000, 30_000, 60_000, 200_000, 1_000_000)
#: 8 × 1,000,000 × 80 float32 is 2.6 GB per array (logits, targets, gradient, the peers'
#: temporaries): more than a shared 2-core machine's memory can take, so left out.
B8_MAX_ANCHORS = 200_000
MATCH_IMAGES = ((480, 640), (800, 1333))
MATCH_GTS = (3, 7, 20, 50, 200)
INSPECT_IMAGES = 5_000

LOSS_WORKLOADS = ("sigmoid_b1", "sigmoid_b8", "softmax_ce", "softmax_focal")
MATCH_WORKLOADS = ("match_1img", "match_b8")
WORKLOADS = LOSS_WORKLOADS + MATCH_WORKLOADS + ("inspect",)


@dataclass
class Size:
    """One size of a workload. ``x`` is the plot's abscissa (logits elements, or gts)."""

    workload: str
    key: str
    label: str
    x: float
    params: dict[str, Any]
    plan: tuple[int, int]  # (warm-up calls, timed repeats)


@dataclass
class Case:
    """One implementation of one group: ``run()`` computes and blocks until done."""

    key: str
    impl: str
    run: Callable[[], Any] | None = None
    reason: str | None = None  # why ``run`` is None
    peer: bool = True  # False for focal_array's own rows
    vs: tuple[str, ...] = ()  # the peer keys a focal_array row is divided by
    jax_lowered: Callable[[], Any] | None = None  # for XLA memory analysis
    extra: dict[str, Any] = field(default_factory=dict)


def missing(key: str, impl: str, reason: str, peer: bool = True) -> Case:
    return Case(key, impl, None, reason, peer)


def _plan(elements: float, quick: bool) -> tuple[int, int]:
    """Fewer calls where one call takes seconds on 2 cores, so the sweep fits its budget."""
    if quick:
        return 1, 2
    if elements >= 10e6:
        return 1, 3
    return 2, 7


def sizes(workload: str, quick: bool = False) -> list[Size]:
    """The sizes of ``workload``: the issue's, or tiny ones for ``--quick``."""
    out = []
    if workload in ("sigmoid_b1", "sigmoid_b8"):
        batch = 1 if workload == "sigmoid_b1" else (2 if quick else 8)
        classes = 8 if quick else CLASSES
        anchors = (500, 2_000) if quick else [a for a in SIGMOID_ANCHORS
                                              if batch == 1 or a <= B8_MAX_ANCHORS]
        for a in anchors:
            shape = (a, classes) if batch == 1 else (batch, a, classes)
            n = float(np.prod(shape))
            key = (str(a) if a < 1000 else f"{a // 1000}k" if a < 10**6
                   else f"{a // 10**6}M")
            out.append(Size(workload, key,
                            " × ".join(f"{d:,}" for d in shape), n, {"shape": shape},
                            _plan(n, quick)))
    elif workload in ("softmax_ce", "softmax_focal"):
        specs = ([("rcnn", (2, 16, 5), -1), ("dense", (500, 5), -1),
                  ("seg", (2, 5, 16, 16), 1)] if quick else
                 [("rcnn", (16, 512, 81), -1), ("dense", (200_000, 81), -1),
                  ("seg", (4, 19, 256, 256), 1)])
        for key, shape, axis in specs:
            n = float(np.prod(shape))
            label = " × ".join(f"{d:,}" for d in shape) + (f", axis={axis}" if axis != -1
                                                           else "")
            out.append(Size(workload, key, label, n, {"shape": shape, "axis": axis},
                            _plan(n, quick)))
    elif workload in MATCH_WORKLOADS:
        batch = 1 if workload == "match_1img" else 8
        images = ((128, 160),) if quick else MATCH_IMAGES
        for hw in images:
            for g in (3, 7) if quick else MATCH_GTS:
                from focal_array.anchors import retinanet_anchors

                a = int(retinanet_anchors(hw).shape[0])
                n = float(batch * a * g)
                lead = f"{batch} × " if batch > 1 else ""
                out.append(Size(workload, f"{hw[0]}x{hw[1]}-g{g}",
                                f"{lead}{hw[0]}×{hw[1]} ({a:,} anchors) × {g} gts", g,
                                {"image": hw, "gts": g, "batch": batch},
                                _plan(n * 2, quick)))
    elif workload == "inspect":
        n = 20 if quick else INSPECT_IMAGES
        out.append(Size(workload, f"{n}img", f"{n:,} images (COCO-like)", n,
                        {"images": n}, (0, 1)))
    else:
        raise ValueError(f"unknown workload {workload!r}")
    return out


# --------------------------------------------------------------------------- inputs


def sigmoid_inputs(shape: tuple[int, ...], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """float32 logits ~ N(0, 3) and float32 0/1 targets with 1% positives (RetinaNet-like)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape, dtype=np.float32)
    x *= 3.0
    y = (rng.random(shape, dtype=np.float32) < POS_FRACTION).astype(np.float32)
    return x, y


def softmax_inputs(shape: tuple[int, ...], axis: int, seed: int = 2):
    """float32 logits ~ N(0, 3) and int64 labels, three quarters of them background (0)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape, dtype=np.float32) * np.float32(3.0)
    lshape = tuple(d for i, d in enumerate(shape) if i != axis % len(shape))
    labels = rng.integers(0, shape[axis], lshape)
    labels[rng.random(lshape) < 0.75] = 0
    return x, labels


def accuracy_inputs(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Logits spread over [−30, 30] (saturated and uncertain anchors), 10% positives."""
    rng = np.random.default_rng(1)
    x = rng.uniform(-30.0, 30.0, shape).astype(np.float32)
    y = (rng.random(shape) < 0.1).astype(np.float32)
    return x, y


def import_or_reason(name: str) -> tuple[Any, str | None]:
    try:
        return __import__(name, fromlist=["_"]), None
    except Exception as exc:  # ImportError, or a torchvision built for another torch
        return None, f"{name} not importable ({type(exc).__name__}: {str(exc)[:80]})"


def inputs_for(size: Size) -> tuple[Any, ...]:
    if size.workload.startswith("sigmoid"):
        return sigmoid_inputs(size.params["shape"])
    if size.workload.startswith("softmax"):
        return softmax_inputs(size.params["shape"], size.params["axis"])
    from benchmarks.matching import match_inputs

    if size.workload in MATCH_WORKLOADS:
        return match_inputs(size.params["image"], size.params["batch"], size.params["gts"])
    return ()


def build_cases(size: Size, backend: str, mode: str, inputs: tuple, *,
                compile_torch: bool = True, out_dir: str | None = None,
                device: str = "cpu") -> list[Case]:
    """``device`` places PyTorch's tensors (JAX uses its default device)."""
    if size.workload.startswith("sigmoid"):
        return sigmoid_cases(backend, mode, *inputs, compile_torch=compile_torch,
                             device=device)
    if size.workload.startswith("softmax"):
        return softmax_cases(size.workload, backend, mode, *inputs, axis=size.params["axis"],
                             device=device)
    from benchmarks import matching

    if size.workload in MATCH_WORKLOADS:
        return matching.match_cases(size.workload, backend, mode, *inputs)
    return matching.inspect_cases(backend, mode, size.params["images"], out_dir)


# --------------------------------------------------------------------------- loss cases


def _torch_run(f: Callable, x: Any, mode: str) -> Callable[[], Any]:
    import torch

    if mode == "fwd":
        def run():
            with torch.no_grad():
                return f(x)
    else:
        def run():
            xg = x.detach().requires_grad_(True)
            loss = f(xg)
            (g,) = torch.autograd.grad(loss, xg)
            return loss.detach(), g
    return run


def _jax_cases(fns: list[tuple[str, str, Callable, bool]], mode: str, x: Any,
               t: Any) -> list[Case]:
    """Each ``f(logits, targets)`` jitted (its value, or ``value_and_grad`` in the logits).

    The targets are an argument, not a closure: jit would fold a closed-over array into
    the program as a constant, and compile for seconds at these sizes."""
    import jax

    cases = []
    for key, name, f, peer in fns:
        jitted = jax.jit(f if mode == "fwd" else jax.value_and_grad(f))
        cases.append(Case(key, name, lambda j=jitted: jax.block_until_ready(j(x, t)),
                          peer=peer, jax_lowered=lambda j=jitted: j.lower(x, t)))
    return cases


def sigmoid_cases(backend: str, mode: str, x: np.ndarray, y: np.ndarray, *,
                  compile_torch: bool = True, device: str = "cpu") -> list[Case]:
    import focal_array as fa
    from benchmarks import peers

    if backend == "numpy":
        if mode != "fwd":
            return []  # NumPy has no autodiff: the naive baseline has no gradient
        return [Case("fa", "focal_array", lambda: fa.sigmoid_focal_loss(
                    x, y, alpha=ALPHA, gamma=GAMMA, reduction="sum"), peer=False),
                Case("naive", "naive NumPy (torchvision's formula)", lambda: np.sum(
                    peers.naive_sigmoid_focal_numpy(x, y, ALPHA, GAMMA)))]
    if backend == "jax":
        import jax.numpy as jnp

        yj = jnp.asarray(y)
        fns = [("fa", "focal_array (jit)", lambda a, b: fa.sigmoid_focal_loss(
            a, b, alpha=ALPHA, gamma=GAMMA, reduction="sum"), False)]
        optax, why = import_or_reason("optax")
        cases = []
        if optax is None:
            cases.append(missing("optax", "optax sigmoid_focal_loss", why))
        else:
            fns.append(("optax", "optax sigmoid_focal_loss (jit)", lambda a, b: jnp.sum(
                optax.losses.sigmoid_focal_loss(a, b, alpha=ALPHA, gamma=GAMMA)), True))
        return cases + _jax_cases(fns, mode, jnp.asarray(x), yj)
    if backend == "torch":
        import torch

        xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
        tv, why = import_or_reason("torchvision.ops")
        if tv is not None:
            tv_name = "torchvision sigmoid_focal_loss"

            def tv_sum(a):
                return tv.sigmoid_focal_loss(a, yt, ALPHA, GAMMA, reduction="sum")
        else:
            tv_name = "torchvision's formula, transcribed (stand-in: torchvision not importable)"

            def tv_sum(a):
                return peers.torchvision_formula(a, yt, ALPHA, GAMMA).sum()

        def fa_sum(a):
            return fa.sigmoid_focal_loss(a, yt, alpha=ALPHA, gamma=GAMMA, reduction="sum")

        cases = [Case("fa", "focal_array eager", _torch_run(fa_sum, xt, mode), peer=False,
                      vs=("tv",)),
                 Case("tv", tv_name + " eager", _torch_run(tv_sum, xt, mode))]
        names = [("fa_compiled", "focal_array compiled", fa_sum, False),
                 ("tv_compiled", tv_name + " compiled", tv_sum, True)]
        for key, name, f, peer in names:
            if not compile_torch:
                cases.append(missing(key, name, "torch.compile skipped (--quick: compile "
                                                "time)", peer))
                continue
            # dynamic=False: one graph per shape, as a fixed-size training step compiles
            cf = torch.compile(f, dynamic=False)
            cases.append(Case(key, name, _torch_run(cf, xt, mode), peer=peer,
                              vs=() if peer else ("tv_compiled",)))
        return cases
    raise ValueError(backend)


def softmax_cases(workload: str, backend: str, mode: str, x: np.ndarray, labels: np.ndarray,
                  *, axis: int, device: str = "cpu") -> list[Case]:
    import focal_array as fa
    from benchmarks import peers

    focal = workload == "softmax_focal"

    def fa_loss(a, lb):
        if focal:
            return fa.softmax_focal_loss(a, lb, gamma=GAMMA, axis=axis, reduction="sum")
        return fa.softmax_cross_entropy(a, lb, axis=axis, reduction="sum")

    if backend == "numpy":
        if mode != "fwd":
            return []
        if focal:
            name, peer_fn = "naive NumPy log-softmax focal", lambda: np.sum(
                peers.naive_softmax_focal_numpy(x, labels, GAMMA, axis))
        else:
            name, peer_fn = "naive NumPy log-softmax CE", lambda: np.sum(
                peers.naive_softmax_ce_numpy(x, labels, axis))
        return [Case("fa", "focal_array", lambda: fa_loss(x, labels), peer=False),
                Case("naive", name, peer_fn)]
    if backend == "jax":
        import jax.numpy as jnp

        lj = jnp.asarray(labels)
        fns = [("fa", "focal_array (jit)", fa_loss, False)]
        cases = []
        if focal:
            fns.append(("logsoftmax_focal", "jnp log_softmax focal (jit)", lambda a, b: jnp.sum(
                peers.log_softmax_focal_jnp(a, b, GAMMA, axis)), True))
        else:
            optax, why = import_or_reason("optax")
            if optax is None:
                cases.append(missing("optax", "optax softmax_cross_entropy_with_integer_labels",
                                     why))
            else:
                ce = optax.losses.softmax_cross_entropy_with_integer_labels
                if "axis" in inspect.signature(ce).parameters:
                    def optax_ce(a, b):
                        return jnp.sum(ce(a, b, axis=axis))
                else:  # older optax: class axis last only
                    def optax_ce(a, b):
                        return jnp.sum(ce(jnp.moveaxis(a, axis, -1), b))
                fns.append(("optax", "optax softmax_cross_entropy_with_integer_labels (jit)",
                            optax_ce, True))
        return cases + _jax_cases(fns, mode, jnp.asarray(x), lj)
    if backend == "torch":
        import torch
        import torch.nn.functional as F

        xt, lt = torch.from_numpy(x).to(device), torch.from_numpy(labels).to(device)
        cases = [Case("fa", "focal_array eager", _torch_run(lambda a: fa_loss(a, lt), xt, mode),
                      peer=False)]
        if focal:
            cases.append(Case("logsoftmax_focal", "F.log_softmax focal eager", _torch_run(
                lambda a: peers.log_softmax_focal_torch(a, lt, GAMMA, axis).sum(), xt, mode)))
        else:
            if axis == -1:  # F.cross_entropy wants (N, C): flatten the leading dims
                def ce(a):
                    return F.cross_entropy(a.reshape(-1, a.shape[-1]), lt.reshape(-1),
                                           reduction="sum")
            else:  # (N, C, H, W) with class axis 1 is F.cross_entropy's own layout
                def ce(a):
                    return F.cross_entropy(a, lt, reduction="sum")
            cases.append(Case("F.cross_entropy", "F.cross_entropy eager",
                              _torch_run(ce, xt, mode)))
        return cases
    raise ValueError(backend)
