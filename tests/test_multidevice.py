"""dense_detection_loss across devices: a sharded JAX batch, shard_map, torch.distributed.

Each case runs in a fresh subprocess (this file, run as a script): XLA reads
``--xla_force_host_platform_device_count`` only before JAX initializes, and
``torch.distributed`` wants processes of its own. The workers write what they computed to
JSON; the assertions are made here, against the same loss computed on the whole batch in
one process (float64, so agreement is to rounding, and a normalizer that is only local
would be off by a factor of 2 to 4 and fail).
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # when run as a worker script
    sys.path.insert(0, str(ROOT))

from focal_array.anchors import retinanet_anchors  # noqa: E402
from focal_array.detection import dense_detection_loss  # noqa: E402
from focal_array.normalization import ema_normalizer, init_ema_normalizer  # noqa: E402

B, G, C, F = 8, 3, 3, 5  # images, padded gts, classes, features of the toy head
NORMALIZE = ("positives", "assigned", "image")
EMA_STEPS = 3


def make_batch(seed: int = 0) -> dict[str, np.ndarray]:
    """A float64 batch whose positives are spread unevenly over any split of the images.

    Image 1 has no object and image 6 a single one, so the shards of 2 or 4 replicas hold
    different positive counts: a per-shard normalizer gives a different loss.
    """
    rng = np.random.default_rng(seed)
    anchors = np.asarray(retinanet_anchors((64, 64), strides=(8, 16), sizes=(16, 32),
                                           scales=(1.0,), aspect_ratios=(0.5, 1.0, 2.0)),
                         dtype=np.float64)
    a = anchors.shape[0]
    gt = np.zeros((B, G, 4))
    labels = np.zeros((B, G), dtype=np.int64)
    valid = np.zeros((B, G), dtype=bool)
    for i in range(B):
        n = 0 if i == 1 else 1 if i == 6 else G
        for j in range(n):
            x0, y0 = rng.uniform(0, 40, size=2)
            w, h = rng.uniform(10, 24, size=2)
            gt[i, j] = [x0, y0, x0 + w, y0 + h]
            labels[i, j] = rng.integers(0, C)
            valid[i, j] = True
    return {
        "features": rng.normal(size=(B, a, F)),
        "weight": rng.normal(scale=0.5, size=(F, C)),
        "bias": np.full((C,), -np.log(99.0)),  # π = 0.01 prior
        "deltas": rng.normal(scale=0.3, size=(B, a, 4)),
        "anchors": anchors,
        "gt": gt,
        "labels": labels,
        "valid": valid,
    }


# --------------------------------------------------------------------------- workers


def _jax_worker(out_path: str) -> None:
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    assert jax.device_count() == 4, jax.devices()
    d = {k: jnp.asarray(v) for k, v in make_batch().items()}
    # Mesh() gives Auto axes (XLA propagates the sharding); jax.make_mesh is tried below
    mesh = Mesh(np.asarray(jax.devices()), ("data",))
    shard, repl = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
    results: dict[str, object] = {}

    def losses(w, bias, feats, deltas, anchors, gt, labels, valid, normalize, **kw):
        logits = feats @ w + bias
        out = dense_detection_loss(logits, deltas, anchors, gt, labels, gt_valid=valid,
                                   normalize=normalize, **kw)
        return out["total"], out

    # 0. the reference: the whole batch on one device
    one = jax.devices()[0]
    for normalize in NORMALIZE:
        def whole(w, bias, normalize=normalize):
            return losses(w, bias, *(jax.device_put(d[k], one) for k in (
                "features", "deltas", "anchors", "gt", "labels", "valid")), normalize)

        (tot, out), (gw, gb) = jax.jit(jax.value_and_grad(whole, argnums=(0, 1),
                                                          has_aux=True))(
            jax.device_put(d["weight"], one), jax.device_put(d["bias"], one))
        results[f"single/{normalize}"] = {
            "total": float(tot), "num_positives": float(out["num_positives"]),
            "grad_w": np.asarray(gw).tolist(), "grad_b": np.asarray(gb).tolist(),
            "devices": len(tot.sharding.device_set)}

    # 1. plain jit, batch sharded over the mesh: XLA sums over the global batch. Both the
    # Auto-axes Mesh and jax.make_mesh (Explicit axes by default in recent JAX)
    meshes = [("mesh", shard, repl)]
    if hasattr(jax, "make_mesh"):
        explicit = jax.make_mesh((4,), ("data",))
        meshes.append(("make_mesh", NamedSharding(explicit, P("data")),
                       NamedSharding(explicit, P())))
    for (tag, shard_m, repl_m), normalize in itertools.product(meshes, NORMALIZE):
        def total(w, bias, feats, deltas, anchors, gt, labels, valid, normalize=normalize):
            return losses(w, bias, feats, deltas, anchors, gt, labels, valid, normalize)

        step = jax.jit(jax.value_and_grad(total, argnums=(0, 1), has_aux=True))
        args = [jax.device_put(d["weight"], repl_m), jax.device_put(d["bias"], repl_m)]
        args += [jax.device_put(d[k], shard_m) for k in ("features", "deltas")]
        args += [jax.device_put(d["anchors"], repl_m)]
        args += [jax.device_put(d[k], shard_m) for k in ("gt", "labels", "valid")]
        assert len(args[2].sharding.device_set) == 4
        (tot, out), (gw, gb) = step(*args)
        results[f"{tag}/{normalize}"] = {
            "total": float(tot), "num_positives": float(out["num_positives"]),
            "grad_w": np.asarray(gw).tolist(), "grad_b": np.asarray(gb).tolist(),
            "input_devices": len(args[2].sharding.device_set)}

    # 2. shard_map: each device sees B/4 images; the counts are psum-ed by the option
    specs = (P(), P(), P("data"), P("data"), P(), P("data"), P("data"), P("data"))
    for normalize in NORMALIZE:
        def per_shard(w, bias, feats, deltas, anchors, gt, labels, valid, normalize=normalize):
            def local(w, bias):
                return losses(w, bias, feats, deltas, anchors, gt, labels, valid, normalize,
                              axis_name="data")

            (tot, out), grads = jax.value_and_grad(local, argnums=(0, 1), has_aux=True)(w, bias)
            # each shard's loss is its part of the global one: sum them. The gradient of
            # the replicated w, bias needs no psum: shard_map (check_vma) transposes their
            # implicit broadcast to every shard into a psum, so it comes back summed already
            return (jax.lax.psum(tot, "data"), out["num_positives"],
                    jax.lax.psum(out["num_positives"] * 0 + 1, "data"), grads)

        fn = jax.jit(jax.shard_map(per_shard, mesh=mesh, in_specs=specs,
                                   out_specs=(P(), P(), P(), (P(), P()))))
        tot, npos, replicas, (gw, gb) = fn(d["weight"], d["bias"], d["features"], d["deltas"],
                                           d["anchors"], d["gt"], d["labels"], d["valid"])
        results[f"shard_map/{normalize}"] = {
            "total": float(tot), "num_positives": float(npos), "replicas": float(replicas),
            "grad_w": np.asarray(gw).tolist(), "grad_b": np.asarray(gb).tolist()}

    # 3. an EMA normalizer carried through a jitted shard_map train step (state in, out)
    def ema_step(state, w, bias, feats, deltas, anchors, gt, labels, valid):
        def local(w):
            _, out = losses(w, bias, feats, deltas, anchors, gt, labels, valid, 1.0,
                            count_reducer=lambda n: jax.lax.psum(n, "data"))
            return out["total"], out["num_positives"]

        (raw, npos), gw = jax.value_and_grad(local, has_aux=True)(w)
        new_state = ema_normalizer(state, npos)
        # normalize=1.0 gave plain sums, so dividing by the EMA is the normalized loss
        return new_state, jax.lax.psum(raw, "data") / new_state, gw / new_state  # gw: summed

    train = jax.jit(jax.shard_map(ema_step, mesh=mesh, in_specs=(P(), *specs),
                                  out_specs=(P(), P(), P())))
    state, w = init_ema_normalizer(100.0, xp=jnp, dtype=jnp.float64), d["weight"]
    trace = []
    for _ in range(EMA_STEPS):
        state, loss, gw = train(state, w, d["bias"], d["features"], d["deltas"], d["anchors"],
                                d["gt"], d["labels"], d["valid"])
        w = w - 0.5 * gw
        trace.append({"state": float(state), "loss": float(loss),
                      "grad_w": np.asarray(gw).tolist()})
    results["ema"] = trace
    Path(out_path).write_text(json.dumps(results))


def _torch_worker(out_path: str) -> None:
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")  # env:// — RANK, WORLD_SIZE, MASTER_ADDR/PORT
    rank, world = dist.get_rank(), dist.get_world_size()
    d = make_batch()
    part = slice(rank * B // world, (rank + 1) * B // world)  # this process's half

    def all_reduce_sum(n: torch.Tensor) -> torch.Tensor:
        # all_reduce works in place and has no autograd rule: reduce a detached copy
        n = n.detach().clone()
        dist.all_reduce(n)
        return n

    results: dict[str, object] = {}
    for normalize in NORMALIZE:
        for mode, reducer in (("sum", all_reduce_sum),
                              ("mean", lambda n: all_reduce_sum(n) / world)):
            w = torch.tensor(d["weight"], requires_grad=True)
            bias = torch.tensor(d["bias"], requires_grad=True)
            logits = torch.tensor(d["features"][part]) @ w + bias
            out = dense_detection_loss(
                logits, torch.tensor(d["deltas"][part]), torch.tensor(d["anchors"]),
                torch.tensor(d["gt"][part]), torch.tensor(d["labels"][part]),
                gt_valid=torch.tensor(d["valid"][part]), normalize=normalize,
                count_reducer=reducer)
            out["total"].backward()
            grads = torch.cat([w.grad.reshape(-1), bias.grad])
            total = out["total"].detach().clone()
            dist.all_reduce(grads)
            dist.all_reduce(total)
            if mode == "mean":  # what DistributedDataParallel does with the summed grads
                grads, total = grads / world, total / world
            results[f"{normalize}/{mode}"] = {
                "total": total.item(), "num_positives": out["num_positives"].item(),
                "grad": grads.tolist()}
    if rank == 0:
        Path(out_path).write_text(json.dumps(results))
    dist.destroy_process_group()


# --------------------------------------------------------------------------- helpers


def _run_worker(kind: str, out: Path, *, env: dict[str, str] | None = None,
                timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, __file__, kind, str(out)], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _expected_torch(normalize: str) -> tuple[float, float, np.ndarray]:
    """Loss, positives and parameter gradient on the whole batch in this one process."""
    import torch

    d = make_batch()
    w = torch.tensor(d["weight"], requires_grad=True)
    bias = torch.tensor(d["bias"], requires_grad=True)
    out = dense_detection_loss(torch.tensor(d["features"]) @ w + bias,
                               torch.tensor(d["deltas"]), torch.tensor(d["anchors"]),
                               torch.tensor(d["gt"]), torch.tensor(d["labels"]),
                               gt_valid=torch.tensor(d["valid"]), normalize=normalize)
    out["total"].backward()
    grad = torch.cat([w.grad.reshape(-1), bias.grad]).numpy()
    return out["total"].item(), out["num_positives"].item(), grad


def _check_split_matters(normalize: str, world: int) -> None:
    """The batch really does make a local normalizer wrong (else the tests prove little)."""
    d = make_batch()
    logits = d["features"] @ d["weight"] + d["bias"]

    def total(sl):
        return float(dense_detection_loss(logits[sl], d["deltas"][sl], d["anchors"],
                                          d["gt"][sl], d["labels"][sl],
                                          gt_valid=d["valid"][sl],
                                          normalize=normalize)["total"])

    whole = total(slice(None))
    parts = [total(slice(r * B // world, (r + 1) * B // world)) for r in range(world)]
    assert abs(sum(parts) / world - whole) > 1e-3 * whole or normalize == "image"


# --------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def jax_results(tmp_path_factory):
    from tests.helpers import require

    require("jax")
    out = tmp_path_factory.mktemp("jax") / "results.json"
    flags = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4")
    proc = _run_worker("jax", out, env={"XLA_FLAGS": flags.strip(), "JAX_PLATFORMS": "cpu"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def torch_results(tmp_path_factory):
    from tests.helpers import require

    torch = require("torch")
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        if os.environ.get("CI"):
            pytest.fail("torch.distributed with gloo must be available in CI")
        pytest.skip("torch.distributed/gloo not available")
    out = tmp_path_factory.mktemp("torch") / "results.json"
    port = str(_free_port())
    procs = []
    for rank in range(2):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "RANK": str(rank), "WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, __file__, "torch", str(out)], cwd=ROOT,
                                      env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    errors = []
    for p in procs:
        try:
            _, err = p.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
        if p.returncode != 0:
            errors.append(err[-3000:])
    assert not errors, "\n".join(errors)
    return json.loads(out.read_text())


@pytest.mark.parametrize("normalize", NORMALIZE)
@pytest.mark.parametrize("how", ["mesh", "make_mesh", "shard_map"])
def test_jax_multi_device_equals_single_device(jax_results, normalize, how):
    _check_split_matters(normalize, 4)
    want = jax_results[f"single/{normalize}"]
    got = jax_results[f"{how}/{normalize}"]
    if how in ("mesh", "make_mesh"):
        assert got["input_devices"] == 4
    else:
        assert got["replicas"] == 4
    assert want["devices"] == 1
    np.testing.assert_allclose(want["total"], _numpy_total(normalize), rtol=1e-12)
    np.testing.assert_allclose(got["total"], want["total"], rtol=1e-10)
    assert got["num_positives"] == want["num_positives"] == _numpy_positives()
    np.testing.assert_allclose(got["grad_w"], want["grad_w"], rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(got["grad_b"], want["grad_b"], rtol=1e-9, atol=1e-13)


def test_jax_ema_normalizer_in_sharded_train_step(jax_results):
    """The EMA state threads through a jitted shard_map step; compare with a NumPy loop."""
    d = make_batch()
    w, state = d["weight"].copy(), 100.0
    for got in jax_results["ema"]:
        logits = d["features"] @ w + d["bias"]
        out = dense_detection_loss(logits, d["deltas"], d["anchors"], d["gt"], d["labels"],
                                   gt_valid=d["valid"], normalize=1.0)
        state = 0.9 * state + 0.1 * max(float(out["num_positives"]), 1.0)
        np.testing.assert_allclose(got["state"], state, rtol=1e-12)
        np.testing.assert_allclose(got["loss"], float(out["total"]) / state, rtol=1e-10)
        w = w - 0.5 * np.asarray(got["grad_w"])
    # the weights moved, so the later steps checked a different loss than the first
    assert len({round(g["loss"], 12) for g in jax_results["ema"]}) == EMA_STEPS


def _numpy_total(normalize: str) -> float:
    d = make_batch()
    logits = d["features"] @ d["weight"] + d["bias"]
    return float(dense_detection_loss(logits, d["deltas"], d["anchors"], d["gt"], d["labels"],
                                      gt_valid=d["valid"], normalize=normalize)["total"])


def _numpy_positives() -> float:
    d = make_batch()
    logits = d["features"] @ d["weight"] + d["bias"]
    return float(dense_detection_loss(logits, d["deltas"], d["anchors"], d["gt"], d["labels"],
                                      gt_valid=d["valid"])["num_positives"])


@pytest.mark.parametrize("normalize", NORMALIZE)
@pytest.mark.parametrize("mode", ["sum", "mean"])
def test_torch_distributed_gradient_equals_single_process(torch_results, normalize, mode):
    _check_split_matters(normalize, 2)
    total, npos, grad = _expected_torch(normalize)
    np.testing.assert_allclose(total, _numpy_total(normalize), rtol=1e-12)
    got = torch_results[f"{normalize}/{mode}"]
    np.testing.assert_allclose(got["total"], total, rtol=1e-10)
    assert got["num_positives"] == (npos if mode == "sum" else npos / 2)
    np.testing.assert_allclose(got["grad"], grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("normalize", NORMALIZE)
def test_count_reducer_simulated_replicas(xp, normalize):
    """Two simulated replicas on one backend: record each one's local counts, then give
    each the elementwise sum; the two losses add up to the whole-batch loss."""
    from tests.helpers import asarray, assert_close

    _check_split_matters(normalize, 2)
    d = make_batch()
    logits = d["features"] @ d["weight"] + d["bias"]
    halves = [slice(0, B // 2), slice(B // 2, B)]

    def call(sl, reducer):
        return dense_detection_loss(
            asarray(xp, logits[sl], "float64"), asarray(xp, d["deltas"][sl], "float64"),
            asarray(xp, d["anchors"], "float64"), asarray(xp, d["gt"][sl], "float64"),
            asarray(xp, d["labels"][sl]), gt_valid=asarray(xp, d["valid"][sl]),
            normalize=normalize, count_reducer=reducer)

    recorded: list[list[float]] = []
    for sl in halves:
        seen: list[float] = []
        call(sl, lambda n, seen=seen: (seen.append(float(n)), n)[1])
        recorded.append(seen)
    assert len(recorded[0]) == {"positives": 1, "assigned": 2, "image": 2}[normalize]
    sums = [a + b for a, b in zip(*recorded, strict=True)]
    parts = []
    for sl in halves:
        queue = list(sums)
        parts.append(call(sl, lambda n, q=queue: xp.asarray(q.pop(0), dtype=n.dtype)))
    whole = dense_detection_loss(logits, d["deltas"], d["anchors"], d["gt"], d["labels"],
                                 gt_valid=d["valid"], normalize=normalize)
    assert_close(parts[0]["total"] + parts[1]["total"], float(whole["total"]), xp,
                 dtype="float64", rtol=1e-12)
    assert_close(parts[0]["num_positives"], float(whole["num_positives"]), xp,
                 dtype="float64")


def test_count_reducer_options():
    d = make_batch()
    args = (d["features"][..., :C], d["deltas"], d["anchors"], d["gt"], d["labels"])
    with pytest.raises(ValueError, match="not both"):
        dense_detection_loss(*args, count_reducer=lambda n: n, axis_name="data")
    with pytest.raises(ValueError, match="axis_name is for JAX"):
        dense_detection_loss(*args, axis_name="data")
    with pytest.raises(TypeError, match="count_reducer must be callable"):
        dense_detection_loss(*args, count_reducer=2.0)
    # a number normalizer is the caller's (already global) value: only the count is reduced
    out = dense_detection_loss(*args, normalize=7.0, count_reducer=lambda n: 3 * n)
    ref = dense_detection_loss(*args, normalize=7.0)
    np.testing.assert_allclose(out["total"], ref["total"], rtol=1e-14)
    np.testing.assert_allclose(out["num_positives"], 3 * ref["num_positives"], rtol=1e-14)


if __name__ == "__main__":
    {"jax": _jax_worker, "torch": _torch_worker}[sys.argv[1]](sys.argv[2])
