"""One-call dense-detection loss: assignment, targets, classification and box losses.

:func:`dense_detection_loss` takes a padded batch — the head's outputs for every anchor
and the (padded) ground truth of every image — and does everything in between with
static shapes, so the whole call runs under ``jax.jit``/``jax.grad`` and
``torch.compile``. Anchors are assigned by IoU (RetinaNet, SSD), FCOS's, ATSS's or the
task-aligned rule (TOOD, YOLOv8). With hard targets the sigmoid classification loss reads
the logits once through a boolean class mask: no ``(B, A, C)`` float target tensor is
ever formed.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import array_api_compat

from . import _validate as v
from ._detection_assign import ASSIGNERS, assign, check_assigner_options
from ._detection_boxes import (
    BOX_CODINGS,
    BOX_LOSSES,
    box_loss_per_anchor,
    decode_boxes,
    paired_iou,
)
from ._detection_checks import check_centerness_logits, check_head
from ._detection_checks import count_reducer as _reducer_from
from ._executors import evaluate
from ._formulas import SigmoidFocalLabels
from ._namespace import (
    compute_dtype,
    constant,
    device_of,
    namespace,
    stop_gradient,
)
from ._stable import one_hot_mask
from ._typing import (
    ArrayLike,
    ArrayT,
    Assigner,
    BoxCoding,
    BoxLoss,
    BoxWeighting,
    ClassificationLoss,
    DenseDetectionLoss,
    Integer,
    Normalization,
    Number,
    TieRule,
)
from .assigners import centerness_targets
from .box_coder import _check_weights
from .focal_variants import quality_focal_loss, varifocal_loss
from .losses import (
    binary_cross_entropy,
    sigmoid_focal_loss,
    softmax_cross_entropy,
    softmax_focal_loss,
)
from .matcher import IGNORE, hard_negative_mining

__all__ = ["ASSIGNERS", "BOX_CODINGS", "BOX_LOSSES", "BOX_WEIGHTINGS", "CLASSIFICATION_LOSSES",
           "NORMALIZATIONS", "DenseDetectionLoss", "dense_detection_loss"]

#: ``loss=`` choices: sigmoid focal, sigmoid BCE, softmax CE with hard negative mining,
#: softmax focal, quality focal (GFL, TOOD), varifocal (VarifocalNet).
CLASSIFICATION_LOSSES = ("focal", "ce", "ce_hnm", "softmax_focal", "quality_focal",
                         "varifocal")
#: ``normalize=`` string choices (a number or 0-d array is also accepted).
NORMALIZATIONS = ("positives", "assigned", "image", "target_scores")
#: ``box_weighting=`` choices.
BOX_WEIGHTINGS = ("uniform", "centerness", "target_scores")

_SOFTMAX = ("ce_hnm", "softmax_focal")
_SOFT_TARGET = ("quality_focal", "varifocal")

Array = Any


def _normalizer(normalize: Any, xp: Any) -> Any:
    if isinstance(normalize, str):
        return v.check_choice("normalize", normalize, NORMALIZATIONS)
    if v.is_array(normalize):
        if normalize.ndim != 0:
            raise ValueError("normalize as an array must be 0-d (a count), got shape "
                             f"{tuple(normalize.shape)}")
        v.eager_check([normalize], lambda: normalize < 0,
                      lambda: f"normalize must be >= 0, got {normalize!r}")
        return normalize
    if isinstance(normalize, numbers.Real) and not isinstance(normalize, bool):
        return v.check_number("normalize", normalize, low=0.0)
    raise TypeError(
        "normalize must be 'positives', 'assigned', 'image', 'target_scores', a number or a "
        "0-d array, got "
        f"{normalize!r}"
    )


def _defaults(assigner: str, normalize: Any, box_weighting: str | None) -> tuple[Any, str]:
    if normalize is None:
        normalize = "target_scores" if assigner == "task_aligned" else "positives"
    if box_weighting is None:
        return normalize, {"atss": "centerness", "task_aligned": "target_scores"}.get(
            assigner, "uniform")
    return normalize, v.check_choice("box_weighting", box_weighting, BOX_WEIGHTINGS)


def _soft_classification(loss: str, x: Array, soft: Array, *, alpha: Any, gamma: float
                         ) -> Array:
    """Per-anchor loss ``(B, A)`` against dense soft targets ``(B, A, C)``."""
    if loss == "focal":
        out = sigmoid_focal_loss(x, soft, alpha=alpha, gamma=gamma)
    elif loss == "ce":
        out = binary_cross_entropy(x, soft, alpha=alpha)
    elif loss == "quality_focal":
        out = quality_focal_loss(x, soft, beta=gamma)
    else:
        out = varifocal_loss(x, soft, alpha=alpha, gamma=gamma)
    return out


def dense_detection_loss(cls_logits: ArrayT, box_deltas: ArrayT, anchors: ArrayT,
                         gt_boxes: ArrayT, gt_labels: ArrayT, /, *,
                         gt_valid: ArrayT | None = None, gt_crowd: ArrayT | None = None,
                         loss: ClassificationLoss = "focal",
                         alpha: Number | Sequence[float] | ArrayLike | None = 0.25,
                         gamma: Number = 2.0, box_loss: BoxLoss = "smooth_l1",
                         beta: Number = 0.1, box_weight: Number = 1.0,
                         normalize: Normalization | Number | ArrayLike | None = None,
                         assigner: Assigner = "max_iou",
                         num_anchors_per_level: Sequence[int] | None = None,
                         assigner_options: Mapping[str, Any] | None = None,
                         box_coding: BoxCoding = "deltas",
                         box_weighting: BoxWeighting | None = None,
                         centerness_logits: ArrayT | None = None,
                         high: Number = 0.5, low: Number = 0.4,
                         allow_low_quality_matches: bool = True, crowd_ioa: Number = 0.5,
                         tie_tolerance: Number = 0.0, tie_rule: TieRule = "equal",
                         box_coder_weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
                         neg_pos_ratio: Number = 3.0, min_negatives: Integer = 0,
                         count_reducer: Callable[[ArrayT], ArrayT] | None = None,
                         axis_name: Hashable | None = None
                         ) -> DenseDetectionLoss[ArrayT]:
    r"""Classification + box-regression loss of a dense detector for a padded batch.

    Anchors are assigned to each image's ground truth (``assigner``), then, with :math:`P`
    the positive anchors, :math:`N` the background anchors, :math:`w_a` the box weight of
    a positive and :math:`\mathcal{Z}` the normalizer,

    .. math::

        L_\text{cls} = \frac{1}{\mathcal{Z}} \sum_{a \in P \cup N} \ell_\text{cls}(a), \qquad
        L_\text{box} = \frac{\sum_{a \in P} w_a\, \ell_\text{box}(\hat d_a, d_a)}
            {\max(\sum_{a \in P} w_a, 1)}, \qquad
        L = L_\text{cls} + \text{box\_weight} \cdot L_\text{box} + L_\text{ctr}

    Assignment (``assigner``; options of the assigner through ``assigner_options``):

    - ``"max_iou"`` (RetinaNet, SSD; default): :func:`~focal_array.matcher.assign_targets`
      — IoU ≥ ``high`` positive, < ``low`` background, in between and inside crowd regions
      ignored, low-quality matches optional (``high``, ``low``, ``allow_low_quality_matches``,
      ``crowd_ioa``, ``tie_tolerance``, ``tie_rule`` are its options and used by it only).
    - ``"fcos"``: :func:`~focal_array.assigners.fcos_assign` (``num_anchors_per_level``;
      option ``center_sampling_radius``).
    - ``"atss"``: :func:`~focal_array.assigners.atss_assign` (``num_anchors_per_level``;
      option ``topk``).
    - ``"task_aligned"`` (TOOD, YOLOv8): :func:`~focal_array.assigners.task_aligned_assign`
      on the head's own predictions, without gradient — scores ``σ(cls_logits)``, boxes
      decoded from ``box_deltas``, the anchors' centres as anchor points (shared ``(A, 4)``
      anchors); options ``topk``, ``alpha``, ``beta``, ``iou``, ``contested``,
      ``topk_from``, ``positive_only``, ``center_eps``, ``eps``. Its soft
      ``target_scores`` are the classification targets. Sigmoid losses only.

    Only ``"max_iou"`` has an ignore band and crowd regions (``gt_crowd``); the others
    assign every anchor to a gt or to the background.

    Classification (``loss``), hard targets (one-hot of the matched class) for the hard
    assigners, the target scores for ``"task_aligned"``:

    - ``"focal"`` — sigmoid focal loss over C classes (RetinaNet, FCOS), α and γ as in
      :func:`~focal_array.sigmoid_focal_loss` (soft targets: its soft-target form).
    - ``"ce"`` — sigmoid binary cross-entropy over C classes (α-balanced unless
      ``alpha=None``; YOLOv8's loss is ``loss="ce", alpha=None``).
    - ``"ce_hnm"`` — softmax cross-entropy over C + 1 classes (index 0 = background, gt
      label k → class k + 1) on the positives and, per image, the ``neg_pos_ratio`` ×
      positives highest-loss negatives (SSD); ``alpha`` balances as in
      :func:`~focal_array.softmax_cross_entropy` (pass None for plain CE).
    - ``"softmax_focal"`` — softmax focal loss over C + 1 classes, all assigned anchors.
    - ``"quality_focal"`` — :func:`~focal_array.quality_focal_loss` with β = ``gamma``
      (TOOD; GFL with a hard assigner) and ``"varifocal"`` —
      :func:`~focal_array.varifocal_loss` with ``alpha``, ``gamma`` (VarifocalNet: pass
      ``alpha=0.75``). With a hard assigner their target at the matched class is the IoU
      of the decoded predicted box with its gt (without gradient), as in GFL and
      VarifocalNet; with ``"task_aligned"``, the target scores.

    Box regression (``box_loss``) compares the predicted ``box_deltas`` with the matched
    gt encoded in ``box_coding``: ``"deltas"`` (Faster R-CNN ``[dx, dy, dw, dh]``,
    :func:`~focal_array.boxes.encode` with ``box_coder_weights``) or ``"ltrb"`` (distances
    from the anchor's centre to the gt's left, top, right, bottom sides over the anchor's
    width/height: torchvision FCOS's ``BoxLinearCoder(normalize_by_size=True)``; YOLOv8's
    distances in stride units with stride-sized anchors). ``"smooth_l1"`` (Huber with
    ``beta``, summed over the 4 numbers), ``"l1"``, ``"giou"`` (1 − GIoU of the decoded
    boxes) or ``"ciou"`` (1 − CIoU, YOLOv8's ``bbox_iou(..., CIoU=True)``: eps 1e-7, the
    aspect weight without gradient).

    Box weights (``box_weighting``; default by assigner): ``"uniform"`` (w = 1; max_iou,
    fcos — torchvision's FCOS), ``"centerness"`` (w = the FCOS centerness target of the
    anchor and its gt, :func:`~focal_array.assigners.centerness_targets`; atss —
    mmdetection's ATSSHead) or ``"target_scores"`` (w = the anchor's target score summed
    over classes; task_aligned — YOLOv8). The box loss is divided by the sum of its
    weights (the positive count when uniform) unless ``normalize`` is a number.

    Centerness branch: with ``centerness_logits`` ``(B, A)`` (FCOS, ATSS heads), the
    binary cross-entropy of each positive's logit against its centerness target is added,
    over the positives' count (torchvision FCOS and mmdetection's ATSSHead), returned as
    ``"centerness"`` and added to ``"total"``.

    Normalization (``normalize``; default ``"target_scores"`` for ``"task_aligned"``
    (YOLOv8, TOOD), ``"positives"`` otherwise), counts summed over the batch:

    - ``"positives"`` (RetinaNet, FCOS, ATSS): :math:`L_\text{cls}` / max(|P|, 1);
    - ``"assigned"`` (the source note's rule): :math:`L_\text{cls}` / max(anchors in the
      classification loss, 1) — |P| + |N|, or |P| + mined negatives for ``"ce_hnm"``;
    - ``"target_scores"`` (YOLOv8): :math:`L_\text{cls}` / max(sum of all target scores,
      1) — |P| with one-hot targets;
    - ``"image"`` (torchvision RetinaNet): per image, its sums / max(its |P|, 1) (its box
      weights' sum for the box loss), then the mean over images;
    - a number or 0-d array (an EMA, a count all-reduced across devices): every term /
      max(it, 1).

    Several devices (data parallel). Each replica passes its own shard of the batch and a
    ``count_reducer`` that sums a 0-d count over all replicas (``axis_name="data"`` is
    short for ``lambda n: jax.lax.psum(n, "data")`` inside ``shard_map``/``pmap``; with
    ``torch.distributed``, an ``all_reduce`` of a detached copy). It is called on 0-d
    float counts only, in this order:

    - always, the number of positive anchors (the denominator of ``"positives"``, of the
      centerness and of the unweighted box loss, and the returned ``"num_positives"``);
    - ``"assigned"``: then the number of anchors in the classification loss;
      ``"image"``: the number of images (the per-image denominators stay per image; the
      mean over images becomes local sum / global image count); ``"target_scores"``: the
      sum of the target scores;
    - then, with a non-uniform ``box_weighting`` and ``normalize`` not ``"image"`` or a
      number, the sum of the box weights;
    - a number or 0-d array ``normalize``: nothing after the first — it is used as given
      (pass a value that is already global, e.g. an EMA of the reduced count).

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

    Args:
        cls_logits: ``(B, A, C)`` real floating — C classes for the sigmoid losses, C + 1
            (background first) for the softmax ones.
        box_deltas: ``(B, A, 4)`` predicted box codes in ``box_coding``.
        anchors: ``(A, 4)`` shared or ``(B, A, 4)`` per-image ``xyxy`` anchors (for
            ``"fcos"``, one stride-sized square per location; level-major for ``"fcos"``
            and ``"atss"``).
        gt_boxes: ``(B, G, 4)`` padded ``xyxy`` ground truth.
        gt_labels: ``(B, G)`` integer classes in [0, C) for real gts.
        gt_valid: ``(B, G)`` boolean, False for padding (default: all real).
        gt_crowd: ``(B, G)`` boolean ``iscrowd`` flags (default: none; max_iou only).
        loss, box_loss, normalize, assigner, box_coding, box_weighting: as above.
        alpha, gamma: focal/balancing parameters of the classification loss.
        beta: smooth-L1 transition point (``>= 0``; 0 is L1).
        box_weight: weight of the box loss in ``"total"`` (``>= 0``).
        num_anchors_per_level: static anchors per pyramid level, in anchor order
            (``"fcos"`` and ``"atss"`` only; required there).
        assigner_options: keyword options of the assigner (see above), e.g.
            ``{"topk": 10, "alpha": 0.5, "iou": "ciou"}``.
        centerness_logits: optional ``(B, A)`` centerness logits of the head.
        high, low, allow_low_quality_matches, crowd_ioa, tie_tolerance, tie_rule: matcher
            options of ``"max_iou"`` (:func:`~focal_array.matcher.match_anchors`).
        box_coder_weights: ``(wx, wy, ww, wh)`` of the ``"deltas"`` coding (mmdetection's
            stds (0.1, 0.1, 0.2, 0.2) are weights (10, 10, 5, 5)); ``"ltrb"`` has none.
        neg_pos_ratio, min_negatives: hard negative mining (``"ce_hnm"`` only).
        count_reducer: callable mapping a 0-d count array to its sum over all replicas
            (same library, dtype and shape), or None for a single replica.
        axis_name: JAX only — a mapped axis name (or tuple of names) of an enclosing
            ``shard_map``/``pmap``; means ``count_reducer=lambda n: jax.lax.psum(n,
            axis_name)``. Give at most one of the two.

    Returns:
        dict with 0-d arrays ``"classification"``, ``"box_regression"``, ``"total"``
        (float32 for half inputs, else the logits' dtype), ``"num_positives"`` (the
        positive anchors of the batch — of all replicas when a reducer is given — as a
        float of that dtype) and, with ``centerness_logits``, ``"centerness"``. Gradients
        flow to ``cls_logits``, ``box_deltas`` and ``centerness_logits`` only.

    Example:
        >>> import numpy as np
        >>> from focal_array.detection import dense_detection_loss
        >>> anchors = np.array([[0., 0., 10., 10.], [5., 5., 15., 15.], [20., 20., 40., 40.]])
        >>> gt = np.array([[[0., 0., 10., 10.]]])
        >>> out = dense_detection_loss(np.zeros((1, 3, 2)), np.zeros((1, 3, 4)), anchors,
        ...                            gt, np.array([[1]]))
        >>> float(out["num_positives"])
        1.0

        FCOS as torchvision trains it (one 8-px location per cell of a 16 × 16 image, one
        level): locations whose centre is near the gt's centre are positive.

        >>> ys, xs = np.meshgrid(np.arange(0., 16., 8.), np.arange(0., 16., 8.),
        ...                      indexing="ij")
        >>> cells = np.stack([xs, ys, xs + 8, ys + 8], -1).reshape(-1, 4)
        >>> out = dense_detection_loss(np.zeros((1, 4, 2)), np.zeros((1, 4, 4)), cells,
        ...                            np.array([[[2., 2., 14., 14.]]]), np.array([[0]]),
        ...                            assigner="fcos", num_anchors_per_level=[4],
        ...                            box_coding="ltrb", box_loss="giou",
        ...                            centerness_logits=np.zeros((1, 4)))
        >>> float(out["num_positives"]), sorted(out)[:2]
        (4.0, ['box_regression', 'centerness'])

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
        Liu et al., *SSD: Single Shot MultiBox Detector*, ECCV 2016 (hard negative mining);
        Tian et al., *FCOS*, ICCV 2019 (arXiv:1904.01355); Zhang et al., *ATSS*, CVPR 2020
        (arXiv:1912.02424); Feng et al., *TOOD*, ICCV 2021 (arXiv:2108.07755).
    """
    xp = namespace(cls_logits=cls_logits, box_deltas=box_deltas, anchors=anchors,
                   gt_boxes=gt_boxes, gt_labels=gt_labels, gt_valid=gt_valid,
                   gt_crowd=gt_crowd, centerness_logits=centerness_logits,
                   normalize=normalize if array_api_compat.is_array_api_obj(normalize)
                   else None)
    v.check_choice("loss", loss, CLASSIFICATION_LOSSES)
    v.check_choice("box_loss", box_loss, BOX_LOSSES)
    v.check_choice("assigner", assigner, ASSIGNERS)
    v.check_choice("box_coding", box_coding, BOX_CODINGS)
    softmax = loss in _SOFTMAX
    if softmax and assigner == "task_aligned":
        raise ValueError(f"loss={loss!r} is a softmax loss over hard labels; "
                         "assigner='task_aligned' gives soft per-class target scores: use "
                         "'ce' (YOLOv8), 'focal', 'quality_focal' (TOOD) or 'varifocal'")
    b, a, c = check_head(xp, cls_logits, box_deltas, anchors, softmax)
    check_centerness_logits(xp, centerness_logits, b, a)
    normalize, weighting = _defaults(assigner, normalize, box_weighting)
    norm = _normalizer(normalize, xp)
    options = check_assigner_options(assigner, assigner_options, num_anchors_per_level)
    gamma = v.check_number("gamma", gamma, low=0.0)
    beta = v.check_number("beta", beta, low=0.0)
    box_weight = v.check_number("box_weight", box_weight, low=0.0)
    cls_alpha: Any = alpha  # checked here for the sigmoid losses, by the softmax losses
    if alpha is not None and not softmax:
        cls_alpha = v.check_number("alpha", alpha, low=0.0, high=1.0)
    coder_weights = _check_weights(box_coder_weights)
    if box_coding == "ltrb" and coder_weights != (1.0, 1.0, 1.0, 1.0):
        raise ValueError("box_coder_weights are weights of the 'deltas' coding; "
                         f"box_coding='ltrb' has none, got {tuple(box_coder_weights)!r}")
    if gt_boxes.ndim != 3 or gt_boxes.shape[0] != b:
        raise ValueError(f"gt_boxes must have shape ({b}, G, 4), got {tuple(gt_boxes.shape)}")
    num_fg = c - 1 if softmax else c
    reduce = _reducer_from(count_reducer, axis_name, xp)

    dtype = compute_dtype(xp, cls_logits.dtype)
    x = xp.astype(cls_logits, dtype)
    deltas = xp.astype(box_deltas, dtype)
    targets = assign(
        assigner, anchors=stop_gradient(xp, anchors), gt_boxes=gt_boxes, gt_labels=gt_labels,
        gt_valid=gt_valid, gt_crowd=gt_crowd, logits=x, box_codes=deltas, coding=box_coding,
        coder_weights=coder_weights, num_classes=num_fg, options=options,
        levels=num_anchors_per_level, xp=xp,
        match_options={"high": high, "low": low, "crowd_ioa": crowd_ioa,
                       "allow_low_quality_matches": allow_low_quality_matches,
                       "tie_tolerance": tie_tolerance, "tie_rule": tie_rule})
    labels, positive = targets.labels, targets.positive
    anchors_c = xp.astype(stop_gradient(xp, anchors), dtype)
    anchors_b = xp.broadcast_to(anchors_c, (b, a, 4))
    boxes = xp.astype(targets.boxes, dtype)
    fzero = constant(xp, 0.0, x)
    ignore = labels == xp.asarray(IGNORE, dtype=labels.dtype, device=device_of(labels))
    pos_f = xp.astype(positive, dtype)

    if targets.soft is not None or loss in _SOFT_TARGET:
        if targets.soft is not None:
            soft = xp.astype(targets.soft, dtype)
        else:  # GFL / VarifocalNet: the IoU of the predicted box at the matched class
            pred = decode_boxes(box_coding, anchors_b, stop_gradient(xp, deltas),
                                weights=coder_weights, xp=xp)
            iou = xp.where(positive, paired_iou(pred, boxes, xp=xp), fzero)
            soft = xp.where(one_hot_mask(labels, c, xp=xp), iou[..., None], fzero)
        per_anchor = xp.sum(_soft_classification(loss, x, soft, alpha=cls_alpha, gamma=gamma),
                            axis=-1)
        counted = ~ignore
        score_sum = xp.sum(soft, axis=-1)
    elif softmax:
        shifted = xp.where(ignore, xp.asarray(-1, dtype=labels.dtype,
                                              device=device_of(labels)),
                           labels + 1)  # BACKGROUND → 0, IGNORE → −1 (ignored)
        if loss == "softmax_focal":
            per_anchor = softmax_focal_loss(x, shifted, alpha=cls_alpha, gamma=gamma)
            counted = ~ignore
        else:
            per_anchor = softmax_cross_entropy(x, shifted, alpha=cls_alpha)
            counted = hard_negative_mining(stop_gradient(xp, per_anchor), labels,
                                           neg_pos_ratio=neg_pos_ratio,
                                           min_negatives=min_negatives)
        score_sum = pos_f
    else:
        g = gamma if loss == "focal" else 0.0
        # the one-hot targets are formed per element inside the formula, never as a tensor
        per_anchor = evaluate(SigmoidFocalLabels(alpha=cls_alpha, gamma=g), x, labels, xp=xp,
                              axis=-1)
        counted = ~ignore
        score_sum = pos_f
    cls_per_image = xp.sum(xp.where(counted, per_anchor, fzero), axis=-1)

    ctr = None
    if weighting == "centerness" or centerness_logits is not None:
        ctr = xp.astype(centerness_targets(anchors_c, boxes, matched=targets.matched), dtype)
    box_targets = xp.astype(targets.box_targets, dtype)
    box_per_anchor = box_loss_per_anchor(box_loss, box_coding, deltas, box_targets, anchors_b,
                                         beta=beta, weights=coder_weights, xp=xp)
    w = {"uniform": None, "centerness": ctr, "target_scores": score_sum}[weighting]
    if w is not None:
        box_per_anchor = w * box_per_anchor
    box_per_image = xp.sum(xp.where(positive, box_per_anchor, fzero), axis=-1)
    ctr_per_image = None
    if centerness_logits is not None:
        assert ctr is not None  # computed above whenever centerness_logits is given
        ctr_loss = binary_cross_entropy(xp.astype(centerness_logits, dtype), ctr)
        ctr_per_image = xp.sum(xp.where(positive, ctr_loss, fzero), axis=-1)

    pos_per_image = xp.sum(pos_f, axis=-1)
    local_pos = xp.sum(pos_per_image)
    num_pos = local_pos if reduce is None else reduce(local_pos)
    bw_per_image = pos_per_image if w is None else xp.sum(xp.where(positive, w, fzero), axis=-1)
    one = constant(xp, 1.0, x)
    if norm == "image":
        denom = xp.maximum(pos_per_image, one)
        terms = [cls_per_image / denom, box_per_image / xp.maximum(bw_per_image, one)]
        if ctr_per_image is not None:
            terms.append(ctr_per_image / denom)
        if reduce is None:
            totals = [xp.mean(t) for t in terms]
        else:
            # counted from the data (not a Python constant) so that it is a per-replica
            # value, which shard_map's psum requires
            images = reduce(xp.sum(xp.ones_like(pos_per_image)))
            totals = [xp.sum(t) / images for t in terms]
    else:
        pos_denom = xp.maximum(num_pos, one)
        if isinstance(norm, str):
            cls_denom = pos_denom
            if norm in ("assigned", "target_scores"):
                count = xp.sum(xp.astype(counted, dtype)) if norm == "assigned" else xp.sum(
                    xp.where(counted, score_sum, fzero))
                cls_denom = xp.maximum(count if reduce is None else reduce(count), one)
            box_denom = ctr_denom = pos_denom
            if w is not None:
                total_w = xp.sum(bw_per_image)
                box_denom = xp.maximum(total_w if reduce is None else reduce(total_w), one)
        else:
            value = norm if array_api_compat.is_array_api_obj(norm) else constant(xp, norm, x)
            cls_denom = box_denom = ctr_denom = xp.maximum(xp.astype(value, dtype), one)
        totals = [xp.sum(cls_per_image) / cls_denom, xp.sum(box_per_image) / box_denom]
        if ctr_per_image is not None:
            totals.append(xp.sum(ctr_per_image) / ctr_denom)
    total = totals[0] + box_weight * totals[1]
    if ctr_per_image is None:
        return {"classification": totals[0], "box_regression": totals[1], "total": total,
                "num_positives": num_pos}
    total = total + totals[2]
    return {"classification": totals[0], "box_regression": totals[1],
            "centerness": totals[2], "total": total, "num_positives": num_pos}
