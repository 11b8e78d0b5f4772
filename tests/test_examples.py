"""The examples in ``examples/``: they train, they agree across frameworks, their metric is
right.

The example modules are imported from their files (``examples/`` is not a package) and run
for a few steps on a few images. The cross-framework test builds the Flax model, copies its
weights into the PyTorch model and checks the head outputs, the first step's loss and its
gradient against each other and the loss against NumPy on the same head outputs.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from focal_array import dense_detection_loss
from tests.helpers import require

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
FAST = {"train_images": 48, "eval_images": 16, "batch_size": 8, "verbose": False}


def _load(name: str):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # the examples import their shared `synthetic` module so
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def synthetic():
    return _load("synthetic")


# --------------------------------------------------------------------------- data, metric


def test_synthetic_data_is_seeded_and_imbalanced(synthetic):
    a, b = synthetic.make_dataset(6, seed=3), synthetic.make_dataset(6, seed=3)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.images, synthetic.make_dataset(6, seed=4).images)
    assert a.images.shape == (6, 64, 64, 1) and a.images.dtype == np.float32
    assert a.valid.sum(axis=1).min() >= 1
    boxes = a.boxes[a.valid]
    assert np.all(boxes[:, 2:] > boxes[:, :2]) and boxes.min() >= 0 and boxes.max() <= 64
    # the shapes are drawn where their boxes say: bright inside, background outside
    i, j = np.argwhere(a.valid)[0]
    x0, y0, x1, y1 = np.round(a.boxes[i, j]).astype(int)
    assert a.images[i, y0 + 2:y1 - 2, x0 + 2:x1 - 2].max() > 0.5
    out = dense_detection_loss(np.zeros((6, 480, 3)), np.zeros((6, 480, 4)),
                               synthetic.make_anchors(), a.boxes, a.labels, gt_valid=a.valid)
    assert synthetic.make_anchors().shape == (480, 4)
    assert 0 < float(out["num_positives"]) < 0.05 * 6 * 480  # under 5 % positives


def _truth(synthetic, boxes, labels):
    """One image holding ``boxes`` (xyxy) of classes ``labels``."""
    n = len(boxes)
    return synthetic.Batch(np.zeros((1, 64, 64, 1), np.float32),
                           np.asarray([boxes], np.float32), np.asarray([labels], np.int32),
                           np.ones((1, n), bool))


def _dets(boxes, scores, labels):
    return [(np.asarray(boxes, np.float64), np.asarray(scores, np.float64),
             np.asarray(labels, np.int64))]


def test_coco_metrics_hand_cases(synthetic):
    """COCO's 101-point AP on cases worked out by hand (recall thresholds 0, 0.01, ..., 1:
    precision is read at each, 0 beyond the highest recall reached)."""
    require("pycocotools")
    truth = _truth(synthetic, [[0, 0, 10, 10], [20, 20, 30, 30]], [0, 0])
    perfect = synthetic.coco_metrics(_dets(truth.boxes[0], [0.9, 0.8], [0, 0]), truth)
    assert perfect == {"AP": 1.0, "AP50": 1.0, "AP75": 1.0, "square": 1.0}
    # a false positive ranked first, then one of the two gts: recall 1/2 at precision 1/2,
    # read at the 51 thresholds 0 ... 0.5
    m = synthetic.coco_metrics(_dets([[40, 40, 50, 50], [0, 0, 10, 10]], [0.9, 0.8],
                                     [0, 0]), truth)
    assert m["AP50"] == pytest.approx(51 * 0.5 / 101)
    # a duplicate of a matched gt is a false positive, and IoU 0.47 is a miss at 0.5:
    # precision 1 up to recall 1/2 at every IoU threshold (the matched box is exact)
    m = synthetic.coco_metrics(_dets([[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 24.7]],
                                     [0.9, 0.8, 0.7], [0, 0, 0]), truth)
    assert m["AP"] == m["AP50"] == m["AP75"] == pytest.approx(51 / 101)
    # IoU 0.64 away from the origin (an xyxy box taken as xywh would give 0.88): a match
    # at the thresholds 0.5, 0.55 and 0.6 of the ten, none at 0.75
    one = _truth(synthetic, [[20, 20, 30, 30]], [0])
    m = synthetic.coco_metrics(_dets([[20, 20, 30, 26.4]], [0.9], [0]), one)
    assert (m["AP"], m["AP50"], m["AP75"]) == pytest.approx((0.3, 1.0, 0.0))
    # the right box with the wrong class: the square gt is missed, and the disc, which has
    # no ground truth, is left out of the mean
    m = synthetic.coco_metrics(_dets([[20, 20, 30, 30]], [0.9], [1]), one)
    assert m == {"AP": 0.0, "AP50": 0.0, "AP75": 0.0, "square": 0.0}
    empty = [(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64))]
    assert synthetic.coco_metrics(empty, one) == {"AP": 0.0, "AP50": 0.0, "AP75": 0.0,
                                                  "square": 0.0}


def test_nms_keeps_the_best_of_overlapping_boxes(synthetic):
    keep = synthetic.nms(np.array([[0, 0, 10, 10], [1, 0, 11, 10], [30, 30, 40, 40]], float),
                         np.array([0.5, 0.9, 0.7]))
    np.testing.assert_array_equal(keep, [1, 2])


def _reference_ap(detections, truth, threshold):
    """COCO's AP at one IoU threshold, written here from its definition (float64): per
    class, each image's detections in decreasing score match the unmatched gt of best IoU
    if it reaches the threshold; all images' detections ranked by score; precision made
    monotone from the right and read at the 101 recall thresholds; mean over the classes
    with ground truth."""
    def iou(box, gts):
        wh = np.clip(np.minimum(box[2:], gts[:, 2:]) - np.maximum(box[:2], gts[:, :2]), 0, None)
        inter = wh[:, 0] * wh[:, 1]
        area = (box[2] - box[0]) * (box[3] - box[1])
        return inter / (area + (gts[:, 2] - gts[:, 0]) * (gts[:, 3] - gts[:, 1]) - inter)

    aps = []
    for c in range(3):
        scores, hits, n_gt = [], [], 0
        for (boxes, s, lab), gb, gl, gv in zip(detections, truth.boxes, truth.labels,
                                               truth.valid, strict=True):
            gts = gb[gv & (gl == c)].astype(np.float64)
            n_gt += len(gts)
            taken = np.zeros(len(gts), bool)
            for k in np.argsort(-s[lab == c], kind="stable"):
                hit = False
                if len(gts):
                    ious = np.where(taken, -1.0, iou(boxes[lab == c][k], gts))
                    j = int(np.argmax(ious))
                    if ious[j] >= threshold:
                        taken[j] = hit = True
                scores.append(s[lab == c][k])
                hits.append(hit)
        if n_gt == 0:
            continue
        if not scores:  # a class with ground truth and no detection: precision 0
            aps.append(0.0)
            continue
        order = np.argsort(-np.asarray(scores), kind="stable")
        tp = np.cumsum(np.asarray(hits, bool)[order])
        fp = np.cumsum(~np.asarray(hits, bool)[order])
        recall, precision = tp / n_gt, tp / np.maximum(tp + fp, 1)
        precision = np.maximum.accumulate(precision[::-1])[::-1]
        at = np.searchsorted(recall, np.linspace(0.0, 1.0, 101), side="left")
        aps.append(np.where(at < len(recall), precision[np.minimum(at, len(recall) - 1)],
                            0.0).mean())
    return float(np.mean(aps))


# --------------------------------------------------------------------------- training


@pytest.mark.parametrize("example,needs,gamma", [
    ("flax_dense_detector", ("flax", "optax"), 2.0),
    ("torch_dense_detector", ("torch",), 0.0),
])
def test_example_trains(example, needs, gamma):
    for name in (*needs, "pycocotools"):
        require(name)
    ex = _load(example)
    out = ex.main(["--steps", "12", "--gamma", f"{gamma:g}", "--batch-size", "8",
                   "--train-images", "48", "--eval-images", "16"])
    assert len(out[gamma]["losses"]) == 12 and np.all(np.isfinite(out[gamma]["losses"]))
    before, after = out[gamma]["held_out_loss"]
    assert after < 0.8 * before, (before, after)
    ap = out[gamma]["ap"]
    assert 0.0 <= ap["AP"] <= ap["AP50"] <= 1.0 and 0.0 <= ap["AP75"] <= ap["AP50"]
    # the evaluator against the definition, on this run's own detections and held-out set
    synthetic = _load("synthetic")
    held_out = synthetic.make_dataset(16, seed=10_000)
    assert ap["AP50"] == pytest.approx(_reference_ap(out[gamma]["detections"], held_out, 0.5),
                                       abs=1e-12)
    assert ap["AP75"] == pytest.approx(_reference_ap(out[gamma]["detections"], held_out, 0.75),
                                       abs=1e-12)


def test_torch_example_compiled_step():
    torch = require("torch")
    torch._dynamo.reset()
    torch_ex = _load("torch_dense_detector")
    # aot_eager: dynamo's graph capture and AOT autograd, without inductor's C++ build
    # (50 s on this CPU); the example's --compile uses inductor
    out = torch_ex.train(steps=3, gamma=2.0, compile="aot_eager", **FAST)
    eager = torch_ex.train(steps=3, gamma=2.0, **FAST)
    np.testing.assert_allclose(out["losses"], eager["losses"], rtol=1e-4)


# --------------------------------------------------------------------------- agreement


def test_frameworks_agree_on_first_step(synthetic):
    """Same weights, same batch: Flax vs PyTorch head outputs, loss, EMA and gradient, and
    both losses vs NumPy on the JAX head outputs (float64)."""
    require("flax"), require("optax")
    torch = require("torch")
    import jax
    import jax.numpy as jnp
    import optax

    flax_ex, torch_ex = _load("flax_dense_detector"), _load("torch_dense_detector")
    batch = synthetic.make_dataset(4, seed=5)
    anchors = synthetic.make_anchors()
    params = flax_ex.init_params(seed=1)
    model = flax_ex.build_model()

    # JAX: one jitted train step, EMA state in and out
    step = flax_ex.make_train_step(model, optax.sgd(0.0), jnp.asarray(anchors), gamma=2.0,
                                   alpha=0.25)
    ema0 = jnp.asarray(100.0, dtype=jnp.float32)
    _, _, ema1, stats = step(params, optax.sgd(0.0).init(params), ema0,
                             *map(jnp.asarray, batch))
    logits_j, deltas_j = model.apply({"params": params}, jnp.asarray(batch.images))
    grads_j = jax.grad(lambda p: _jax_loss(model, p, anchors, batch))(params)

    # PyTorch: the same weights
    # the NumPy initialization has exactly the layout Flax itself would create
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 64, 64, 1)))
    assert jax.tree_util.tree_map(lambda a: a.shape, shapes["params"]) == \
        jax.tree_util.tree_map(lambda a: a.shape, params)
    tmodel = torch_ex.load_params(torch_ex.DenseDetector(),
                                  jax.tree_util.tree_map(np.asarray, params))
    images, boxes, labels, valid = torch_ex.to_torch(batch)
    logits_t, deltas_t = tmodel(images)
    np.testing.assert_allclose(logits_t.detach().numpy(), np.asarray(logits_j), rtol=1e-4,
                               atol=1e-4)
    np.testing.assert_allclose(deltas_t.detach().numpy(), np.asarray(deltas_j), rtol=1e-4,
                               atol=1e-5)
    loss_fn = torch_ex.make_loss_fn(tmodel, torch.from_numpy(anchors), gamma=2.0, alpha=0.25)
    loss_t, ema_t, _ = loss_fn(torch.tensor(100.0), images, boxes, labels, valid)
    loss_t.backward()

    # NumPy float64 on the JAX head outputs, normalized by the EMA computed by hand
    out = dense_detection_loss(np.asarray(logits_j, np.float64),
                               np.asarray(deltas_j, np.float64), anchors.astype(np.float64),
                               batch.boxes.astype(np.float64), batch.labels,
                               gt_valid=batch.valid, gamma=2.0, alpha=0.25, normalize=1.0)
    ema = 0.9 * 100.0 + 0.1 * max(float(out["num_positives"]), 1.0)
    want = float(out["total"]) / ema
    assert float(ema1) == pytest.approx(ema, rel=1e-6)
    assert ema_t.item() == pytest.approx(ema, rel=1e-6)
    assert float(stats["loss"]) == pytest.approx(want, rel=1e-5)
    assert loss_t.item() == pytest.approx(want, rel=1e-5)

    # gradients: the classification bias and the first conv kernel (HWIO vs OIHW)
    np.testing.assert_allclose(tmodel.cls_out.bias.grad.numpy(),
                               np.asarray(grads_j["cls_out"]["bias"]), rtol=1e-3, atol=1e-6)
    gk = np.asarray(grads_j["backbone_0"]["kernel"]).transpose(3, 2, 0, 1)
    scale = np.abs(gk).max()
    assert np.abs(tmodel.backbone[0].weight.grad.numpy() - gk).max() < 1e-3 * scale


def _jax_loss(model, params, anchors, batch):
    import jax.numpy as jnp

    logits, deltas = model.apply({"params": params}, jnp.asarray(batch.images))
    out = dense_detection_loss(logits, deltas, jnp.asarray(anchors), jnp.asarray(batch.boxes),
                               jnp.asarray(batch.labels), gt_valid=jnp.asarray(batch.valid),
                               gamma=2.0, alpha=0.25, normalize=1.0)
    return out["total"] / (0.9 * 100.0 + 0.1 * jnp.maximum(out["num_positives"], 1.0))


def test_numpy_reference_check(tmp_path):
    require("jax"), require("torch")
    check = _load("numpy_reference_check")
    path = tmp_path / "batch.npz"
    report = check.main(["--out", str(path), "--images", "4", "--seed", "2"])
    assert path.exists()
    n = len(check.CONFIGS)
    assert len(report) == 4 * n  # numpy32, jax, torch values + the gradient, per config
    assert max(report.values()) < 1e-5, report
    assert min(report.values()) >= 0.0
