"""dense_detection_loss against a plain per-image float64 reference, on every backend."""

from __future__ import annotations

import numpy as np
import pytest

from focal_array.detection import dense_detection_loss
from tests import reference as ref
from tests import reference_matcher as rm
from tests.helpers import asarray, assert_close, has_autodiff, library, require, to_numpy

C = 3  # foreground classes


def _anchors():
    out = []
    for y in range(0, 64, 16):
        for x in range(0, 64, 16):
            for size in (16.0, 28.0):
                cx, cy = x + 8.0, y + 8.0
                out.append([cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2])
    return np.array(out)


def _batch():
    """Three images: two gts + padding; nothing at all; a gt and a crowd region."""
    gt = np.zeros((3, 3, 4))
    labels = np.zeros((3, 3), dtype=np.int64)
    valid = np.zeros((3, 3), dtype=bool)
    crowd = np.zeros((3, 3), dtype=bool)
    gt[0, 0], labels[0, 0], valid[0, 0] = [2, 3, 19, 17], 2, True
    gt[0, 1], labels[0, 1], valid[0, 1] = [30, 28, 60, 62], 0, True
    gt[0, 2] = [np.nan] * 4  # padding may hold anything
    gt[2, 0], labels[2, 0], valid[2, 0] = [34, 2, 50, 20], 1, True
    gt[2, 1], labels[2, 1], valid[2, 1], crowd[2, 1] = [0, 30, 40, 64], 0, True, True
    return gt, labels, valid, crowd


def _reference(logits, deltas, anchors, gt, labels, valid, crowd, *, loss, alpha, gamma,
               box_loss, beta, normalize, neg_pos_ratio=3.0):
    """Plain loops: per image, per anchor."""
    cls_img, box_img, pos_img, counted_img = [], [], [], []
    for i in range(logits.shape[0]):
        matched = rm.match_anchors(anchors, gt[i], valid[i], crowd[i])
        per_anchor = np.zeros(len(anchors))
        for a, m in enumerate(matched):
            if m == rm.IGNORE:
                continue
            x = logits[i, a]
            cls = labels[i, m] if m >= 0 else -1
            if loss in ("focal", "ce"):
                t = np.zeros(C)
                if cls >= 0:
                    t[cls] = 1.0
                g = gamma if loss == "focal" else 0.0
                per_anchor[a] = np.sum(ref.sigmoid_focal(x, t, alpha=alpha, gamma=g)[0])
            else:
                g = gamma if loss == "softmax_focal" else 0.0
                per_anchor[a] = ref.softmax_focal(x[None], np.array([cls + 1]), alpha=alpha,
                                                  gamma=g)[0][0]
        if loss == "ce_hnm":
            keep = rm.hard_negative_mining(per_anchor, matched, neg_pos_ratio)
        else:
            keep = matched != rm.IGNORE
        cls_img.append(np.sum(per_anchor[keep]))
        counted_img.append(int(keep.sum()))
        box = 0.0
        for a, m in enumerate(matched):
            if m < 0:
                continue
            d = deltas[i, a] - rm.encode(anchors[a], gt[i, m])
            ad = np.abs(d)
            if box_loss == "l1":
                box += ad.sum()
            elif box_loss == "smooth_l1":
                box += np.sum(np.where(ad < beta, 0.5 * ad**2 / beta, ad - 0.5 * beta))
            else:
                pred = rm.decode(anchors[a], deltas[i, a])
                box += 1.0 - rm.giou(np.array([pred]), np.array([gt[i, m]]))[0, 0]
        box_img.append(box)
        pos_img.append(int(np.sum(matched >= 0)))
    cls_img, box_img, pos_img = map(np.array, (cls_img, box_img, pos_img))
    n_pos = pos_img.sum()
    if normalize == "image":
        d = np.maximum(pos_img, 1)
        return np.mean(cls_img / d), np.mean(box_img / d), n_pos
    if normalize == "positives":
        cd = bd = max(n_pos, 1)
    elif normalize == "assigned":
        cd, bd = max(sum(counted_img), 1), max(n_pos, 1)
    else:
        cd = bd = max(float(normalize), 1.0)
    return cls_img.sum() / cd, box_img.sum() / bd, n_pos


def _inputs(seed, classes):
    rng = np.random.default_rng(seed)
    anchors = _anchors()
    logits = rng.normal(-2, 2, (3, len(anchors), classes))
    deltas = rng.normal(0, 0.3, (3, len(anchors), 4))
    return logits, deltas, anchors


CASES = [
    ("focal", 0.25, "smooth_l1", "positives"),
    ("focal", None, "l1", "assigned"),
    ("focal", 0.25, "giou", "image"),
    ("ce", 0.25, "smooth_l1", 7.0),
    ("ce_hnm", None, "smooth_l1", "positives"),
    ("ce_hnm", 0.25, "l1", "assigned"),
    ("softmax_focal", 0.25, "giou", "positives"),
    ("softmax_focal", None, "smooth_l1", "image"),
]


@pytest.mark.parametrize("loss,alpha,box_loss,normalize", CASES)
def test_matches_per_image_reference(xp, loss, alpha, box_loss, normalize):
    classes = C + 1 if loss in ("ce_hnm", "softmax_focal") else C
    logits, deltas, anchors = _inputs(1, classes)
    gt, labels, valid, crowd = _batch()
    want_cls, want_box, want_pos = _reference(
        logits, deltas, anchors, gt, labels, valid, crowd, loss=loss, alpha=alpha,
        gamma=2.0, box_loss=box_loss, beta=0.1, normalize=normalize)
    assert want_pos > 0
    out = dense_detection_loss(
        asarray(xp, logits, "float64"), asarray(xp, deltas, "float64"),
        asarray(xp, anchors, "float64"), asarray(xp, gt, "float64"), asarray(xp, labels),
        gt_valid=asarray(xp, valid), gt_crowd=asarray(xp, crowd), loss=loss, alpha=alpha,
        box_loss=box_loss, normalize=normalize)
    assert set(out) == {"classification", "box_regression", "total", "num_positives"}
    assert_close(out["classification"], want_cls, xp, dtype="float64", rtol=1e-10)
    assert_close(out["box_regression"], want_box, xp, dtype="float64", rtol=1e-10)
    assert_close(out["total"], want_cls + want_box, xp, dtype="float64", rtol=1e-10)
    assert_close(out["num_positives"], want_pos, xp, dtype="float64")


def test_float32_and_per_image_anchors(xp):
    logits, deltas, anchors = _inputs(2, C)
    gt, labels, valid, crowd = _batch()
    want_cls, want_box, _ = _reference(logits, deltas, anchors, gt, labels, valid, crowd,
                                       loss="focal", alpha=0.25, gamma=2.0,
                                       box_loss="smooth_l1", beta=0.1, normalize="positives")
    per_image = np.broadcast_to(anchors, (3, *anchors.shape))
    out = dense_detection_loss(
        asarray(xp, logits, "float32"), asarray(xp, deltas, "float32"),
        asarray(xp, per_image, "float32"), asarray(xp, gt, "float32"), asarray(xp, labels),
        gt_valid=asarray(xp, valid), gt_crowd=asarray(xp, crowd))
    assert_close(out["classification"], want_cls, xp, dtype="float32", rtol=2e-5)
    assert_close(out["box_regression"], want_box, xp, dtype="float32", rtol=2e-5)


def test_no_boxes_anywhere_is_finite(xp):
    logits, deltas, anchors = _inputs(3, C)
    gt = np.zeros((3, 2, 4))
    out = dense_detection_loss(
        asarray(xp, logits, "float64"), asarray(xp, deltas, "float64"),
        asarray(xp, anchors, "float64"), asarray(xp, gt, "float64"),
        asarray(xp, np.zeros((3, 2), dtype=np.int64)),
        gt_valid=asarray(xp, np.zeros((3, 2), dtype=bool)))
    # every anchor is background: the summed negative loss over max(0, 1) positives
    want = sum(np.sum(ref.sigmoid_focal(logits[i], np.zeros_like(logits[i]))[0])
               for i in range(3))
    assert_close(out["classification"], want, xp, dtype="float64", rtol=1e-10)
    assert_close(out["box_regression"], 0.0, xp, dtype="float64")
    assert_close(out["num_positives"], 0.0, xp, dtype="float64")


def test_gradients_reach_head_outputs(xp):
    if not has_autodiff(xp):
        pytest.skip(f"{library(xp)} has no autodiff")
    logits, deltas, anchors = _inputs(4, C)
    gt, labels, valid, crowd = _batch()
    args = [asarray(xp, a, "float64") for a in (logits, deltas, anchors, gt)]
    kw = {"gt_valid": asarray(xp, valid), "gt_crowd": asarray(xp, crowd), "box_loss": "giou"}
    lab = asarray(xp, labels)
    eps = 1e-6

    def total(lg, dl):
        return float(to_numpy(dense_detection_loss(lg, dl, args[2], args[3], lab, **kw)[
            "total"]))

    if library(xp) == "jax":
        import jax

        g_cls, g_box = jax.grad(lambda a, b: dense_detection_loss(
            a, b, args[2], args[3], lab, **kw)["total"], argnums=(0, 1))(args[0], args[1])
    else:
        a0 = args[0].clone().requires_grad_(True)
        a1 = args[1].clone().requires_grad_(True)
        dense_detection_loss(a0, a1, args[2], args[3], lab, **kw)["total"].backward()
        g_cls, g_box = a0.grad, a1.grad
    g_cls, g_box = to_numpy(g_cls), to_numpy(g_box)
    assert np.all(np.isfinite(g_cls)) and np.all(np.isfinite(g_box))
    # central differences on a few entries, positives included
    for arr, grad, which in ((logits, g_cls, 0), (deltas, g_box, 1)):
        for idx in [(0, 0, 0), (0, 3, 1), (2, 10, 2), (0, 27, 0)]:
            idx = idx[:arr.ndim]
            plus, minus = arr.copy(), arr.copy()
            plus[idx] += eps
            minus[idx] -= eps
            pa = [asarray(xp, plus if k == which else x, "float64")
                  for k, x in enumerate((logits, deltas))]
            ma = [asarray(xp, minus if k == which else x, "float64")
                  for k, x in enumerate((logits, deltas))]
            fd = (total(*pa) - total(*ma)) / (2 * eps)
            np.testing.assert_allclose(grad[idx], fd, rtol=1e-5, atol=1e-8)


def test_bad_input(xp):
    logits, deltas, anchors = _inputs(5, C)
    gt, labels, valid, _ = _batch()
    L, D, A, G = (asarray(xp, a, "float32") for a in (logits, deltas, anchors, gt))
    lab, val = asarray(xp, labels), asarray(xp, valid)
    with pytest.raises(ValueError, match="loss must be one of"):
        dense_detection_loss(L, D, A, G, lab, gt_valid=val, loss="hinge")
    with pytest.raises(ValueError, match="box_loss must be one of"):
        dense_detection_loss(L, D, A, G, lab, gt_valid=val, box_loss="iou")
    with pytest.raises(ValueError, match="normalize must be one of"):
        dense_detection_loss(L, D, A, G, lab, gt_valid=val, normalize="boxes")
    with pytest.raises(ValueError, match="normalize must be in"):
        dense_detection_loss(L, D, A, G, lab, gt_valid=val, normalize=-1.0)
    with pytest.raises(ValueError, match="box_deltas must have shape"):
        dense_detection_loss(L, D[:, :5, :], A, G, lab, gt_valid=val)
    with pytest.raises(ValueError, match="anchors must have shape"):
        dense_detection_loss(L, D, A[:5, :], G, lab, gt_valid=val)
    with pytest.raises(ValueError, match="cls_logits must have shape"):
        dense_detection_loss(L[0, ...], D, A, G, lab, gt_valid=val)
    with pytest.raises(ValueError, match=r"num_classes"):
        dense_detection_loss(L[..., :2], D, A, G, lab, gt_valid=val)  # label 2 with C = 2
    with pytest.raises(TypeError, match="cls_logits must have a real floating dtype"):
        dense_detection_loss(asarray(xp, np.zeros((3, 32, 3), dtype=np.int64)), D, A, G, lab,
                             gt_valid=val)


@pytest.mark.parametrize("loss", ["focal", "ce_hnm"])
def test_jax_jit_grad(loss):
    jax = require("jax")
    import jax.numpy as jnp

    classes = C + 1 if loss == "ce_hnm" else C
    logits, deltas, anchors = _inputs(6, classes)
    gt, labels, valid, crowd = _batch()
    arrs = [jnp.asarray(a, dtype=jnp.float32) for a in (logits, deltas, anchors, gt)]
    extra = (jnp.asarray(labels), jnp.asarray(valid), jnp.asarray(crowd))

    def f(lg, dl, an, g, lab, val, cr):
        return dense_detection_loss(lg, dl, an, g, lab, gt_valid=val, gt_crowd=cr,
                                    loss=loss)["total"]

    eager = f(*arrs, *extra)
    jitted = jax.jit(f)(*arrs, *extra)
    np.testing.assert_allclose(float(jitted), float(eager), rtol=1e-5)
    g = jax.jit(jax.grad(f, argnums=(0, 1)))(*arrs, *extra)
    assert all(np.all(np.isfinite(np.asarray(t))) for t in g)


@pytest.mark.parametrize("loss", ["focal", "softmax_focal"])
def test_torch_compile_fullgraph(loss):
    torch = require("torch")
    torch._dynamo.reset()
    classes = C + 1 if loss == "softmax_focal" else C
    logits, deltas, anchors = _inputs(7, classes)
    gt, labels, valid, crowd = _batch()
    lg, dl, an, g = (torch.tensor(a, dtype=torch.float32) for a in (logits, deltas, anchors,
                                                                     gt))
    lab, val, cr = torch.tensor(labels), torch.tensor(valid), torch.tensor(crowd)

    def f(lg, dl):
        return dense_detection_loss(lg, dl, an, g, lab, gt_valid=val, gt_crowd=cr,
                                    loss=loss)["total"]

    eager = f(lg, dl)
    # fullgraph capture for both; Inductor's code for "focal" (the matcher and the box loss
    # with it); the softmax focal formula's Inductor code is checked in test_losses_transforms
    backend = "inductor" if loss == "focal" else "aot_eager"
    compiled = torch.compile(f, fullgraph=True, backend=backend)
    lg2 = lg.clone().requires_grad_(True)
    out = compiled(lg2, dl)
    np.testing.assert_allclose(out.item(), eager.item(), rtol=1e-5)
    out.backward()
    assert torch.isfinite(lg2.grad).all()
