"""The same integer matches on every backend and route, on realistic float boxes.

COCO-like boxes (float coordinates with two decimals, not on any pixel grid; crowd regions;
images without boxes; padding) against RetinaNet anchors. The reference is an independent
float32 transcription of torchvision's IoU (``w·h``, ``area_a + area_g − inter``,
``inter / union``, each operation rounded once) and of the matching rule, vectorized NumPy.
Every route must return exactly its integers: NumPy, array_api_strict, JAX (eager on one
image, ``jit`` at every batch size 1–16, ``vmap``, a batch sharded over a 4-device mesh,
``shard_map``) and PyTorch (eager, ``torch.compile``). Before the products of the IoU were
pinned (``_matching._pinned``), XLA:CPU contracted them into fused multiply-adds for some
batch shapes, and JAX found other low-quality ties than NumPy.

The sharded cases run in a fresh subprocess (this file as a script): XLA reads
``--xla_force_host_platform_device_count`` only before JAX initializes.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # when run as a worker script
    sys.path.insert(0, str(ROOT))

from benchmarks.coco_like import generate  # noqa: E402
from focal_array.anchors import retinanet_anchors  # noqa: E402
from focal_array.detection import dense_detection_loss  # noqa: E402
from focal_array.matcher import BACKGROUND, IGNORE, match_anchors  # noqa: E402

IMAGE = (240, 320)  # COCO's 480 × 640 landscape images at half size
BATCH = 16
CLASSES = 8
RULES = ("equal", "rounding")


def make_batch(seed: int = 5) -> dict[str, np.ndarray]:
    """16 COCO-like landscape images at half size, padded to the most boxes of one image."""
    doc = generate(3 * BATCH, seed=seed)
    images = [im for im in doc["images"] if im["width"] == 640][:BATCH]
    boxes: dict[int, list[tuple[list[float], int, int]]] = {im["id"]: [] for im in images}
    for ann in doc["annotations"]:
        if ann["image_id"] in boxes:
            boxes[ann["image_id"]].append((ann["bbox"], ann["category_id"], ann["iscrowd"]))
    g = max(len(v) for v in boxes.values())
    gt = np.zeros((BATCH, g, 4), np.float32)
    labels = np.zeros((BATCH, g), np.int32)
    valid = np.zeros((BATCH, g), bool)
    crowd = np.zeros((BATCH, g), bool)
    for i, im in enumerate(images):
        for j, ((x, y, w, h), cat, iscrowd) in enumerate(boxes[im["id"]]):
            gt[i, j] = np.asarray([x, y, x + w, y + h], np.float64) / 2
            labels[i, j] = cat % CLASSES
            valid[i, j] = True
            crowd[i, j] = bool(iscrowd)
    valid[7] = False  # an image without boxes (1 % of COCO's)
    gt[~valid] = np.nan  # padding may hold anything
    anchors = np.asarray(retinanet_anchors(IMAGE), np.float32)
    rng = np.random.default_rng(seed)
    return {"anchors": anchors, "gt": gt, "labels": labels, "valid": valid, "crowd": crowd,
            "logits": rng.normal(size=(BATCH, len(anchors), CLASSES)).astype(np.float32) - 3,
            "deltas": rng.normal(scale=0.3, size=(BATCH, len(anchors), 4)).astype(np.float32)}


def reference_matches(anchors: np.ndarray, gt: np.ndarray, valid: np.ndarray,
                      crowd: np.ndarray, rule: str, high: float = 0.5, low: float = 0.4,
                      crowd_ioa: float = 0.5) -> np.ndarray:
    """float32 torchvision-order IoU and the matching rule, one image at a time."""
    f32 = np.float32
    out = np.empty((len(gt), len(anchors)), np.int64)
    with np.errstate(invalid="ignore"):
        for i in range(len(gt)):
            g = np.where(valid[i][:, None], gt[i], f32(0))
            w = np.maximum(np.minimum(anchors[:, None, 2], g[None, :, 2])
                           - np.maximum(anchors[:, None, 0], g[None, :, 0]), f32(0))
            h = np.maximum(np.minimum(anchors[:, None, 3], g[None, :, 3])
                           - np.maximum(anchors[:, None, 1], g[None, :, 1]), f32(0))
            inter = w * h
            area_a = (anchors[:, 2] - anchors[:, 0]) * (anchors[:, 3] - anchors[:, 1])
            area_g = (g[:, 2] - g[:, 0]) * (g[:, 3] - g[:, 1])
            iou = inter / (area_a[:, None] + area_g[None, :] - inter)
            usable = valid[i] & ~crowd[i]
            q = np.where(usable[None, :], iou, -np.inf)
            m = np.full(len(anchors), BACKGROUND)
            if usable.any():
                best, arg = q.max(axis=1), q.argmax(axis=1)
                m = np.where(best >= high, arg, np.where(best >= low, IGNORE, BACKGROUND))
                gbest = q.max(axis=0)
                bound = gbest if rule == "equal" else gbest * f32(1 - 40 * 2.0**-24)
                claim = (q >= bound[None, :]) & (q > 0) & (gbest[None, :] > 0)
                m = np.where(claim.any(axis=1), arg, m)
            ioa = inter / area_a[:, None]
            in_crowd = ((ioa >= crowd_ioa) & (inter > 0) & (valid[i] & crowd[i])[None, :])
            out[i] = np.where((m < 0) & in_crowd.any(axis=1), IGNORE, m)
    return out


@pytest.fixture(scope="module")
def batch():
    return make_batch()


@pytest.fixture(scope="module")
def expected(batch):
    return {rule: reference_matches(batch["anchors"], batch["gt"], batch["valid"],
                                    batch["crowd"], rule) for rule in RULES}


def _match(xp, batch, rule, gt=None, valid=None, crowd=None):
    return match_anchors(xp.asarray(batch["anchors"]),
                         xp.asarray(batch["gt"] if gt is None else gt),
                         gt_valid=xp.asarray(batch["valid"] if valid is None else valid),
                         gt_crowd=xp.asarray(batch["crowd"] if crowd is None else crowd),
                         tie_rule=rule)


def test_batch_is_realistic(batch, expected):
    # float coordinates off any grid, crowds, an empty image, low-quality claims, and ties
    real = batch["gt"][batch["valid"]]
    assert (np.abs(real * 4 - np.round(real * 4)) > 1e-3).mean() > 0.9
    assert batch["crowd"].any() and (~batch["valid"]).all(axis=1).any()
    eq, rd = expected["equal"], expected["rounding"]
    assert (eq >= 0).sum() > 500 and (eq == IGNORE).sum() > 500
    assert (rd >= 0).sum() > (eq >= 0).sum()  # the wider rule claims near-ties too


@pytest.mark.parametrize("rule", RULES)
def test_every_backend_gives_the_reference(xp, batch, expected, rule):
    from helpers import to_numpy

    got = to_numpy(_match(xp, batch, rule))
    np.testing.assert_array_equal(got, expected[rule])
    for i in (0, 3, BATCH - 1):  # one image alone, unbatched (JAX's failing route)
        one = to_numpy(_match(xp, batch, rule, batch["gt"][i], batch["valid"][i],
                              batch["crowd"][i]))
        np.testing.assert_array_equal(one, expected[rule][i])


@pytest.mark.parametrize("rule", RULES)
def test_jax_jit_at_every_batch_size_and_vmap(batch, expected, rule):
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    anchors = jnp.asarray(batch["anchors"])

    @jax.jit
    def step(gt, valid, crowd):
        return match_anchors(anchors, gt, gt_valid=valid, gt_crowd=crowd, tie_rule=rule)

    # every batch size for the default rule; a few for the other (each size compiles anew)
    sizes = range(1, BATCH + 1) if rule == "equal" else (1, 3, BATCH)
    for b in sizes:
        for start in sorted({0, BATCH - b}):
            rows = slice(start, start + b)
            got = step(*(jnp.asarray(batch[k][rows]) for k in ("gt", "valid", "crowd")))
            np.testing.assert_array_equal(np.asarray(got), expected[rule][rows],
                                          err_msg=f"batch of {b} from {start}")
    per_image = jax.jit(jax.vmap(lambda g, v, c: match_anchors(
        anchors, g, gt_valid=v, gt_crowd=c, tie_rule=rule)))
    got = per_image(*(jnp.asarray(batch[k]) for k in ("gt", "valid", "crowd")))
    np.testing.assert_array_equal(np.asarray(got), expected[rule])


@pytest.mark.parametrize("rule", ["equal"])  # each compile takes ~10 s: the default rule
def test_torch_compile_gives_the_reference(batch, expected, rule):
    torch = pytest.importorskip("torch")
    torch._dynamo.reset()

    def step(anchors, gt, valid, crowd):
        return match_anchors(anchors, gt, gt_valid=valid, gt_crowd=crowd, tie_rule=rule)

    compiled = torch.compile(step, fullgraph=True)
    t = {k: torch.as_tensor(batch[k]) for k in ("anchors", "gt", "valid", "crowd")}
    got = compiled(t["anchors"], t["gt"], t["valid"], t["crowd"])
    np.testing.assert_array_equal(got.numpy(), expected[rule])
    one = compiled(t["anchors"], t["gt"][5], t["valid"][5], t["crowd"][5])
    np.testing.assert_array_equal(one.numpy(), expected[rule][5])


# --------------------------------------------------------------------------- losses


def _loss_numpy(batch, rule):
    out = dense_detection_loss(batch["logits"], batch["deltas"], batch["anchors"],
                               batch["gt"], batch["labels"], gt_valid=batch["valid"],
                               gt_crowd=batch["crowd"], tie_rule=rule)
    return {k: float(v) for k, v in out.items()}


@pytest.mark.parametrize("rule", RULES)
def test_detection_loss_and_gradients_agree_across_routes(batch, expected, rule):
    jax = pytest.importorskip("jax")
    torch = pytest.importorskip("torch")
    jnp = jax.numpy
    ref = _loss_numpy(batch, rule)
    assert ref["num_positives"] == (expected[rule] >= 0).sum()

    def jax_total(logits, deltas, gt, labels, valid, crowd):
        out = dense_detection_loss(logits, deltas, jnp.asarray(batch["anchors"]), gt, labels,
                                   gt_valid=valid, gt_crowd=crowd, tie_rule=rule)
        return out["total"], out

    args = [jnp.asarray(batch[k]) for k in ("logits", "deltas", "gt", "labels", "valid",
                                             "crowd")]
    grads = {}
    eager = jax.value_and_grad(jax_total, argnums=(0, 1), has_aux=True)
    jitted = jax.jit(eager)
    for name, fn in (("jax eager", eager), ("jax jit", jitted)):
        (total, out), g = fn(*args)
        assert float(out["num_positives"]) == ref["num_positives"], name
        np.testing.assert_allclose(float(total), ref["total"], rtol=1e-6, err_msg=name)
        grads[name] = [np.asarray(x) for x in g]

    def torch_total(logits, deltas, gt, labels, valid, crowd):
        out = dense_detection_loss(logits, deltas, torch.as_tensor(batch["anchors"]), gt,
                                   labels, gt_valid=valid, gt_crowd=crowd, tie_rule=rule)
        return out["total"], out["num_positives"]

    routes = [("torch eager", torch_total)]
    if rule == "equal":  # compiling the whole loss takes ~20 s: the default rule only
        torch._dynamo.reset()
        routes.append(("torch compile", torch.compile(torch_total, fullgraph=True)))
    for name, fn in routes:
        logits = torch.tensor(batch["logits"], requires_grad=True)
        deltas = torch.tensor(batch["deltas"], requires_grad=True)
        total, npos = fn(logits, deltas, *(torch.as_tensor(batch[k]) for k in (
            "gt", "labels", "valid", "crowd")))
        total.backward()
        assert float(npos) == ref["num_positives"], name
        np.testing.assert_allclose(float(total.detach()), ref["total"], rtol=1e-6,
                                   err_msg=name)
        grads[name] = [logits.grad.numpy(), deltas.grad.numpy()]
    base = grads["jax eager"]
    for name, g in grads.items():
        for got, want in zip(g, base, strict=True):
            # elementwise gradients of one normalized sum: equal up to a few ulps
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * np.abs(want).max(),
                                       err_msg=name)


# --------------------------------------------------------------------------- sharded


def _sharded_worker(out_path: str) -> None:
    import jax
    import jax.numpy as jnp
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    try:
        from jax import shard_map
    except ImportError:  # older JAX
        from jax.experimental.shard_map import shard_map

    assert jax.device_count() == 4, jax.devices()
    batch = make_batch()
    mesh = Mesh(np.asarray(jax.devices()), ("data",))
    shard, repl = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
    anchors = jax.device_put(jnp.asarray(batch["anchors"]), repl)
    keys = ("gt", "valid", "crowd")
    results: dict[str, object] = {}
    for rule in RULES:
        def step(gt, valid, crowd, rule=rule, anchors=anchors):
            return match_anchors(anchors, gt, gt_valid=valid, gt_crowd=crowd, tie_rule=rule)

        args = [jax.device_put(jnp.asarray(batch[k]), shard) for k in keys]
        results[f"named/{rule}"] = np.asarray(jax.jit(step)(*args)).tolist()
        # inside shard_map the anchors are a plain constant (a mesh-sharded one may not be
        # indexed in a manual-axes context)
        local = functools.partial(step, anchors=jnp.asarray(batch["anchors"]))
        mapped = shard_map(local, mesh=mesh, in_specs=(P("data"),) * 3, out_specs=P("data"))
        results[f"shard_map/{rule}"] = np.asarray(jax.jit(mapped)(*args)).tolist()

        def total(logits, deltas, gt, labels, valid, crowd, rule=rule):
            out = dense_detection_loss(logits, deltas, anchors, gt, labels, gt_valid=valid,
                                       gt_crowd=crowd, tie_rule=rule)
            return out["total"], out["num_positives"]

        args = [jax.device_put(jnp.asarray(batch[k]), shard)
                for k in ("logits", "deltas", "gt", "labels", "valid", "crowd")]
        (tot, npos), (g_logits, _) = jax.jit(jax.value_and_grad(
            total, argnums=(0, 1), has_aux=True))(*args)
        one = jax.devices()[0]
        (tot1, npos1), (g1, _) = jax.jit(jax.value_and_grad(
            total, argnums=(0, 1), has_aux=True))(*(jax.device_put(a, one) for a in args))
        results[f"loss/{rule}"] = {
            "total": float(tot), "positives": float(npos), "total_1": float(tot1),
            "positives_1": float(npos1), "devices": len(g_logits.sharding.device_set),
            "grad_max_rel": float(np.max(np.abs(np.asarray(g_logits) - np.asarray(g1)))
                                  / np.max(np.abs(np.asarray(g1))))}
    Path(out_path).write_text(json.dumps(results))


@pytest.mark.slow
def test_sharded_batch_and_shard_map_give_the_reference(tmp_path, expected):
    pytest.importorskip("jax")
    out = tmp_path / "sharded.json"
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, __file__, "sharded", str(out)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    for rule in RULES:
        for route in ("named", "shard_map"):
            np.testing.assert_array_equal(np.asarray(results[f"{route}/{rule}"]),
                                          expected[rule], err_msg=f"{route} {rule}")
        loss = results[f"loss/{rule}"]
        assert loss["devices"] == 4
        assert loss["positives"] == loss["positives_1"] == (expected[rule] >= 0).sum()
        np.testing.assert_allclose(loss["total"], loss["total_1"], rtol=1e-6)
        assert loss["grad_max_rel"] <= 1e-6


if __name__ == "__main__":
    if sys.argv[1] == "sharded":
        _sharded_worker(sys.argv[2])


# --------------------------------------------------------------------------- hostile boxes


def test_huge_boxes_match_as_their_scaled_copies(xp):
    from helpers import to_numpy

    # areas of boxes near 1e30 overflow float32 (1e60); IoU is scale-invariant and the
    # matcher scales by an exact power of two, so these match as the same boxes / 2**100
    base = np.asarray([[0, 0, 10, 10], [5, 0, 15, 10], [0, 0, 10, 4.5], [40, 40, 50, 50]],
                      np.float32)
    gts = np.asarray([[0, 0, 10, 10], [39, 40, 50, 51]], np.float32)
    expected = to_numpy(match_anchors(xp.asarray(base), xp.asarray(gts)))
    np.testing.assert_array_equal(expected, [0, BACKGROUND, IGNORE, 1])
    for scale in (2.0**100, 2.0**120):  # 1.3e30, 1.3e36
        got = match_anchors(xp.asarray(base * np.float32(scale)),
                            xp.asarray(gts * np.float32(scale)))
        np.testing.assert_array_equal(to_numpy(got), expected, err_msg=str(scale))
    # float64 overflows its areas only past ~1e154: the same at 2**1000 (1e301)
    big = 2.0**1000
    got = match_anchors(xp.asarray(base.astype(np.float64) * big),
                        xp.asarray(gts.astype(np.float64) * big))
    np.testing.assert_array_equal(to_numpy(got), expected, err_msg="float64 2**1000")


def test_non_finite_gt_in_a_trace_counts_as_padding():
    # eagerly a NaN or inf gt is an error naming it; in a trace the check is skipped and
    # the gt must not take over anchors (nor hide the other gts' matches): it is padding
    jax = pytest.importorskip("jax")
    torch = pytest.importorskip("torch")
    anchors = np.asarray([[0, 0, 10, 10], [20, 0, 30, 10], [0, 20, 10, 30]], np.float32)
    gts = np.asarray([[[0, 0, 10, 10], [20, 0, 30, 10]],
                      [[0, 0, 10, 10], [np.nan, 0, 30, 10]],
                      [[0, 0, 10, 10], [-np.inf, -np.inf, np.inf, np.inf]]], np.float32)
    expected = [[0, 1, BACKGROUND], [0, BACKGROUND, BACKGROUND], [0, BACKGROUND, BACKGROUND]]
    with pytest.raises(ValueError, match=r"gt_boxes\[1, 1\].*non-finite"):
        match_anchors(anchors, gts)
    got = jax.jit(match_anchors)(jax.numpy.asarray(anchors), jax.numpy.asarray(gts))
    np.testing.assert_array_equal(np.asarray(got), expected)
    torch._dynamo.reset()
    compiled = torch.compile(match_anchors, fullgraph=True)
    got = compiled(torch.as_tensor(anchors), torch.as_tensor(gts))
    np.testing.assert_array_equal(got.numpy(), expected)


def test_tie_rules_on_a_near_tie(xp):
    from helpers import to_numpy

    # gt [0, 0, 10, 10]; anchor 0 has IoU 0.25 exactly (a quarter of the box), anchor 1 a
    # box a hair (2**-18) wider, IoU 0.25 · (1 + 1.5e-6): not equal, but inside the
    # rounding band of 40u = 2.4e-6 — "equal" claims one, "rounding" both
    gt = np.asarray([[0, 0, 10, 10]], np.float32)
    eps = np.float32(2.0**-18)
    anchors = np.asarray([[0, 0, 5, 5], [0, 0, 5 + eps, 5 + eps], [50, 50, 60, 60]],
                         np.float32)
    a, g = xp.asarray(anchors), xp.asarray(gt)
    np.testing.assert_array_equal(to_numpy(match_anchors(a, g)), [BACKGROUND, 0, BACKGROUND])
    np.testing.assert_array_equal(to_numpy(match_anchors(a, g, tie_rule="rounding")),
                                  [0, 0, BACKGROUND])
    with pytest.raises(ValueError, match=r"tie_rule must be one of \('equal', 'rounding'\)"):
        match_anchors(a, g, tie_rule="exact")


@st.composite
def hostile_scenes(draw):
    """Anchors and gts on a half-pixel grid times 2**e: duplicates, zero-width and
    zero-height boxes, boxes inside others; e from tiny (2**-50) to huge (2**100)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))

    def boxes(n):
        xy = rng.integers(0, 40, size=(n, 2)) / 2
        wh = rng.integers(0, 24, size=(n, 2)) / 2  # 0: a degenerate side
        return np.concatenate([xy, xy + wh], axis=1)

    anchors = boxes(draw(st.integers(1, 40)))
    gts = boxes(draw(st.integers(0, 6)))
    if len(gts) and draw(st.booleans()):
        gts[0] = anchors[0]  # a gt identical to an anchor
    if len(gts) > 1 and draw(st.booleans()):
        gts[1] = gts[0]  # duplicate gts
    return anchors, gts, draw(st.integers(-50, 100)), draw(st.sampled_from(RULES))


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scene=hostile_scenes())
def test_matches_are_scale_invariant_and_backend_independent(xp, scene):
    from helpers import to_numpy

    anchors, gts, e, rule = scene
    scale = 2.0**e
    want = match_anchors(anchors.astype(np.float32), gts.astype(np.float32), tie_rule=rule)
    assert ((want >= -2) & (want < max(len(gts), 1))).all()
    got = match_anchors(xp.asarray((anchors * scale).astype(np.float32)),
                        xp.asarray((gts * scale).astype(np.float32)), tie_rule=rule)
    np.testing.assert_array_equal(to_numpy(got), want)


def test_gpu_check_script_runs_on_the_cpu(tmp_path):
    # the CUDA script (tests/gpu_check.py) in its CPU smoke mode: every code path, and a
    # report whose checks all pass on the CPU
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "gpu_check.py"), "--dry-run",
                           "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["backends"] == ["jax", "torch"] and report["failed"] == []
    assert report["checks"]["jax/equal/jit batch 16"] == 0
    assert report["checks"]["torch/loss/eager"]["positives"] == \
        report["reference"]["num_positives"]


def test_non_finite_anchor_in_a_trace_never_matches():
    # in a trace a NaN or infinite anchor has IoU 0 with every gt (its pinned area and
    # intersections are 0 or inf): BACKGROUND, and the other anchors keep their matches
    jax = pytest.importorskip("jax")
    torch = pytest.importorskip("torch")
    anchors = np.asarray([[0, 0, 10, 10], [np.nan, 0, 10, 10], [-np.inf, -np.inf, np.inf,
                          np.inf], [0, 0, np.inf, 10], [np.inf] * 4, [20, 0, 30, 9]],
                         np.float32)
    gts = np.asarray([[0, 0, 10, 10], [20, 0, 30, 10]], np.float32)
    expected = [0, BACKGROUND, BACKGROUND, BACKGROUND, BACKGROUND, 1]
    with pytest.raises(ValueError, match=r"anchors\[1\].*non-finite"):
        match_anchors(anchors, gts)
    got = jax.jit(match_anchors)(jax.numpy.asarray(anchors), jax.numpy.asarray(gts))
    np.testing.assert_array_equal(np.asarray(got), expected)
    torch._dynamo.reset()
    got = torch.compile(match_anchors, fullgraph=True)(torch.as_tensor(anchors),
                                                        torch.as_tensor(gts))
    np.testing.assert_array_equal(got.numpy(), expected)


def test_match_of_box_iou_equals_match_anchors_on_every_backend(xp, batch):
    # the public box_iou computes the same floats as the matcher's own IoU, on every
    # backend (and under jit): match(box_iou) gives match_anchors' integers
    from helpers import to_numpy

    from focal_array.boxes import box_iou
    from focal_array.matcher import match

    usable = batch["valid"] & ~batch["crowd"]
    gt = np.where(usable[..., None], batch["gt"], np.float32(0))
    want = reference_matches(batch["anchors"], gt, usable, np.zeros_like(usable), "equal")
    a, g, v = xp.asarray(batch["anchors"]), xp.asarray(gt), xp.asarray(usable)
    got = match(box_iou(a, g), gt_valid=v)
    np.testing.assert_array_equal(to_numpy(got), want)
    if xp.__name__.startswith("jax"):
        import jax

        jitted = jax.jit(lambda a, g, v: match(box_iou(a, g), gt_valid=v))
        np.testing.assert_array_equal(np.asarray(jitted(a, g, v)), want)
