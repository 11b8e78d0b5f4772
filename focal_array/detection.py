"""One-call dense-detection loss: matching, targets, classification and box losses.

:func:`dense_detection_loss` takes a padded batch — the head's outputs for every anchor
and the (padded) ground truth of every image — and does everything in between with
static shapes, so the whole call runs under ``jax.jit``/``jax.grad`` and
``torch.compile``. The sigmoid classification loss reads the logits once through a
boolean class mask: no ``(B, A, C)`` float target tensor is ever formed.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any

import array_api_compat

from . import _validate as v
from ._executors import evaluate
from ._formulas import SigmoidFocalLabels
from ._namespace import (
    compute_dtype,
    constant,
    device_of,
    is_jax,
    namespace,
    stop_gradient,
)
from .boxes import decode
from .losses import softmax_cross_entropy, softmax_focal_loss
from .matcher import IGNORE, assign_targets, hard_negative_mining

__all__ = ["BOX_LOSSES", "CLASSIFICATION_LOSSES", "NORMALIZATIONS", "dense_detection_loss"]

#: ``loss=`` choices: sigmoid focal, sigmoid BCE, softmax CE with hard negative mining,
#: softmax focal.
CLASSIFICATION_LOSSES = ("focal", "ce", "ce_hnm", "softmax_focal")
#: ``box_loss=`` choices.
BOX_LOSSES = ("smooth_l1", "l1", "giou")
#: ``normalize=`` string choices (a number or 0-d array is also accepted).
NORMALIZATIONS = ("positives", "assigned", "image")

Array = Any


def _check_head(xp: Any, cls_logits: Any, box_deltas: Any, anchors: Any, softmax: bool
                ) -> tuple[int, int, int]:
    v.check_floating(xp, cls_logits, "cls_logits")
    v.check_floating(xp, box_deltas, "box_deltas")
    v.check_floating(xp, anchors, "anchors")
    if cls_logits.ndim != 3:
        raise ValueError(f"cls_logits must have shape (B, A, C), got {tuple(cls_logits.shape)}")
    b, a, c = cls_logits.shape
    v.check_same_shape("(B, A, 4) from cls_logits", (b, a, 4), "box_deltas", box_deltas.shape)
    if tuple(anchors.shape) not in ((a, 4), (b, a, 4)):
        raise ValueError(
            f"anchors must have shape ({a}, 4) or ({b}, {a}, 4) to match cls_logits "
            f"{tuple(cls_logits.shape)}, got {tuple(anchors.shape)}"
        )
    if softmax and c < 2:
        raise ValueError("softmax losses need cls_logits with C + 1 >= 2 classes (index 0 = "
                         f"background), got {c}")
    return b, a, c


def _normalizer(normalize: Any, xp: Any) -> Any:
    if isinstance(normalize, str):
        return v.check_choice("normalize", normalize, NORMALIZATIONS)
    if array_api_compat.is_array_api_obj(normalize):
        if normalize.ndim != 0:
            raise ValueError("normalize as an array must be 0-d (a count), got shape "
                             f"{tuple(normalize.shape)}")
        v.eager_check([normalize], lambda: normalize < 0,
                      lambda: f"normalize must be >= 0, got {normalize!r}")
        return normalize
    if isinstance(normalize, numbers.Real) and not isinstance(normalize, bool):
        return v.check_number("normalize", normalize, low=0.0)
    raise TypeError(
        "normalize must be 'positives', 'assigned', 'image', a number or a 0-d array, got "
        f"{normalize!r}"
    )


def _count_reducer(count_reducer: Any, axis_name: Any, xp: Any
                   ) -> Callable[[Array], Array] | None:
    if count_reducer is not None and axis_name is not None:
        raise ValueError("give count_reducer or axis_name, not both")
    if count_reducer is not None:
        if not callable(count_reducer):
            raise TypeError(f"count_reducer must be callable, got {count_reducer!r}")
        return count_reducer
    if axis_name is None:
        return None
    if not is_jax(xp):
        raise ValueError("axis_name is for JAX arrays inside shard_map/pmap; for other "
                         "libraries pass count_reducer (e.g. a torch.distributed "
                         "all_reduce)")
    import jax

    return lambda n: jax.lax.psum(n, axis_name)


def _box_loss(kind: str, deltas: Array, targets: Array, anchors: Array, *, beta: float,
              weights: tuple[float, ...], xp: Any) -> Array:
    """Per-anchor box loss (B, A) before masking to positives."""
    if kind == "giou":
        pred = decode(anchors, deltas, weights=weights)
        gt = decode(anchors, targets, weights=weights)
        return 1.0 - _paired_giou(pred, gt, xp=xp)
    diff = xp.abs(deltas - targets)
    if kind == "l1" or beta == 0.0:
        return xp.sum(diff, axis=-1)
    quad = 0.5 * diff * diff / beta
    return xp.sum(xp.where(diff < constant(xp, beta, diff), quad, diff - 0.5 * beta), axis=-1)


def _paired_giou(a: Array, b: Array, *, xp: Any) -> Array:
    """GIoU of corresponding boxes (…, 4) × (…, 4) → (…); 0-area pairs give finite values."""
    zero = constant(xp, 0.0, a)
    one = constant(xp, 1.0, a)
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    iw = xp.maximum(xp.minimum(a[..., 2], b[..., 2]) - xp.maximum(a[..., 0], b[..., 0]), zero)
    ih = xp.maximum(xp.minimum(a[..., 3], b[..., 3]) - xp.maximum(a[..., 1], b[..., 1]), zero)
    inter = iw * ih
    union = area_a + area_b - inter
    cw = xp.maximum(a[..., 2], b[..., 2]) - xp.minimum(a[..., 0], b[..., 0])
    ch = xp.maximum(a[..., 3], b[..., 3]) - xp.minimum(a[..., 1], b[..., 1])
    hull = cw * ch
    # double where: the unused branch never divides by zero, so gradients stay finite
    ok_u = union > zero
    ok_h = hull > zero
    iou = xp.where(ok_u, inter / xp.where(ok_u, union, one), zero)
    return iou - xp.where(ok_h, (hull - union) / xp.where(ok_h, hull, one), zero)


def dense_detection_loss(cls_logits: Array, box_deltas: Array, anchors: Array,
                         gt_boxes: Array, gt_labels: Array, /, *, gt_valid: Array | None = None,
                         gt_crowd: Array | None = None, loss: str = "focal",
                         alpha: Any = 0.25, gamma: float = 2.0, box_loss: str = "smooth_l1",
                         beta: float = 0.1, box_weight: float = 1.0,
                         normalize: Any = "positives", high: float = 0.5, low: float = 0.4,
                         allow_low_quality_matches: bool = True, crowd_ioa: float = 0.5,
                         tie_tolerance: float = 0.0, tie_rule: str = "equal",
                         box_coder_weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
                         neg_pos_ratio: float = 3.0, min_negatives: int = 0,
                         count_reducer: Callable[[Array], Array] | None = None,
                         axis_name: Any = None
                         ) -> dict[str, Array]:
    r"""Classification + box-regression loss of a dense detector for a padded batch.

    Anchors are matched to each image's ground truth (:func:`~focal_array.matcher.
    assign_targets`: IoU ≥ ``high`` positive, < ``low`` background, in between and inside
    crowd regions ignored, low-quality matches optional). Then, with :math:`P` the
    positive anchors, :math:`N` the background anchors and :math:`\mathcal{Z}` the
    normalizer,

    .. math::

        L_\text{cls} = \frac{1}{\mathcal{Z}} \sum_{a \in P \cup N} \ell_\text{cls}(a), \qquad
        L_\text{box} = \frac{1}{\mathcal{Z}_\text{box}} \sum_{a \in P}
            \ell_\text{box}(\hat d_a, d_a), \qquad
        L = L_\text{cls} + \text{box\_weight} \cdot L_\text{box}

    Classification (``loss``):

    - ``"focal"`` — sigmoid focal loss over C classes (RetinaNet, FCOS): each anchor's
      C logits against its one-hot class (all zeros for background), α and γ as in
      :func:`~focal_array.sigmoid_focal_loss`.
    - ``"ce"`` — sigmoid binary cross-entropy over C classes (α-balanced unless
      ``alpha=None``).
    - ``"ce_hnm"`` — softmax cross-entropy over C + 1 classes (index 0 = background, gt
      label k → class k + 1) on the positives and, per image, the ``neg_pos_ratio`` ×
      positives highest-loss negatives (SSD); ``alpha`` balances as in
      :func:`~focal_array.softmax_cross_entropy` (pass None for plain CE).
    - ``"softmax_focal"`` — softmax focal loss over C + 1 classes, all assigned anchors.

    Normalization (``normalize``), with counts summed over the batch:

    - ``"positives"`` (RetinaNet): both losses / max(|P|, 1);
    - ``"assigned"`` (the seed note): :math:`L_\text{cls}` / max(number of anchors in the
      classification loss, 1) — |P| + |N|, or |P| + mined negatives for ``"ce_hnm"`` —
      and :math:`L_\text{box}` / max(|P|, 1);
    - ``"image"`` (torchvision): per image, its sums / max(its |P|, 1), then the mean
      over images;
    - a number or 0-d array (an EMA, a count all-reduced across devices): both / max(it, 1).

    Several devices (data parallel). Each replica passes its own shard of the batch and a
    ``count_reducer`` that sums a 0-d count over all replicas (``axis_name="data"`` is
    short for ``lambda n: jax.lax.psum(n, "data")`` inside ``shard_map``/``pmap``; with
    ``torch.distributed``, an ``all_reduce`` of a detached copy). It is called on 0-d
    float counts only, in this order:

    - always, the number of positive anchors (the denominator of ``"positives"`` and of
      the box loss of ``"assigned"``, and the returned ``"num_positives"``);
    - ``"assigned"``: then the number of anchors in the classification loss;
    - ``"image"``: then the number of images (the per-image denominators stay per image;
      the mean over images becomes local sum / global image count);
    - a number or 0-d array: nothing else — it is used as given (pass a value that is
      already global, e.g. an EMA of the reduced count).

    The denominators then are global, so each replica's losses are its local sums over the
    global normalizer and their *sum* over replicas (``psum`` of the loss, or of its
    gradient) equals the single-device loss on the whole batch. Optimizers that *average*
    gradients over replicas (``torch.nn.parallel.DistributedDataParallel``, ``pmean``)
    want the mean count instead: ``lambda n: all_reduce_sum(n) / world_size``. The
    reduced count should carry no gradient (it is data; the library's counts never do).
    Under plain ``jax.jit`` with a sharded batch no reducer is needed: the sums are over
    the global batch already. Inside ``jax.shard_map`` the gradient with respect to
    replicated parameters comes back summed over the axis already (their implicit
    broadcast to every shard transposes to a ``psum``): ``psum`` only the loss value.

    Box regression (``box_loss``) compares predicted deltas with the encoded matched gt
    (:func:`~focal_array.boxes.encode`, ``box_coder_weights``): ``"smooth_l1"`` (Huber
    with ``beta``, summed over the 4 deltas), ``"l1"``, or ``"giou"`` (1 − GIoU of the
    decoded boxes).

    Args:
        cls_logits: ``(B, A, C)`` real floating — C classes for the sigmoid losses, C + 1
            (background first) for the softmax ones.
        box_deltas: ``(B, A, 4)`` predicted ``[dx, dy, dw, dh]``.
        anchors: ``(A, 4)`` shared or ``(B, A, 4)`` per-image ``xyxy`` anchors.
        gt_boxes: ``(B, G, 4)`` padded ``xyxy`` ground truth.
        gt_labels: ``(B, G)`` integer classes in [0, C) for real gts.
        gt_valid: ``(B, G)`` boolean, False for padding (default: all real).
        gt_crowd: ``(B, G)`` boolean ``iscrowd`` flags (default: none).
        loss, box_loss, normalize: as above.
        alpha, gamma: focal/balancing parameters of the classification loss.
        beta: smooth-L1 transition point (``>= 0``; 0 is L1).
        box_weight: weight of the box loss in ``"total"`` (``>= 0``).
        high, low, allow_low_quality_matches, crowd_ioa, tie_tolerance, tie_rule: matcher
            options (:func:`~focal_array.matcher.match_anchors`).
        box_coder_weights: ``(wx, wy, ww, wh)`` of the box coder.
        neg_pos_ratio, min_negatives: hard negative mining (``"ce_hnm"`` only).
        count_reducer: callable mapping a 0-d count array to its sum over all replicas
            (same library, dtype and shape), or None for a single replica.
        axis_name: JAX only — a mapped axis name (or tuple of names) of an enclosing
            ``shard_map``/``pmap``; means ``count_reducer=lambda n: jax.lax.psum(n,
            axis_name)``. Give at most one of the two.

    Returns:
        dict with 0-d arrays ``"classification"``, ``"box_regression"``, ``"total"``
        (float32 for half inputs, else the logits' dtype) and ``"num_positives"`` (the
        positive anchors of the batch — of all replicas when a reducer is given — as a
        float of that dtype). Gradients flow to ``cls_logits`` and ``box_deltas`` only.

    Example:
        >>> import numpy as np
        >>> from focal_array.detection import dense_detection_loss
        >>> anchors = np.array([[0., 0., 10., 10.], [5., 5., 15., 15.], [20., 20., 40., 40.]])
        >>> gt = np.array([[[0., 0., 10., 10.]]])
        >>> out = dense_detection_loss(np.zeros((1, 3, 2)), np.zeros((1, 3, 4)), anchors,
        ...                            gt, np.array([[1]]))
        >>> float(out["num_positives"])
        1.0

        Two replicas of one batch, simulated: each sees one image; the reducer sums the
        counts of both, so the two losses add up to the loss of the whole batch.

        >>> gt2 = np.array([[[0., 0., 10., 10.]], [[20., 20., 40., 40.]]])
        >>> lab2 = np.array([[1], [0]])
        >>> logits = np.linspace(-2.0, 2.0, 12).reshape(2, 3, 2)
        >>> whole = dense_detection_loss(logits, np.zeros((2, 3, 4)), anchors, gt2, lab2)
        >>> two = np.asarray(float(whole["num_positives"]))  # what the all-reduce returns
        >>> parts = [dense_detection_loss(logits[i:i + 1], np.zeros((1, 3, 4)), anchors,
        ...                               gt2[i:i + 1], lab2[i:i + 1],
        ...                               count_reducer=lambda n: two)["total"]
        ...          for i in range(2)]
        >>> bool(np.isclose(parts[0] + parts[1], whole["total"]))
        True

    References:
        Lin et al., *Focal Loss for Dense Object Detection*, ICCV 2017 (arXiv:1708.02002);
        Liu et al., *SSD: Single Shot MultiBox Detector*, ECCV 2016 (hard negative mining).
    """
    xp = namespace(cls_logits=cls_logits, box_deltas=box_deltas, anchors=anchors,
                   gt_boxes=gt_boxes, gt_labels=gt_labels, gt_valid=gt_valid,
                   gt_crowd=gt_crowd,
                   normalize=normalize if array_api_compat.is_array_api_obj(normalize)
                   else None)
    v.check_choice("loss", loss, CLASSIFICATION_LOSSES)
    v.check_choice("box_loss", box_loss, BOX_LOSSES)
    softmax = loss in ("ce_hnm", "softmax_focal")
    b, a, c = _check_head(xp, cls_logits, box_deltas, anchors, softmax)
    norm = _normalizer(normalize, xp)
    gamma = v.check_number("gamma", gamma, low=0.0)
    beta = v.check_number("beta", beta, low=0.0)
    box_weight = v.check_number("box_weight", box_weight, low=0.0)
    if alpha is not None and not softmax:
        alpha = v.check_number("alpha", alpha, low=0.0, high=1.0)
    if gt_boxes.ndim != 3 or gt_boxes.shape[0] != b:
        raise ValueError(f"gt_boxes must have shape ({b}, G, 4), got {tuple(gt_boxes.shape)}")
    num_fg = c - 1 if softmax else c
    reduce = _count_reducer(count_reducer, axis_name, xp)

    labels, box_targets, _ = assign_targets(
        stop_gradient(xp, anchors), gt_boxes, gt_labels, gt_valid=gt_valid,
        gt_crowd=gt_crowd, high=high, low=low,
        allow_low_quality_matches=allow_low_quality_matches, crowd_ioa=crowd_ioa,
        tie_tolerance=tie_tolerance, tie_rule=tie_rule, weights=box_coder_weights,
        num_classes=num_fg)

    dtype = compute_dtype(xp, cls_logits.dtype)
    x = xp.astype(cls_logits, dtype)
    zero = xp.asarray(0, dtype=labels.dtype, device=device_of(labels))
    positive = labels >= zero
    fzero = constant(xp, 0.0, x)

    if softmax:
        shifted = xp.where(labels == xp.asarray(IGNORE, dtype=labels.dtype,
                                                 device=device_of(labels)),
                           xp.asarray(-1, dtype=labels.dtype, device=device_of(labels)),
                           labels + 1)  # BACKGROUND → 0, IGNORE → −1 (ignored)
        if loss == "softmax_focal":
            per_anchor = softmax_focal_loss(x, shifted, alpha=alpha, gamma=gamma)
            counted = shifted >= zero
        else:
            per_anchor = softmax_cross_entropy(x, shifted, alpha=alpha)
            counted = hard_negative_mining(stop_gradient(xp, per_anchor), labels,
                                           neg_pos_ratio=neg_pos_ratio,
                                           min_negatives=min_negatives)
    else:
        g = gamma if loss == "focal" else 0.0
        # the one-hot targets are formed per element inside the formula, never as a tensor
        per_anchor = evaluate(SigmoidFocalLabels(alpha=alpha, gamma=g), x, labels, xp=xp,
                              axis=-1)
        counted = labels != xp.asarray(IGNORE, dtype=labels.dtype, device=device_of(labels))
    cls_per_image = xp.sum(xp.where(counted, per_anchor, fzero), axis=-1)

    deltas = xp.astype(box_deltas, dtype)
    targets = xp.astype(box_targets, dtype)
    anchors_c = xp.astype(stop_gradient(xp, anchors), dtype)
    anchors_b = xp.broadcast_to(anchors_c, (b, a, 4))
    box_per_anchor = _box_loss(box_loss, deltas, targets, anchors_b, beta=beta,
                               weights=tuple(float(w) for w in box_coder_weights), xp=xp)
    box_per_image = xp.sum(xp.where(positive, box_per_anchor, fzero), axis=-1)

    pos_per_image = xp.sum(xp.astype(positive, dtype), axis=-1)
    local_pos = xp.sum(pos_per_image)
    num_pos = local_pos if reduce is None else reduce(local_pos)
    one = constant(xp, 1.0, x)
    if norm == "image":
        denom = xp.maximum(pos_per_image, one)
        if reduce is None:
            cls_total = xp.mean(cls_per_image / denom)
            box_total = xp.mean(box_per_image / denom)
        else:
            # counted from the data (not a Python constant) so that it is a per-replica
            # value, which shard_map's psum requires
            images = reduce(xp.sum(xp.ones_like(pos_per_image)))
            cls_total = xp.sum(cls_per_image / denom) / images
            box_total = xp.sum(box_per_image / denom) / images
    else:
        if norm == "positives":
            cls_denom = box_denom = xp.maximum(num_pos, one)
        elif norm == "assigned":
            assigned = xp.sum(xp.astype(counted, dtype))
            if reduce is not None:
                assigned = reduce(assigned)
            cls_denom = xp.maximum(assigned, one)
            box_denom = xp.maximum(num_pos, one)
        else:
            value = norm if array_api_compat.is_array_api_obj(norm) else constant(xp, norm, x)
            cls_denom = box_denom = xp.maximum(xp.astype(value, dtype), one)
        cls_total = xp.sum(cls_per_image) / cls_denom
        box_total = xp.sum(box_per_image) / box_denom
    return {
        "classification": cls_total,
        "box_regression": box_total,
        "total": cls_total + box_weight * box_total,
        "num_positives": num_pos,
    }

