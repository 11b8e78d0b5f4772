"""Faster R-CNN head: balanced sampling and rcnn_head_loss against a torch transcription of
torchvision's RoIHeads (box_iou, Matcher(0.5, 0.5, False), BalancedPositiveNegativeSampler
counts, fastrcnn_loss), on every backend."""

from __future__ import annotations

import math

import numpy as np
import pytest

from focal_array.rcnn import append_gt_proposals, rcnn_head_loss, sample_balanced
from tests.helpers import asarray, library, require, to_numpy

C = 4  # foreground classes; the head has C + 1
WEIGHTS = (10.0, 10.0, 5.0, 5.0)


def _rng(xp, seed):
    lib = library(xp)
    if lib == "jax":
        import jax

        return jax.random.key(seed)
    if lib == "torch":
        import torch

        return torch.Generator().manual_seed(seed)
    return np.random.default_rng(seed)


def _labels_row(n_fg, n_bg, n_ign, n, rng):
    row = np.full(n, -1, dtype=np.int64)
    cells = rng.permutation(n)
    row[cells[:n_fg]] = rng.integers(1, C + 1, size=n_fg)
    row[cells[n_fg:n_fg + n_bg]] = 0
    row[cells[n_fg + n_bg:n_fg + n_bg + n_ign]] = -2
    return row


# --------------------------------------------------------------------------- sampling


def test_sample_counts_are_torchvisions(xp):
    """num_pos = min(#fg, int(S·f)), num_neg = min(#bg, S − num_pos), for many counts,
    including too few foreground, too few background, nothing, and S > N."""
    rng = np.random.default_rng(1)
    n = 40
    combos = [(f, b, i) for f in (0, 1, 3, 5, 12, 40) for b in (0, 2, 9, 20, 35)
              for i in (0, 4) if f + b + i <= n]
    labels = np.stack([_labels_row(f, b, i, n, rng) for f, b, i in combos])
    for num_samples, fraction in ((12, 0.25), (50, 0.5), (7, 1.0), (0, 0.25)):
        out = sample_balanced(asarray(xp, labels), rng=_rng(xp, num_samples),
                              num_samples=num_samples, positive_fraction=fraction,
                              return_indices=True)
        mask, idx, valid = (to_numpy(a) for a in out)
        assert mask.shape == labels.shape and idx.shape == valid.shape == (len(combos),
                                                                           num_samples)
        want_pos = np.minimum((labels >= 1).sum(-1), int(num_samples * fraction))
        want_neg = np.minimum((labels == 0).sum(-1), num_samples - want_pos)
        np.testing.assert_array_equal((mask & (labels >= 1)).sum(-1), want_pos)
        np.testing.assert_array_equal((mask & (labels == 0)).sum(-1), want_neg)
        assert not (mask & (labels < 0)).any()
        # the indices list exactly the mask: foreground first, unused slots 0 and invalid
        np.testing.assert_array_equal(valid.sum(-1), want_pos + want_neg)
        for r in range(len(combos)):
            chosen = idx[r][valid[r]]
            assert sorted(chosen) == list(np.flatnonzero(mask[r]))
            fg_first = labels[r][chosen] >= 1
            assert fg_first[:want_pos[r]].all() and not fg_first[want_pos[r]:].any()
            assert (idx[r][~valid[r]] == 0).all()


def _chi2_sf(stat, df):
    """P(χ²(df) > stat); scipy comes with jax."""
    return float(require("scipy.stats").chi2.sf(stat, df))


def test_sample_is_uniform(xp):
    """Every foreground (background) subset of the right size is equally likely (exact
    multinomial chi-square over all 6 × 10 subset pairs), and in a larger case every
    proposal is chosen with the same probability (position bias would show)."""
    # 4 fg choose 2, 5 bg choose 3 (2 ignored, never chosen); 6000 independent draws
    row = np.array([0, 1, -2, 0, 3, 0, 2, -1, 0, 4, 0])
    draws = 6000
    labels = np.repeat(row[None], draws, axis=0)
    mask = to_numpy(sample_balanced(asarray(xp, labels), rng=_rng(xp, 7), num_samples=5,
                                    positive_fraction=0.4))
    fg, bg = np.flatnonzero(row >= 1), np.flatnonzero(row == 0)
    assert (mask[:, fg].sum(1) == 2).all() and (mask[:, bg].sum(1) == 3).all()
    code = mask[:, fg] @ (1 << np.arange(fg.size)) * 64 + mask[:, bg] @ (1 << np.arange(bg.size))
    _, counts = np.unique(code, return_counts=True)
    assert counts.size == math.comb(4, 2) * math.comb(5, 3)
    expected = draws / counts.size
    assert _chi2_sf(((counts - expected) ** 2 / expected).sum(), counts.size - 1) > 1e-3

    # marginals: 30 fg (8 chosen), 90 bg (24 chosen), 1500 draws; the Pearson statistic
    # of k-of-n draws without replacement, scaled by (n − 1) / (n (1 − p)), is χ²(n − 1)
    draws, n_fg, n_bg = 1500, 30, 90
    row = np.array([1] * n_fg + [0] * n_bg + [-1] * 10)
    np.random.default_rng(3).shuffle(row)
    labels = np.repeat(row[None], draws, axis=0)
    mask = to_numpy(sample_balanced(asarray(xp, labels), rng=_rng(xp, 11), num_samples=32,
                                    positive_fraction=0.25))
    for cells, k in ((np.flatnonzero(row >= 1), 8), (np.flatnonzero(row == 0), 24)):
        n = cells.size
        p = k / n
        observed = mask[:, cells].sum(0)
        stat = ((observed - draws * p) ** 2).sum() / (draws * p * (1 - p)) * (n - 1) / n
        assert _chi2_sf(stat, n - 1) > 1e-3, (n, stat)
    assert not mask[:, row < 0].any()


def test_sample_rng_checks(xp):
    labels = asarray(xp, np.array([[1, 0, 0, -1]]))
    lib = library(xp)
    wrong = [3, None, "seed"]
    wrong.append(np.random.default_rng(0) if lib in ("jax", "torch") else object())
    for rng in wrong:
        with pytest.raises(TypeError, match="rng for"):
            sample_balanced(labels, rng=rng)
    keys = asarray(xp, np.array([[0.1, 0.5, 0.9, 0.3]]))
    out = to_numpy(sample_balanced(labels, rng=keys, num_samples=2, positive_fraction=0.5))
    assert out.tolist() == [[True, True, False, False]]  # bg key 0.5 < 0.9
    with pytest.raises(ValueError, match="shape"):
        sample_balanced(labels, rng=asarray(xp, np.zeros((1, 3))))
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        sample_balanced(labels, rng=asarray(xp, np.array([[0.1, 0.5, 1.0, 0.3]])))
    with pytest.raises(TypeError, match="integer"):
        sample_balanced(asarray(xp, np.zeros((1, 4))), rng=_rng(xp, 0))
    with pytest.raises(ValueError, match="num_samples"):
        sample_balanced(labels, rng=_rng(xp, 0), num_samples=-1)
    with pytest.raises(ValueError, match="positive_fraction"):
        sample_balanced(labels, rng=_rng(xp, 0), positive_fraction=1.5)


def test_sample_under_jit_and_vmap():
    jax = require("jax")
    import jax.numpy as jnp

    labels = jnp.asarray(np.stack([_labels_row(6, 20, 3, 32, np.random.default_rng(s))
                                   for s in range(4)]))
    f = jax.jit(lambda lab, key: sample_balanced(lab, rng=key, num_samples=8,
                                                 return_indices=True))
    key = jax.random.key(5)
    jitted, eager = f(labels, key), sample_balanced(labels, rng=key, num_samples=8,
                                                    return_indices=True)
    for a, b in zip(jitted, eager, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(f(labels, jax.random.key(6)).mask),
                              np.asarray(jitted.mask))
    counts = np.asarray(jnp.sum(jitted.mask, -1))
    np.testing.assert_array_equal(counts, [8, 8, 8, 8])
    # per-image keys through vmap (one compile): every image still gets exact counts
    keys = jax.random.split(jax.random.key(0), 4)
    mapped = jax.vmap(lambda lab, k: sample_balanced(lab, rng=k, num_samples=8))(labels, keys)
    np.testing.assert_array_equal(np.asarray(jnp.sum(mapped & (labels >= 1), -1)), [2] * 4)


# --------------------------------------------------------------------------- the loss


def _problem(seed=0, b=3, p=30, g=3):
    """Proposals jittered around the gts (many foreground) plus random ones; image 1 has
    a padded gt (NaN), image 2 none at all. Gts appended as the head would score them."""
    r = np.random.default_rng(seed)
    gts = np.zeros((b, g, 4))
    labels = r.integers(0, C, size=(b, g))
    valid = np.ones((b, g), dtype=bool)
    for i in range(b):
        xy = r.uniform(0, 60, size=(g, 2))
        wh = r.uniform(12, 40, size=(g, 2))
        gts[i] = np.concatenate([xy, xy + wh], -1)
    valid[1, 1] = False
    gts[1, 1] = np.nan
    valid[2] = False
    props = np.zeros((b, p, 4))
    for i in range(b):
        src = gts[i, r.integers(0, g, size=p)]
        src = np.where(np.isfinite(src), src, 10.0)
        jitter = r.normal(0, 4.0, size=(p, 4))
        box = src + jitter
        rand_xy = r.uniform(0, 80, size=(p, 2))
        rand = np.concatenate([rand_xy, rand_xy + r.uniform(4, 30, size=(p, 2))], -1)
        box = np.where(r.random((p, 1)) < 0.6, box, rand)
        x1, x2 = np.minimum(box[:, 0], box[:, 2]), np.maximum(box[:, 0], box[:, 2]) + 1
        y1, y2 = np.minimum(box[:, 1], box[:, 3]), np.maximum(box[:, 1], box[:, 3]) + 1
        props[i] = np.stack([x1, y1, x2, y2], -1)
    boxes, pvalid = append_gt_proposals(props, gts, gt_valid=valid)
    n = boxes.shape[1]
    logits = r.normal(0, 2.0, size=(b, n, C + 1))
    deltas = r.normal(0, 0.5, size=(b, n, (C + 1) * 4))
    return logits, deltas, boxes, gts, labels, valid, pvalid


def _torchvision_reference(logits, deltas, boxes, gts, gt_labels, gt_valid, pvalid, sampled,
                           *, loss="ce", alpha=None, gamma=2.0):
    """torchvision's RoIHeads on the given sample, transcribed (torch float64): per image
    box_iou + Matcher(0.5, 0.5, allow_low_quality_matches=False), labels, the sample's
    proposals, BoxCoder((10, 10, 5, 5)).encode, then fastrcnn_loss (F.cross_entropy and
    F.smooth_l1_loss(beta=1/9, reduction="sum") / labels.numel()). Returns the losses, the
    per-image labels and the gradients w.r.t. the full logits and deltas."""
    torch = require("torch")
    import torch.nn.functional as F

    x = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
    d = torch.tensor(deltas, dtype=torch.float64, requires_grad=True)
    all_labels, all_targets, all_logits, all_deltas, per_image_labels = [], [], [], [], []
    for i in range(len(boxes)):
        keep = np.flatnonzero(pvalid[i])  # the proposals torchvision would have
        props = torch.tensor(boxes[i][keep], dtype=torch.float64)
        gt = torch.tensor(gts[i][gt_valid[i]], dtype=torch.float64)
        gl = torch.tensor(gt_labels[i][gt_valid[i]] + 1)  # torchvision's 1-based labels
        if gt.numel() == 0:
            matched = torch.zeros(len(keep), dtype=torch.int64)
            labels = torch.zeros(len(keep), dtype=torch.int64)
        else:
            area1 = (gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1])
            area2 = (props[:, 2] - props[:, 0]) * (props[:, 3] - props[:, 1])
            lt = torch.max(gt[:, None, :2], props[:, :2])
            rb = torch.min(gt[:, None, 2:], props[:, 2:])
            wh = (rb - lt).clamp(min=0)
            inter = wh[:, :, 0] * wh[:, :, 1]
            iou = inter / (area1[:, None] + area2 - inter)
            vals, matches = iou.max(dim=0)
            matches = torch.where(vals < 0.5, -1, matches)  # between: empty at 0.5/0.5
            matched = matches.clamp(min=0)
            labels = torch.where(matches == -1, 0, gl[matched])
        per_image_labels.append(labels.numpy())
        s = torch.tensor(np.flatnonzero(sampled[i][keep]))
        m_gt = (gt if gt.numel() else torch.zeros((1, 4), dtype=torch.float64))[matched[s]]
        p = props[s]
        pw, ph = p[:, 2] - p[:, 0], p[:, 3] - p[:, 1]
        px, py = p[:, 0] + 0.5 * pw, p[:, 1] + 0.5 * ph
        gw, gh = m_gt[:, 2] - m_gt[:, 0], m_gt[:, 3] - m_gt[:, 1]
        gx, gy = m_gt[:, 0] + 0.5 * gw, m_gt[:, 1] + 0.5 * gh
        wx, wy, ww, wh_ = WEIGHTS
        all_targets.append(torch.stack([wx * (gx - px) / pw, wy * (gy - py) / ph,
                                        ww * torch.log(gw / pw), wh_ * torch.log(gh / ph)], 1))
        all_labels.append(labels[s])
        idx = torch.tensor(keep)[s]
        all_logits.append(x[i, idx])
        all_deltas.append(d[i, idx])
    labels = torch.cat(all_labels)
    targets = torch.cat(all_targets)
    class_logits = torch.cat(all_logits)
    box_regression = torch.cat(all_deltas)
    if loss == "ce":
        cls = F.cross_entropy(class_logits, labels)
    else:
        logp = torch.log_softmax(class_logits, -1).gather(1, labels[:, None])[:, 0]
        fl = -((1 - logp.exp()) ** gamma) * logp
        if alpha is not None:
            fl = fl * torch.where(labels >= 1, alpha, 1 - alpha)
        cls = fl.mean()
    pos = torch.where(labels > 0)[0]
    box_regression = box_regression.reshape(len(labels), -1, 4)
    box = F.smooth_l1_loss(box_regression[pos, labels[pos]], targets[pos], beta=1 / 9,
                           reduction="sum") / labels.numel()
    gx_, gd_ = torch.autograd.grad(cls + box, (x, d))
    return (float(cls.detach()), float(box.detach()), per_image_labels, gx_.numpy(),
            gd_.numpy(), len(labels), len(pos))


@pytest.mark.parametrize("loss", ["ce", "softmax_focal"])
def test_loss_equals_torchvision_transcription(xp, loss):
    logits, deltas, boxes, gts, gl, gv, pv = _problem()
    kw = {"loss": loss, "num_samples": 24, "positive_fraction": 0.25}
    if loss == "softmax_focal":
        kw.update(alpha=0.25, gamma=1.5)
    args = [asarray(xp, a) for a in (logits, deltas, boxes, gts, gl)]
    out = rcnn_head_loss(*args, gt_valid=asarray(xp, gv), proposal_valid=asarray(xp, pv),
                         rng=_rng(xp, 3), **kw)
    sampled, labels = to_numpy(out["sampled"]), to_numpy(out["labels"])
    cls, box, ref_labels, _, _, n_s, n_fg = _torchvision_reference(
        logits, deltas, boxes, gts, gl, gv, pv, sampled, loss=loss,
        alpha=kw.get("alpha"), gamma=kw.get("gamma", 2.0))
    for i in range(len(boxes)):  # the matcher's labels, and padding: -1, never sampled
        np.testing.assert_array_equal(labels[i][pv[i]], ref_labels[i])
    assert (labels[~pv] == -1).all() and not sampled[~pv].any()
    # the sample's counts are the sampler's formula, per image
    want_pos = np.minimum((labels >= 1).sum(-1), 6)
    np.testing.assert_array_equal((sampled & (labels >= 1)).sum(-1), want_pos)
    np.testing.assert_array_equal((sampled & (labels == 0)).sum(-1),
                                  np.minimum((labels == 0).sum(-1), 24 - want_pos))
    assert (want_pos > 0).any() and ((labels >= 1).sum(-1) > 6).any()  # a real test
    np.testing.assert_allclose(float(out["classification"]), cls, rtol=1e-9)
    np.testing.assert_allclose(float(out["box_regression"]), box, rtol=1e-9)
    np.testing.assert_allclose(float(out["total"]), cls + box, rtol=1e-9)
    assert float(out["num_sampled"]) == n_s and float(out["num_foreground"]) == n_fg
    # the same sample passed in gives the same losses (on JAX a drawn sample is summed
    # over its gathered rows, a given one over the mask: equal up to the summation order)
    again = rcnn_head_loss(*args, gt_valid=asarray(xp, gv), proposal_valid=asarray(xp, pv),
                           sample=out["sampled"], **kw)
    np.testing.assert_allclose(float(again["total"]), float(out["total"]), rtol=1e-13)


def test_jax_jit_grad_equals_torchvision_transcription():
    jax = require("jax")
    import jax.numpy as jnp

    logits, deltas, boxes, gts, gl, gv, pv = _problem(seed=4)

    @jax.jit
    def f(x, d, key):
        out = rcnn_head_loss(x, d, jnp.asarray(boxes), jnp.asarray(gts), jnp.asarray(gl),
                             gt_valid=jnp.asarray(gv), proposal_valid=jnp.asarray(pv),
                             rng=key, num_samples=24)
        return out["total"], out

    (total, out), grads = jax.value_and_grad(f, argnums=(0, 1), has_aux=True)(
        jnp.asarray(logits), jnp.asarray(deltas), jax.random.key(1))
    # the default loss is the softmax focal loss (α None, γ 2)
    cls, box, _, gx, gd, _, _ = _torchvision_reference(
        logits, deltas, boxes, gts, gl, gv, pv, np.asarray(out["sampled"]),
        loss="softmax_focal")
    np.testing.assert_allclose(float(total), cls + box, rtol=1e-9)
    np.testing.assert_allclose(np.asarray(grads[0]), gx, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(np.asarray(grads[1]), gd, rtol=1e-7, atol=1e-12)


def test_torch_compile_fullgraph_with_keys_drawn_in_the_graph():
    """torch.compile(fullgraph=True) of the whole head loss: a torch.Generator cannot be
    traced, keys from torch.rand can; the sample, loss and gradient equal eager's."""
    torch = require("torch")
    torch._dynamo.reset()
    logits, deltas, boxes, gts, gl, gv, pv = _problem(seed=6)
    consts = [torch.tensor(a) for a in (boxes, gts, gl, gv, pv)]

    def f(x, d, keys):
        out = rcnn_head_loss(x, d, consts[0], consts[1], consts[2], gt_valid=consts[3],
                             proposal_valid=consts[4], rng=keys, num_samples=24)
        return out["total"], out["sampled"]

    keys = torch.rand(boxes.shape[:2], dtype=torch.float64,
                      generator=torch.Generator().manual_seed(0))
    xe, xc = (torch.tensor(logits, requires_grad=True) for _ in range(2))
    total, sampled = f(xe, torch.tensor(deltas), keys)
    total.backward()
    total_c, sampled_c = torch.compile(f, fullgraph=True)(xc, torch.tensor(deltas), keys)
    total_c.backward()
    assert torch.equal(sampled_c, sampled)
    np.testing.assert_allclose(float(total_c.detach()), float(total.detach()), rtol=1e-12)
    np.testing.assert_allclose(xc.grad.numpy(), xe.grad.numpy(), rtol=1e-9, atol=1e-15)

def test_torch_autograd_equals_torchvision_transcription():
    torch = require("torch")
    logits, deltas, boxes, gts, gl, gv, pv = _problem(seed=5)
    x = torch.tensor(logits, requires_grad=True)
    d = torch.tensor(deltas.reshape(*deltas.shape[:2], C + 1, 4), requires_grad=True)
    out = rcnn_head_loss(x, d, torch.tensor(boxes), torch.tensor(gts), torch.tensor(gl),
                         gt_valid=torch.tensor(gv), proposal_valid=torch.tensor(pv),
                         rng=torch.rand(boxes.shape[:2], dtype=torch.float64),
                         num_samples=24, loss="ce")
    out["total"].backward()
    cls, box, _, gx, gd, _, _ = _torchvision_reference(
        logits, deltas, boxes, gts, gl, gv, pv, out["sampled"].numpy())
    np.testing.assert_allclose(float(out["total"].detach()), cls + box, rtol=1e-9)
    np.testing.assert_allclose(x.grad.numpy(), gx, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(d.grad.numpy().reshape(gd.shape), gd, rtol=1e-7, atol=1e-12)


def test_box_delta_layouts():
    """(B, N, (C+1)·4), (B, N, C+1, 4) and class-agnostic (B, N, 4) deltas: the same loss
    where they hold the same numbers for each proposal's class."""
    logits, deltas, boxes, gts, gl, gv, pv = _problem(seed=2)
    kw = {"gt_valid": gv, "proposal_valid": pv, "num_samples": 24}
    flat = rcnn_head_loss(logits, deltas, boxes, gts, gl, rng=np.random.default_rng(0), **kw)
    four = rcnn_head_loss(logits, deltas.reshape(*deltas.shape[:2], C + 1, 4), boxes, gts, gl,
                          sample=flat["sampled"], **kw)
    assert float(four["box_regression"]) == float(flat["box_regression"]) > 0
    agnostic = deltas[..., :4]
    tiled = np.tile(agnostic, (1, 1, C + 1))
    a = rcnn_head_loss(logits, agnostic, boxes, gts, gl, sample=flat["sampled"], **kw)
    b = rcnn_head_loss(logits, tiled, boxes, gts, gl, sample=flat["sampled"], **kw)
    assert float(a["box_regression"]) == float(b["box_regression"]) > 0
    # float32 proposals with float64 gts: the gts are matched in float32, as torchvision
    b32 = rcnn_head_loss(logits, deltas, boxes.astype(np.float32), gts, gl,
                         sample=flat["sampled"], **kw)
    np.testing.assert_array_equal(b32["labels"], flat["labels"])


def test_padding_empty_samples_and_half_precision(xp):
    """Padded gts are appended but never sampled; no valid proposal at all gives zero
    losses (torchvision: NaN); half-precision logits are computed in float32."""
    props = np.array([[[0., 0., 10., 10.], [50., 50., 60., 60.]]] * 2)
    gts = np.array([[[0., 0., 10., 10.], [np.nan] * 4]] * 2)
    gv = np.array([[True, False], [False, False]])
    boxes, pv = append_gt_proposals(asarray(xp, props), asarray(xp, gts),
                                    gt_valid=asarray(xp, gv))
    assert to_numpy(pv).tolist() == [[True, True, True, False], [True, True, False, False]]
    np.testing.assert_array_equal(to_numpy(boxes)[:, 2:], [[[0, 0, 10, 10], [0, 0, 0, 0]],
                                                           [[0, 0, 0, 0], [0, 0, 0, 0]]])
    half = "float16" if hasattr(xp, "float16") else "float32"  # array_api_strict: none
    logits = asarray(xp, np.zeros((2, 4, 3)), dtype=half)
    deltas = asarray(xp, np.zeros((2, 4, 4)), dtype=half)  # class-agnostic
    out = rcnn_head_loss(logits, deltas, boxes, asarray(xp, gts), asarray(xp, np.zeros(
        (2, 2), dtype=np.int64)), gt_valid=asarray(xp, gv), proposal_valid=pv,
        rng=_rng(xp, 0))
    assert out["total"].dtype == xp.float32
    assert to_numpy(out["labels"]).tolist() == [[1, 0, 1, -1], [0, 0, -1, -1]]
    assert to_numpy(out["sampled"]).tolist() == [[True, True, True, False],
                                                 [True, True, False, False]]
    none = rcnn_head_loss(logits, deltas, boxes, asarray(xp, gts), asarray(xp, np.zeros(
        (2, 2), dtype=np.int64)), gt_valid=asarray(xp, gv),
        proposal_valid=asarray(xp, np.zeros((2, 4), dtype=bool)), rng=_rng(xp, 0))
    assert float(none["total"]) == 0.0 and float(none["num_sampled"]) == 0.0
    with pytest.raises(TypeError, match="rng="):
        rcnn_head_loss(logits, deltas, boxes, asarray(xp, gts),
                       asarray(xp, np.zeros((2, 2), dtype=np.int64)))
    with pytest.raises(ValueError, match="box_deltas"):
        rcnn_head_loss(logits, asarray(xp, np.zeros((2, 4, 8))), boxes, asarray(xp, gts),
                       asarray(xp, np.zeros((2, 2), dtype=np.int64)), rng=_rng(xp, 0))


def _tie_problem(seed=5, b=2, p=400, g=6):
    """Integer-grid boxes: duplicate gts (equal IoUs, ties to the first), proposals at IoU
    exactly 0.5, float32, a padded (NaN) gt and invalid proposals."""
    r = np.random.default_rng(seed)
    xy = r.integers(0, 40, size=(b, g, 2)).astype(np.float32)
    gts = np.concatenate([xy, xy + r.integers(4, 20, size=(b, g, 2))], -1).astype(np.float32)
    gts[:, 3] = gts[:, 1]  # a duplicate of gt 1: every tie goes to gt 1
    gts[0, 2] = [0, 0, 10, 10]
    valid = np.ones((b, g), dtype=bool)
    valid[1, 4] = False
    gts[1, 4] = np.nan
    pxy = r.integers(0, 50, size=(b, p, 2))
    props = np.concatenate([pxy, pxy + r.integers(2, 22, size=(b, p, 2))], -1)
    props = props.astype(np.float32)
    props[0, :2] = [[0, 0, 10, 20], [0, 0, 5, 10]]  # IoU exactly 0.5 with gt 2
    pvalid = np.ones((b, p), dtype=bool)
    pvalid[1, -3:] = False
    labels = r.integers(0, C, size=(b, g))
    return props, gts, labels, valid, pvalid


def test_matching_equals_assign_targets(xp):
    """The R-CNN path's own matching (max and first maximum over the matcher's gt-major
    IoU) gives assign_targets(high=0.5, low=0.5, no low-quality matches)' labels and box
    targets exactly, eager and (JAX) jitted, at IoU ties and exactly at the threshold."""
    from focal_array.matcher import BACKGROUND, assign_targets
    from focal_array.rcnn import _match_proposals

    props, gts, gl, gv, pv = (asarray(xp, a) for a in _tie_problem())
    ref_labels, ref_targets, ref_matched = assign_targets(
        props, gts, gl, gt_valid=gv, high=0.5, low=0.5, allow_low_quality_matches=False,
        weights=WEIGHTS)
    ref_labels, ref_matched = to_numpy(ref_labels), to_numpy(ref_matched)
    want = np.where(ref_matched >= 0, ref_labels + 1,
                    np.where(ref_matched == BACKGROUND, 0, -1))
    want = np.where(to_numpy(pv), want, -1)
    assert (ref_matched == 1).any() and not (ref_matched == 3).any()  # ties to the first
    assert want[0, 0] == want[0, 1] == to_numpy(gl)[0, 2] + 1  # IoU exactly 0.5: foreground

    def ours(*a):
        return _match_proposals(*a, high=0.5, low=0.5, weights=WEIGHTS, num_classes=C,
                                xp=xp)

    runs = [ours(props, gts, gl, gv, pv)]
    if library(xp) == "jax":
        import jax

        runs.append(jax.jit(ours)(props, gts, gl, gv, pv))
    for labels, targets in runs:
        np.testing.assert_array_equal(to_numpy(labels), want)
        np.testing.assert_array_equal(to_numpy(targets), to_numpy(ref_targets))


def test_jax_gathered_rows_equal_mask_sums():
    """On JAX a drawn sample's losses are summed over its gathered rows: the same values
    (to rounding) and gradients as the mask sums of the same sample passed in, for
    class-specific and class-agnostic deltas and both losses."""
    jax = require("jax")
    import jax.numpy as jnp

    logits, deltas, boxes, gts, gl, gv, pv = (jnp.asarray(a) for a in _problem(seed=4, p=60))
    # (B, N, C + 1, 4) deltas take the flat layout's gather (test_box_delta_layouts)
    cases = (("ce", deltas), ("softmax_focal", deltas[..., :4]))
    for loss, d in cases:
        kw = {"gt_valid": gv, "proposal_valid": pv, "num_samples": 16, "loss": loss}

        def both(x, d, key, kw=kw):
            def drawn(x, d):
                out = rcnn_head_loss(x, d, boxes, gts, gl, rng=key, **kw)
                return out["total"], out

            (value, out), grads = jax.value_and_grad(drawn, argnums=(0, 1), has_aux=True)(x, d)
            again, grads_again = jax.value_and_grad(
                lambda x, d: rcnn_head_loss(x, d, boxes, gts, gl, sample=out["sampled"],
                                            **kw)["total"], argnums=(0, 1))(x, d)
            return value, again, grads, grads_again, out["num_foreground"]

        value, again, grads, grads_again, n_fg = jax.jit(both)(logits, d, jax.random.key(1))
        assert float(n_fg) > 0
        np.testing.assert_allclose(float(again), float(value), rtol=1e-13)
        for a, b in zip(grads, grads_again, strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-15)


def test_sample_equal_keys_take_lowest_indices(xp):
    """Equal keys (here all of them) are ordered by index: exact counts, the lowest indices
    of each category (on JAX the running count of the ties runs only in this case)."""
    labels = np.array([[0, 2, 0, 1, -1, 0, 3, 0, 1, 0], [1, 1, 0, 0, 0, 2, 0, -1, 0, 0]])
    keys = np.full(labels.shape, 0.5)
    got = to_numpy(sample_balanced(asarray(xp, labels), rng=asarray(xp, keys), num_samples=4,
                                   positive_fraction=0.5))
    want = np.zeros(labels.shape, dtype=bool)
    want[0, [0, 1, 2, 3]] = True
    want[1, [0, 1, 2, 3]] = True
    np.testing.assert_array_equal(got, want)
    # one tie only in image 1 (its two smallest background keys): still exact
    keys = np.linspace(0.05, 0.95, labels.size).reshape(labels.shape)
    keys[1, [2, 3]] = 0.01
    got = to_numpy(sample_balanced(asarray(xp, labels), rng=asarray(xp, keys), num_samples=3,
                                   positive_fraction=0.0))
    assert got.sum(-1).tolist() == [3, 3] and not (got & (labels >= 1)).any()
    assert got[1, [2, 3, 4]].all() and got[0, [0, 2, 5]].all()
