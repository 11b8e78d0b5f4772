"""dense_detection_loss(assigner=...) against float64 transcriptions of each detector's loss:
torchvision's FCOSHead.compute_loss, mmdetection's ATSSHead.loss_by_feat and ultralytics'
v8DetectionLoss (classification and box terms), each on its own assigner's transcription
(tests/test_assign_*.py), on every backend; then the normalizers under a count reducer,
the jit/compile routes and the errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from focal_array.anchors import anchors_per_level, retinanet_anchors
from focal_array.detection import dense_detection_loss
from tests import reference as ref
from tests import reference_matcher as rm
from tests import reference_variants as rv
from tests.helpers import asarray, assert_close, require, to_numpy
from tests.test_assign_atss import _reference as mmdet_atss_batch
from tests.test_assign_fcos import _tv_batch
from tests.test_assign_tal import _ref_iou, ultralytics_tal

C = 4
IMAGE = (128, 160)
FCOS = {"strides": (8, 16, 32, 64, 128), "sizes": (8, 16, 32, 64, 128), "scales": (1.0,),
        "aspect_ratios": (1.0,), "offset": 0.0}
ATSS = {"sizes": (64, 128, 256, 512, 1024), "scales": (1.0,), "aspect_ratios": (1.0,),
        "offset": 0.0}
ATSS_WEIGHTS = (10.0, 10.0, 5.0, 5.0)  # mmdetection's target_stds (0.1, 0.1, 0.2, 0.2)


def _grid(options):
    anchors = np.asarray(retinanet_anchors(IMAGE, **options, dtype=np.float64))
    grid = {k: v for k, v in options.items() if k != "offset"}
    return anchors, [g.num_anchors for g in anchors_per_level(IMAGE, **grid)]


def _gts(seed, n_images=3, slots=5):
    """Padded gts (NaN padding interleaved), the last image empty."""
    rng = np.random.default_rng(seed)
    h, w = IMAGE
    gts = np.full((n_images, slots, 4), np.nan)
    valid = np.zeros((n_images, slots), bool)
    for b in range(n_images - 1):
        n = int(rng.integers(2, slots + 1))
        side = rng.uniform(12.0, 110.0, (n, 2))
        centre = rng.uniform(0.15, 0.85, (n, 2)) * (w, h)
        boxes = np.concatenate([centre - side / 2, centre + side / 2], 1)
        boxes = np.round(np.clip(boxes, 0, [w, h, w, h]), 1)
        where = rng.permutation(slots)[:n]
        gts[b, where], valid[b, where] = boxes, True
    labels = np.where(valid, rng.integers(0, C, valid.shape), -3)
    return gts, labels, valid


def _head(seed, n_images, n_anchors, ltrb):
    rng = np.random.default_rng(seed + 100)
    logits = rng.normal(-1.5, 1.5, (n_images, n_anchors, C))
    if ltrb:  # FCOS / YOLOv8 heads end in a ReLU / softplus: positive distances
        deltas = rng.uniform(0.2, 3.0, (n_images, n_anchors, 4))
    else:
        deltas = rng.normal(0.0, 0.4, (n_images, n_anchors, 4))
    return logits, deltas, rng.normal(0.0, 1.0, (n_images, n_anchors))


def _bce(x, y):
    return np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))


def _decode_ltrb(anchors, codes):
    cx, cy = (anchors[..., 0] + anchors[..., 2]) / 2, (anchors[..., 1] + anchors[..., 3]) / 2
    w, h = anchors[..., 2] - anchors[..., 0], anchors[..., 3] - anchors[..., 1]
    return np.stack([cx - codes[..., 0] * w, cy - codes[..., 1] * h,
                     cx + codes[..., 2] * w, cy + codes[..., 3] * h], -1)


def _giou_paired(a, b, eps):
    """torchvision's generalized_box_iou_loss (eps 1e-7) / mmdetection's GIoULoss (eps
    1e-6, clamps) overlap term, paired."""
    inter = (np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0])).clip(0) * (
        np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1])).clip(0)
    union = ((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]) + (b[:, 2] - b[:, 0])
             * (b[:, 3] - b[:, 1]) - inter)
    hull = (np.maximum(a[:, 2], b[:, 2]) - np.minimum(a[:, 0], b[:, 0])) * (
        np.maximum(a[:, 3], b[:, 3]) - np.minimum(a[:, 1], b[:, 1]))
    return inter / (union + eps) - (hull - union) / (hull + eps)


def _centerness(anchors, boxes):
    cx, cy = (anchors[:, 0] + anchors[:, 2]) / 2, (anchors[:, 1] + anchors[:, 3]) / 2
    lr = np.stack([cx - boxes[:, 0], boxes[:, 2] - cx], -1)
    tb = np.stack([cy - boxes[:, 1], boxes[:, 3] - cy], -1)
    return np.sqrt(lr.min(-1) / lr.max(-1) * (tb.min(-1) / tb.max(-1)))


def _call(xp, logits, deltas, anchors, gts, labels, valid, **kw):
    f = "float64"
    return dense_detection_loss(asarray(xp, logits, f), asarray(xp, deltas, f),
                                asarray(xp, anchors, f), asarray(xp, gts, f),
                                asarray(xp, labels), gt_valid=asarray(xp, valid), **kw)


# --------------------------------------------------------------------------- FCOS


def _torchvision_fcos(logits, deltas, ctr_logits, anchors, gts, labels, valid, levels):
    """FCOSHead.compute_loss: focal (sum), GIoU of the decoded boxes on the foreground,
    BCE of centerness, each over max(1, foreground count of the batch)."""
    matched = _tv_batch(anchors, gts, valid, levels)
    cls = box = ctr = 0.0
    for i in range(len(gts)):
        fg = matched[i] >= 0
        onehot = np.zeros((len(anchors), C))
        onehot[fg, labels[i, matched[i, fg]]] = 1.0
        cls += ref.sigmoid_focal(logits[i], onehot, alpha=0.25, gamma=2.0)[0].sum()
        if fg.any():
            boxes = gts[i, matched[i, fg]]
            pred = _decode_ltrb(anchors[fg], deltas[i, fg])
            box += np.sum(1.0 - _giou_paired(pred, boxes, 1e-7))
            ctr += np.sum(_bce(ctr_logits[i, fg], _centerness(anchors[fg], boxes)))
    n = max(1, int((matched >= 0).sum()))
    return cls / n, box / n, ctr / n, int((matched >= 0).sum())


def test_fcos_equals_torchvision_compute_loss(xp):
    anchors, levels = _grid(FCOS)
    gts, labels, valid = _gts(1)
    logits, deltas, ctr_logits = _head(1, len(gts), len(anchors), ltrb=True)
    want = _torchvision_fcos(logits, deltas, ctr_logits, anchors, gts, labels, valid, levels)
    assert want[3] > 10
    out = _call(xp, logits, deltas, anchors, gts, labels, valid, assigner="fcos",
                num_anchors_per_level=levels, box_coding="ltrb", box_loss="giou",
                centerness_logits=asarray(xp, ctr_logits, "float64"))
    assert set(out) == {"classification", "box_regression", "centerness", "total",
                        "num_positives"}
    assert_close(out["classification"], want[0], xp, dtype="float64", rtol=1e-10)
    assert_close(out["box_regression"], want[1], xp, dtype="float64", rtol=1e-6)  # tv's eps
    assert_close(out["centerness"], want[2], xp, dtype="float64", rtol=1e-10)
    assert_close(out["total"], sum(want[:3]), xp, dtype="float64", rtol=1e-6)
    assert_close(out["num_positives"], want[3], xp, dtype="float64")


# --------------------------------------------------------------------------- ATSS


def _mmdet_atss_head(logits, deltas, ctr_logits, anchors, gts, labels, valid, levels, *,
                     loss="focal"):
    """ATSSHead.loss_by_feat: focal over max(num_pos, 1); GIoU (eps 1e-6) weighted by the
    centerness targets over max(their sum, 1); centerness BCE over max(num_pos, 1). With
    loss="quality_focal" the GFL target: the decoded prediction's IoU at the class."""
    matched = mmdet_atss_batch(anchors, gts, valid, levels, 9)
    cls = box = ctr = w_sum = 0.0
    for i in range(len(gts)):
        fg = matched[i] >= 0
        pred = np.stack([rm.decode(a, d, ATSS_WEIGHTS) for a, d in zip(anchors, deltas[i],
                                                                        strict=True)])
        target = np.zeros((len(anchors), C))
        if fg.any():
            boxes = gts[i, matched[i, fg]]
            quality = 1.0 if loss == "focal" else _ref_iou(pred[fg], boxes, ciou=False)
            target[fg, labels[i, matched[i, fg]]] = quality
            w = _centerness(anchors[fg], boxes)
            box += np.sum(w * (1.0 - _giou_paired(pred[fg], boxes, 1e-6)))
            ctr += np.sum(_bce(ctr_logits[i, fg], w))
            w_sum += w.sum()
        if loss == "focal":
            cls += ref.sigmoid_focal(logits[i], target, alpha=0.25, gamma=2.0)[0].sum()
        else:
            cls += rv.quality_focal(logits[i], target, beta=2.0)[0].sum()
    n = max(1, int((matched >= 0).sum()))
    return cls / n, box / max(w_sum, 1.0), ctr / n, int((matched >= 0).sum())


@pytest.mark.parametrize("loss", ["focal", "quality_focal"])
def test_atss_equals_mmdetection_head_loss(xp, loss):
    anchors, levels = _grid(ATSS)
    gts, labels, valid = _gts(2)
    logits, deltas, ctr_logits = _head(2, len(gts), len(anchors), ltrb=False)
    want = _mmdet_atss_head(logits, deltas, ctr_logits, anchors, gts, labels, valid, levels,
                            loss=loss)
    assert want[3] > 10
    out = _call(xp, logits, deltas, anchors, gts, labels, valid, assigner="atss", loss=loss,
                num_anchors_per_level=levels, box_loss="giou",
                box_coder_weights=ATSS_WEIGHTS,
                centerness_logits=asarray(xp, ctr_logits, "float64"))
    assert_close(out["classification"], want[0], xp, dtype="float64", rtol=1e-9)
    assert_close(out["box_regression"], want[1], xp, dtype="float64", rtol=1e-6)  # eps
    assert_close(out["centerness"], want[2], xp, dtype="float64", rtol=1e-10)
    assert_close(out["num_positives"], want[3], xp, dtype="float64")


# --------------------------------------------------------------------------- task-aligned

YOLO = {"topk": 10, "alpha": 0.5, "beta": 6.0, "iou": "ciou", "contested": "all",
        "topk_from": "anchors"}


def _points_anchors(strides=(8, 16, 32)):
    h, w = IMAGE
    pts, side = [], []
    for s in strides:
        ys, xs = np.meshgrid(np.arange(h // s) + 0.5, np.arange(w // s) + 0.5, indexing="ij")
        pts.append(np.stack([xs, ys], -1).reshape(-1, 2) * s)
        side.append(np.full(pts[-1].shape[0], float(s)))
    points, side = np.concatenate(pts), np.concatenate(side)
    half = side[:, None] / 2
    return points, side, np.concatenate([points - half, points + half], -1)


def _yolov8(logits, deltas, points, side, gts, labels, valid):
    """v8DetectionLoss without DFL and the gains: BCE(logits, target_scores).sum() and
    ((1 - CIoU) · target score).sum(), both over max(target_scores.sum(), 1). (YOLOv8
    takes the CIoU in stride units; scale-free up to its 1e-7 eps.)"""
    pred = np.concatenate([points - deltas[..., :2] * side[:, None],
                           points + deltas[..., 2:] * side[:, None]], -1)
    scores = 1.0 / (1.0 + np.exp(-logits))
    _, t_boxes, t_scores, fg, gt_idx = ultralytics_tal(
        scores, pred, points, np.where(valid, labels, 0), np.where(valid[..., None], gts, 0.0),
        valid, topk=10, alpha=0.5, beta=6.0, ciou=True, contested="all", topk_from="anchors")
    tss = max(t_scores.sum(), 1.0)
    cls = _bce(logits, t_scores).sum() / tss
    w1, h1 = pred[..., 2] - pred[..., 0], pred[..., 3] - pred[..., 1] + 1e-7
    w2, h2 = t_boxes[..., 2] - t_boxes[..., 0], t_boxes[..., 3] - t_boxes[..., 1] + 1e-7
    inter = (np.minimum(pred[..., 2], t_boxes[..., 2]) - np.maximum(pred[..., 0], t_boxes[
        ..., 0])).clip(0) * (np.minimum(pred[..., 3], t_boxes[..., 3])
                             - np.maximum(pred[..., 1], t_boxes[..., 1])).clip(0)
    iou = inter / (w1 * h1 + w2 * h2 - inter + 1e-7)
    cw = np.maximum(pred[..., 2], t_boxes[..., 2]) - np.minimum(pred[..., 0], t_boxes[..., 0])
    ch = np.maximum(pred[..., 3], t_boxes[..., 3]) - np.minimum(pred[..., 1], t_boxes[..., 1])
    rho2 = ((t_boxes[..., 0] + t_boxes[..., 2] - pred[..., 0] - pred[..., 2]) ** 2
            + (t_boxes[..., 1] + t_boxes[..., 3] - pred[..., 1] - pred[..., 3]) ** 2) / 4
    v = 4 / math.pi**2 * (np.arctan(w2 / h2) - np.arctan(w1 / h1)) ** 2
    ciou = iou - (rho2 / (cw**2 + ch**2 + 1e-7) + v * v / (v - iou + 1 + 1e-7))
    box = np.sum(np.where(fg, (1.0 - ciou) * t_scores.sum(-1), 0.0)) / tss
    return cls, box, int(fg.sum()), np.where(fg, gt_idx, -1)


def test_task_aligned_equals_yolov8_loss(xp):
    points, side, anchors = _points_anchors()
    gts, labels, valid = _gts(3)
    logits, codes, _ = _head(3, len(gts), len(anchors), ltrb=True)
    want = _yolov8(logits, codes, points, side, gts, labels, valid)
    assert want[2] > 10
    out = _call(xp, logits, codes, anchors, gts, labels, valid, assigner="task_aligned",
                assigner_options=YOLO, loss="ce", alpha=None, box_coding="ltrb",
                box_loss="ciou")
    assert_close(out["classification"], want[0], xp, dtype="float64", rtol=1e-9)
    assert_close(out["box_regression"], want[1], xp, dtype="float64", rtol=1e-9)
    assert_close(out["num_positives"], want[2], xp, dtype="float64")


# --------------------------------------------------------------------------- normalizers


CASES = {
    "atss": ({"assigner": "atss", "box_loss": "giou", "box_coder_weights": ATSS_WEIGHTS},
             ATSS),
    "task_aligned": ({"assigner": "task_aligned", "assigner_options": YOLO, "loss": "ce",
                      "alpha": None, "box_coding": "ltrb", "box_loss": "ciou"}, None),
    "fcos_image": ({"assigner": "fcos", "box_coding": "ltrb", "box_loss": "l1",
                    "normalize": "image", "box_weighting": "centerness"}, FCOS),
}


def _case(name):
    kw, grid = CASES[name]
    if grid is None:
        anchors = _points_anchors()[2]
    else:
        anchors, levels = _grid(grid)
        kw = {**kw, "num_anchors_per_level": levels}
    gts, labels, valid = _gts(4)
    logits, deltas, ctr = _head(4, len(gts), len(anchors), ltrb=kw.get("box_coding") == "ltrb")
    return (logits, deltas, anchors, gts, labels, valid), ctr, kw


@pytest.mark.parametrize("name", sorted(CASES))
def test_replicas_add_up_to_the_whole_batch(name):
    """Each replica's terms over the reduced counts sum to the one-device loss: the
    reducer is called on exactly the counts each normalizer needs, in the documented
    order (here it replays the whole batch's counts)."""
    (logits, deltas, anchors, gts, labels, valid), ctr, kw = _case(name)
    seen = []

    def record(n):
        seen.append(float(n))
        return n

    whole = dense_detection_loss(logits, deltas, anchors, gts, labels, gt_valid=valid,
                                 centerness_logits=ctr, count_reducer=record, **kw)
    counts = list(seen)
    assert len(counts) == {"atss": 2, "task_aligned": 3, "fcos_image": 2}[name]
    parts = []
    for i in range(len(gts)):
        replay = iter(counts)
        one = dense_detection_loss(logits[i:i + 1], deltas[i:i + 1], anchors, gts[i:i + 1],
                                   labels[i:i + 1], gt_valid=valid[i:i + 1],
                                   centerness_logits=ctr[i:i + 1],
                                   count_reducer=lambda n, r=replay: np.asarray(next(r)), **kw)
        parts.append(one)
    for key in ("classification", "box_regression", "centerness", "total"):
        np.testing.assert_allclose(sum(float(p[key]) for p in parts), float(whole[key]),
                                   rtol=1e-12)


def test_weighted_box_loss_divides_by_the_weights():
    """box_weighting='centerness' with the default normalize: Σ c·ℓ / max(Σ c, 1), by hand
    from the library's own per-anchor pieces computed independently in float64."""
    anchors, levels = _grid(FCOS)
    gts, labels, valid = _gts(5)
    logits, deltas, _ = _head(5, len(gts), len(anchors), ltrb=True)
    matched = _tv_batch(anchors, gts, valid, levels)
    num = den = 0.0
    for i in range(len(gts)):
        fg = matched[i] >= 0
        boxes = gts[i, matched[i, fg]]
        w = _centerness(anchors[fg], boxes)
        target = np.concatenate([
            (anchors[fg, :2] + anchors[fg, 2:]) / 2 - boxes[:, :2],
            boxes[:, 2:] - (anchors[fg, :2] + anchors[fg, 2:]) / 2], -1) / (
            anchors[fg, 2:] - anchors[fg, :2]).repeat(2, axis=0).reshape(-1, 4)
        num += np.sum(w * np.abs(deltas[i, fg] - target).sum(-1))
        den += w.sum()
    out = dense_detection_loss(logits, deltas, anchors, gts, labels, gt_valid=valid,
                               assigner="fcos", num_anchors_per_level=levels,
                               box_coding="ltrb", box_loss="l1", box_weighting="centerness")
    np.testing.assert_allclose(float(out["box_regression"]), num / max(den, 1.0), rtol=1e-12)


# --------------------------------------------------------------------------- routes


@pytest.mark.parametrize("name", sorted(CASES))
def test_jax_jit_and_grad(name):
    jax = require("jax")
    import jax.numpy as jnp

    (logits, deltas, anchors, gts, labels, valid), ctr, kw = _case(name)
    f32 = [jnp.asarray(a, jnp.float32) for a in (logits, deltas, ctr)]
    fixed = (jnp.asarray(anchors, jnp.float32), jnp.asarray(gts, jnp.float32),
             jnp.asarray(labels), jnp.asarray(valid))

    def f(lg, dl, c, an, g, lab, val):
        return dense_detection_loss(lg, dl, an, g, lab, gt_valid=val, centerness_logits=c,
                                    **kw)["total"]

    eager = f(*f32, *fixed)
    jitted = jax.jit(f)(*f32, *fixed)
    np.testing.assert_allclose(float(jitted), float(eager), rtol=2e-5)
    want = _call(require("numpy"), logits, deltas, anchors, gts, labels, valid,
                 centerness_logits=ctr, **kw)["total"]
    np.testing.assert_allclose(float(jitted), float(want), rtol=1e-4)
    grads = jax.jit(jax.grad(f, argnums=(0, 1, 2)))(*f32, *fixed)
    assert all(np.isfinite(np.asarray(g)).all() and np.abs(np.asarray(g)).sum() > 0
               for g in grads)


@pytest.mark.filterwarnings("ignore:Dynamo detected a call to a `functools.lru_cache`")
@pytest.mark.parametrize("name", ["fcos_image"])  # ATSS compiles in test_assign_atss
def test_torch_compile_fullgraph(name):
    torch = require("torch")
    torch._dynamo.reset()
    (logits, deltas, anchors, gts, labels, valid), ctr, kw = _case(name)
    lg, dl, c, an, g = (torch.tensor(a, dtype=torch.float32)
                        for a in (logits, deltas, ctr, anchors, gts))
    lab, val = torch.tensor(labels), torch.tensor(valid)

    def f(lg, dl, c):
        return dense_detection_loss(lg, dl, an, g, lab, gt_valid=val, centerness_logits=c,
                                    **kw)["total"]

    eager = f(lg, dl, c)
    lg2 = lg.clone().requires_grad_(True)
    out = torch.compile(f, fullgraph=True)(lg2, dl, c)
    np.testing.assert_allclose(out.item(), eager.item(), rtol=2e-5)
    out.backward()
    assert torch.isfinite(lg2.grad).all()


# --------------------------------------------------------------------------- errors


def test_errors(xp):
    anchors, levels = _grid(FCOS)
    gts, labels, valid = _gts(6)
    logits, deltas, ctr = _head(6, len(gts), len(anchors), ltrb=True)
    L, D, A, G = (asarray(xp, a, "float64") for a in (logits, deltas, anchors, gts))
    lab, val = asarray(xp, labels), asarray(xp, valid)

    def call(**kw):
        return dense_detection_loss(L, D, A, G, lab, gt_valid=val, **kw)

    with pytest.raises(ValueError, match="assigner must be one of"):
        call(assigner="simota")
    with pytest.raises(ValueError, match="needs num_anchors_per_level"):
        call(assigner="fcos")
    with pytest.raises(ValueError, match="'fcos' and 'atss' assigners only"):
        call(num_anchors_per_level=levels)
    with pytest.raises(TypeError, match=r"\['topk'\] are not options of assigner='fcos'"):
        call(assigner="fcos", num_anchors_per_level=levels, assigner_options={"topk": 9})
    with pytest.raises(TypeError, match="takes none"):
        call(assigner_options={"high": 0.6})
    with pytest.raises(ValueError, match="gt_crowd is used by assigner='max_iou' only"):
        call(assigner="atss", num_anchors_per_level=levels,
             gt_crowd=asarray(xp, np.zeros(valid.shape, bool)))
    with pytest.raises(ValueError, match="softmax loss over hard labels"):
        call(assigner="task_aligned", loss="softmax_focal")
    with pytest.raises(ValueError, match="box_coding='ltrb' has none"):
        call(box_coding="ltrb", box_coder_weights=ATSS_WEIGHTS)
    with pytest.raises(ValueError, match="centerness_logits"):
        call(centerness_logits=asarray(xp, ctr[:, :-1], "float64"))
    with pytest.raises(ValueError, match="box_weighting must be one of"):
        call(box_weighting="iou")
    with pytest.raises(ValueError, match="shared \\(A, 4\\) anchors"):
        dense_detection_loss(L, D, asarray(xp, np.broadcast_to(anchors, (3, *anchors.shape)),
                                           "float64"), G, lab, gt_valid=val,
                             assigner="task_aligned")
    bad = np.where(valid, labels, 0)
    bad[0, np.flatnonzero(valid[0])[0]] = C  # a real gt's label out of range
    with pytest.raises(ValueError, match="is not below num_classes=4"):
        dense_detection_loss(L, D, A, G, asarray(xp, bad), gt_valid=val, assigner="atss",
                             num_anchors_per_level=levels)
    out = call(assigner="fcos", num_anchors_per_level=levels, box_coding="ltrb")
    assert np.isfinite(to_numpy(out["total"]))
