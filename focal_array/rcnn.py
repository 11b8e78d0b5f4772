r"""The Faster R-CNN box head's training targets and loss, static-shaped and jittable.

torchvision's ``RoIHeads`` (``select_training_samples`` + ``fastrcnn_loss``) in three
public steps, each with static shapes only, so the whole path runs under ``jax.jit``
/ ``jax.grad`` and on NumPy and PyTorch alike:

1. :func:`append_gt_proposals` — append each image's ground-truth boxes to its proposals
   (as torchvision's ``add_gt_proposals``), with a validity mask for padding. The head
   must score every box it is trained on, so **the caller runs the box head on the
   returned boxes** and passes those boxes, their logits and deltas and the mask on.
2. :func:`sample_balanced` — a random, class-balanced subset of foreground and background
   proposals (torchvision's ``BalancedPositiveNegativeSampler``), as a boolean mask of the
   labels' shape (and optionally fixed-length indices).
3. :func:`rcnn_head_loss` — match the proposals to the gts by IoU (``Matcher(0.5, 0.5,
   allow_low_quality_matches=False)``), sample, and compute the classification loss
   (softmax cross-entropy as ``fastrcnn_loss``, or softmax focal loss) and the class-
   specific smooth-L1 box loss with ``fastrcnn_loss``'s normalization. The sample enters
   the sums as a mask (on JAX, a drawn sample as a fixed-size gather of at most
   ``num_samples`` rows per image): nothing is gathered to a data-dependent size.
   Matching needs no low-quality matches and no crowds, so it is the matcher's own IoU
   (the same floats as :func:`~focal_array.matcher.assign_targets`, hence the same
   labels), its maximum and first maximum over the gts.

Because the sample is a mask over all ``N`` proposals, the head scores all of them (about
4x torchvision's 512 sampled boxes per image with 2,000 proposals); the loss itself is
only summed over the sampled ones.

References:
    Ren, He, Girshick, Sun. *Faster R-CNN: Towards Real-Time Object Detection with Region
    Proposal Networks*. NeurIPS 2015, arXiv:1506.01497.
    Lin, Goyal, Girshick, He, Dollár. *Focal Loss for Dense Object Detection*. ICCV 2017,
    arXiv:1708.02002.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, NamedTuple, overload

from . import _validate as v
from ._matching import _check_mask
from ._namespace import constant, device_of, namespace, stop_gradient
from ._rcnn_sampling import check_count, draw_keys, max_positives, resolve_rng, run_sample
from ._rcnn_targets import _check_head, _head_losses, _match_proposals
from ._typing import ArrayLike, ArrayT, Integer, Number, RcnnLoss
from .box_coder import _check_weights

__all__ = [
    "RCNN_LOSSES",
    "BalancedSample",
    "append_gt_proposals",
    "rcnn_head_loss",
    "sample_balanced",
]

#: ``loss=`` choices of :func:`rcnn_head_loss`: softmax cross-entropy (torchvision's
#: ``fastrcnn_loss``) and softmax focal loss, both over C + 1 classes.
RCNN_LOSSES = ("ce", "softmax_focal")

Array = Any


class BalancedSample(NamedTuple):
    """:func:`sample_balanced`'s result with ``return_indices=True``."""

    #: ``(..., N)`` boolean: True for the sampled proposals.
    mask: Array
    #: ``(..., num_samples)`` integer indices into the last axis of the labels: the sampled
    #: foreground first, then the sampled background, each in random order; 0 in the
    #: unused slots.
    indices: Array
    #: ``(..., num_samples)`` boolean: True for the slots that hold a sampled proposal.
    valid: Array


# --------------------------------------------------------------------------- append


def append_gt_proposals(proposals: ArrayT, gt_boxes: ArrayT, /, *,
                        gt_valid: ArrayT | None = None, proposal_valid: ArrayT | None = None
                        ) -> tuple[ArrayT, ArrayT]:
    """Append each image's ground-truth boxes to its proposals (torchvision's
    ``add_gt_proposals``), with the validity mask of the result.

    Faster R-CNN trains its box head on the RPN's proposals *and* the gt boxes themselves,
    so every gt is a foreground proposal (IoU 1 with itself) from the first iteration.
    Run the box head (RoI pooling + classifier/regressor) on the returned boxes and pass
    them, with the returned mask as ``proposal_valid``, to :func:`rcnn_head_loss`: padded
    gts (``gt_valid`` False) are appended as zero boxes marked invalid, and an invalid
    proposal is never matched, sampled or counted.

    Args:
        proposals: ``(..., P, 4)`` real floating ``xyxy`` proposals.
        gt_boxes: ``(..., G, 4)`` ``xyxy`` ground truths with the proposals' batch shape
            (converted to the proposals' dtype, as torchvision does).
        gt_valid: optional ``(..., G)`` boolean, False for padding (which may hold
            anything, NaN included: it becomes ``[0, 0, 0, 0]``).
        proposal_valid: optional ``(..., P)`` boolean, False for padded proposals.

    Returns:
        ``(boxes, valid)``: ``(..., P + G, 4)`` boxes in the proposals' dtype, the
        proposals first, then the gts in order; ``(..., P + G)`` boolean validity
        (``proposal_valid`` then ``gt_valid``; True where not given).

    Raises:
        ValueError: shapes that are not ``(..., P, 4)`` / ``(..., G, 4)`` with one batch
            shape, masks of the wrong shape. TypeError: non-floating boxes, non-boolean
            masks, arrays from different libraries.

    Examples:
        >>> import numpy as np
        >>> props = np.array([[[0., 0., 10., 10.]]])
        >>> gts = np.array([[[1., 1., 9., 9.], [np.nan] * 4]])
        >>> boxes, valid = append_gt_proposals(props, gts, gt_valid=np.array([[True, False]]))
        >>> boxes[0].tolist()
        [[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 9.0, 9.0], [0.0, 0.0, 0.0, 0.0]]
        >>> valid.tolist()
        [[True, True, False]]

    References:
        Ren et al., *Faster R-CNN*, NeurIPS 2015; torchvision ``RoIHeads.add_gt_proposals``.
    """
    xp = namespace(proposals=proposals, gt_boxes=gt_boxes, gt_valid=gt_valid,
                   proposal_valid=proposal_valid)
    v.check_floating(xp, proposals, "proposals")
    v.check_floating(xp, gt_boxes, "gt_boxes")
    if proposals.ndim < 2 or proposals.shape[-1] != 4 or gt_boxes.ndim < 2 \
            or gt_boxes.shape[-1] != 4:
        raise ValueError("proposals and gt_boxes must have shape (..., P, 4) and (..., G, 4), "
                         f"got {tuple(proposals.shape)} and {tuple(gt_boxes.shape)}")
    v.check_same_shape("proposals.shape[:-2]", proposals.shape[:-2], "gt_boxes.shape[:-2]",
                       gt_boxes.shape[:-2])
    _check_mask(xp, gt_valid, "gt_valid", gt_boxes.shape[:-1], "gt_boxes.shape[:-1]")
    _check_mask(xp, proposal_valid, "proposal_valid", proposals.shape[:-1],
                "proposals.shape[:-1]")
    gts = xp.astype(gt_boxes, proposals.dtype)
    dev = device_of(proposals)
    if gt_valid is not None:
        gts = xp.where(gt_valid[..., None], gts, constant(xp, 0.0, gts))
    else:
        gt_valid = xp.ones(gt_boxes.shape[:-1], dtype=xp.bool, device=dev)
    if proposal_valid is None:
        proposal_valid = xp.ones(proposals.shape[:-1], dtype=xp.bool, device=dev)
    return (xp.concat((proposals, gts), axis=-2),
            xp.concat((proposal_valid, gt_valid), axis=-1))


# --------------------------------------------------------------------------- sampling


@overload
def sample_balanced(labels: ArrayT, /, *, rng: Any, num_samples: Integer = ...,
                    positive_fraction: Number = ..., return_indices: Literal[False] = ...
                    ) -> ArrayT: ...


@overload
def sample_balanced(labels: ArrayT,  # pyright: ignore[reportInvalidTypeVarUse]
                    /, *, rng: Any, num_samples: Integer = ...,
                    positive_fraction: Number = ..., return_indices: Literal[True]
                    ) -> BalancedSample: ...


@overload
def sample_balanced(labels: ArrayT, /, *, rng: Any, num_samples: Integer = ...,
                    positive_fraction: Number = ..., return_indices: bool = ...
                    ) -> ArrayT | BalancedSample: ...


def sample_balanced(labels: ArrayT, /, *, rng: Any, num_samples: Integer = 512,
                    positive_fraction: Number = 0.25, return_indices: bool = False
                    ) -> ArrayT | BalancedSample:
    r"""Randomly sample foreground and background proposals in a fixed ratio, per image.

    The semantics of torchvision's ``BalancedPositiveNegativeSampler(num_samples,
    positive_fraction)``: per image (the last axis), with :math:`F` the foreground
    proposals (label ≥ 1) and :math:`B` the background ones (label = 0),

    .. math::

        n_\text{pos} = \min(|F|, \lfloor \text{num\_samples} \cdot
        \text{positive\_fraction} \rfloor), \qquad
        n_\text{neg} = \min(|B|, \text{num\_samples} - n_\text{pos})

    and the sample is a uniformly random ``n_pos``-subset of :math:`F` together with a
    uniformly random ``n_neg``-subset of :math:`B` (without replacement, independent
    across images). Proposals with a negative label (ignored, or padding) are never
    sampled. The counts are exact; the subsets are equal in distribution to
    torchvision's ``randperm`` (not the same draws).

    Static shapes: every proposal draws a random 29-bit integer key; one sort per image of
    the composite ``(category, key)`` orders the foreground and then the background
    randomly, and the first ``n_pos`` / ``n_neg`` of each are taken — every proposal whose
    key is below the ``n_pos``-th foreground (``n_neg``-th background) key, and of those
    equal to it the lowest indices. A value sort for the mask, an ``argsort`` only for
    ``return_indices``. Jittable; batched over leading dimensions; nothing waits for the
    device (except, on eager backends, the range check of a key array).

    Random source (``rng``), which must belong to the labels' library:

    - JAX: a PRNG key, ``jax.random.key(seed)`` or ``jax.random.PRNGKey(seed)`` (split it
      per training step); traceable under ``jit``/``vmap``.
    - NumPy and array_api_strict: a ``numpy.random.Generator`` (advanced by each call).
    - PyTorch: a ``torch.Generator`` on the labels' device. ``torch.compile`` cannot trace
      a generator argument (Dynamo: "Failed to convert args/kwargs to proxy" — an error
      with ``fullgraph=True``, a graph break otherwise); inside a compiled function pass
      keys drawn from the global RNG instead, ``rng=torch.rand(labels.shape,
      device=labels.device)``, which Inductor compiles.
    - Any library: an array of the labels' shape of uniform random keys in ``[0, 1)``
      (e.g. ``torch.rand``, ``jax.random.uniform``), quantized to 29 bits.

    Equal keys within one category are ordered by index, which shifts a proposal's chance
    of selection by at most about ``N · 2**-29`` (``4e-6`` for 2,000 proposals).

    Args:
        labels: ``(..., N)`` integer labels: ≥ 1 foreground (a class), 0 background, < 0
            ignored (e.g. :data:`~focal_array.matcher.IGNORE` or -1). Matcher labels
            (:func:`~focal_array.matcher.assign_targets`, background ``-1``) become these
            as ``where(labels >= 0, labels + 1, where(labels == BACKGROUND, 0, -1))``.
        rng: the random source, as above.
        num_samples: proposals sampled per image at most (``batch_size_per_image``,
            torchvision's 512), ``>= 0``.
        positive_fraction: the largest fraction of foreground, in [0, 1] (0.25).
        return_indices: also return fixed-length indices of the sample.

    Returns:
        ``(..., N)`` boolean mask of the sampled proposals; with ``return_indices`` a
        :class:`BalancedSample` ``(mask, indices, valid)``: ``indices`` ``(...,
        num_samples)`` in the default index dtype — the sampled foreground first, then the
        sampled background, each in random order, then unused slots holding 0 — and
        ``valid`` ``(..., num_samples)`` boolean, True for the first ``n_pos + n_neg``
        slots.

    Raises:
        TypeError: ``labels`` not an integer array; ``rng`` not a source of the labels'
            library (the message says what that library takes).
        ValueError: ``labels`` 0-d; bad ``num_samples`` / ``positive_fraction``; a key
            array of the wrong shape or (eagerly) with values outside [0, 1); a torch
            generator on another device.

    Examples:
        >>> import numpy as np
        >>> labels = np.array([[3, 0, 0, -1, 1, 0, 0, 2]])  # 3 fg, 4 bg, 1 ignored
        >>> mask = sample_balanced(labels, rng=np.random.default_rng(0), num_samples=4,
        ...                        positive_fraction=0.25)
        >>> int(mask.sum()), int((mask & (labels >= 1)).sum()), bool(mask[0, 3])
        (4, 1, False)
        >>> s = sample_balanced(labels, rng=np.random.default_rng(0), num_samples=10,
        ...                     return_indices=True)
        >>> s.valid.tolist()  # 2 fg (int(10 * 0.25)) + all 4 bg
        [[True, True, True, True, True, True, False, False, False, False]]

    References:
        Ren et al., *Faster R-CNN*, NeurIPS 2015 (512 RoIs per image, 25% foreground);
        torchvision ``models.detection._utils.BalancedPositiveNegativeSampler``.
    """
    xp = namespace(labels=labels)
    v.check_integer(xp, labels, "labels")
    if labels.ndim < 1:
        raise ValueError("labels must have shape (..., N) with the proposals on the last axis")
    num_samples = check_count("num_samples", num_samples, low=0)
    fraction = v.check_number("positive_fraction", positive_fraction, low=0.0, high=1.0)
    if not isinstance(return_indices, bool):
        raise TypeError(f"return_indices must be True or False, got {return_indices!r}")
    kind, source = resolve_rng(xp, rng, labels)
    keys = draw_keys(kind, source, labels, xp)
    out = run_sample(xp, labels, kind, keys, num_samples=num_samples,
                     max_pos=max_positives(num_samples, fraction),
                     return_indices=return_indices)
    return BalancedSample(*out) if return_indices else out


# --------------------------------------------------------------------------- loss


def rcnn_head_loss(class_logits: ArrayT, box_deltas: ArrayT, proposals: ArrayT,
                   gt_boxes: ArrayT, gt_labels: ArrayT, /, *, rng: Any = None,
                   sample: ArrayT | None = None, gt_valid: ArrayT | None = None,
                   proposal_valid: ArrayT | None = None, loss: RcnnLoss = "softmax_focal",
                   alpha: Number | Sequence[float] | ArrayLike | None = None,
                   gamma: Number = 2.0, num_samples: Integer = 512,
                   positive_fraction: Number = 0.25, fg_iou_thresh: Number = 0.5,
                   bg_iou_thresh: Number = 0.5,
                   box_weights: Sequence[float] = (10.0, 10.0, 5.0, 5.0),
                   beta: Number = 1.0 / 9.0, box_weight: Number = 1.0) -> dict[str, ArrayT]:
    r"""Faster R-CNN box-head loss for a padded batch: IoU matching, balanced sampling,
    classification and class-specific box regression, in one jittable call.

    Per image, each (valid) proposal is matched to the gts by IoU as torchvision's
    ``RoIHeads`` does (``Matcher(fg_iou_thresh, bg_iou_thresh,
    allow_low_quality_matches=False)`` on ``box_iou``): best IoU ≥ ``fg_iou_thresh`` →
    foreground of class ``gt_labels + 1`` (in 1..C; ties to the lowest gt index), best IoU
    < ``bg_iou_thresh`` → background class 0, in between → ignored (an empty band at the
    default 0.5 / 0.5). :func:`sample_balanced` then draws the sample :math:`S` (at most
    ``num_samples`` per image, at most ``positive_fraction`` foreground), :math:`S_+ \subset
    S` its foreground. With :math:`|S|` counted over the whole batch (torchvision's
    ``labels.numel()`` of the concatenated sample),

    .. math::

        L_\text{cls} = \frac{1}{|S|} \sum_{i \in S} \ell(x_i, y_i), \qquad
        L_\text{box} = \frac{1}{|S|} \sum_{i \in S_+} \sum_{j=1}^{4}
            \mathrm{smooth}_{\ell_1, \beta}\bigl(\hat d_{i, y_i, j} - d_{i, j}\bigr), \qquad
        L = L_\text{cls} + \text{box\_weight} \cdot L_\text{box}

    where ℓ is the softmax cross-entropy over the C + 1 classes (``loss="ce"``, as
    ``F.cross_entropy``; α-balanced if ``alpha`` is given) or the softmax focal loss
    :math:`-\alpha_t (1 - p_t)^\gamma \log p_t` (``"softmax_focal"``);
    :math:`\hat d_{i, y_i}` are the predicted deltas of the proposal's gt class and
    :math:`d_i` its matched gt encoded with ``box_weights`` (Faster R-CNN's (10, 10, 5,
    5)), and :math:`\mathrm{smooth}_{\ell_1, \beta}(z) = z^2 / (2\beta)` for
    :math:`|z| < \beta`, else :math:`|z| - \beta / 2`. With ``loss="ce"`` and the same
    sample this is torchvision's ``fastrcnn_loss`` (except 0, not NaN, when nothing is
    sampled: the denominators are ``max(|S|, 1)``). The default is the softmax focal
    loss, as the source note puts it in this head.

    Ground-truth proposals. torchvision appends the gt boxes to the proposals before
    matching; here the head must have scored them, so append them first with
    :func:`append_gt_proposals`, run the head on its boxes, and pass those boxes as
    ``proposals`` and its mask as ``proposal_valid`` (padded gts then are never matched
    or sampled). Proposals with ``proposal_valid`` False are ignored entirely (their
    coordinates may be anything).

    Args:
        class_logits: ``(B, N, C + 1)`` real floating class logits of the N proposals
            (index 0 = background).
        box_deltas: ``(B, N, (C + 1)·4)`` class-specific ``[dx, dy, dw, dh]`` per class, as
            torchvision's ``FastRCNNPredictor`` outputs them, ``(B, N, C + 1, 4)``, or
            class-agnostic ``(B, N, 4)``.
        proposals: ``(B, N, 4)`` ``xyxy`` boxes the head scored (gts appended). No
            gradient flows into them.
        gt_boxes: ``(B, G, 4)`` padded ``xyxy`` ground truth.
        gt_labels: ``(B, G)`` integer classes in [0, C) for real gts (this library's
            contiguous 0-based labels; torchvision's 1-based labels are ``gt_labels - 1``
            here).
        rng: the random source of the sample, as in :func:`sample_balanced` (a key array
            has shape ``(B, N)``); not needed with ``sample``.
        sample: optional ``(B, N)`` boolean: use this sample instead of drawing one (e.g.
            to reproduce a given sample); proposals it marks that are ignored or invalid
            are still left out.
        gt_valid: ``(B, G)`` boolean, False for padded gts (default: all real).
        proposal_valid: ``(B, N)`` boolean, False for padding — the mask
            :func:`append_gt_proposals` returns (default: all valid).
        loss: ``"softmax_focal"`` (default) or ``"ce"`` (torchvision's).
        alpha: None (default), a number α (foreground classes α, background 1 − α) or a
            per-class vector of C + 1 values, as in :func:`~focal_array.softmax_focal_loss`.
        gamma: focusing parameter γ ≥ 0 of ``"softmax_focal"`` (0 gives cross-entropy).
        num_samples, positive_fraction: as in :func:`sample_balanced` (512, 0.25).
        fg_iou_thresh, bg_iou_thresh: the matcher's thresholds, ``bg <= fg`` (0.5, 0.5).
        box_weights: ``(wx, wy, ww, wh)`` of the box coder (10, 10, 5, 5).
        beta: smooth-L1 transition point, ``>= 0`` (1/9, torchvision's; 0 is L1).
        box_weight: weight of the box loss in ``"total"`` (``>= 0``).

    Returns:
        dict with 0-d arrays ``"classification"``, ``"box_regression"``, ``"total"``,
        ``"num_foreground"`` and ``"num_sampled"`` (the batch's sampled foreground and
        sampled proposals, as floats) — in the logits' dtype, float32 for half inputs —
        and the per-proposal ``"labels"`` (``(B, N)`` class targets in the default index
        dtype: 1..C foreground, 0 background, -1 ignored or invalid) and ``"sampled"``
        (``(B, N)`` boolean). Gradients flow to ``class_logits`` and ``box_deltas`` only.

    Raises:
        ValueError: shapes that do not fit together, bad options (thresholds, counts);
            on eager backends malformed boxes or gt labels outside [0, C) (as
            :func:`~focal_array.matcher.assign_targets`).
        TypeError: wrong dtypes, arrays from different libraries, neither ``rng`` nor
            ``sample`` given, an ``rng`` of another library.

    Examples:
        >>> import numpy as np
        >>> props = np.array([[[0., 0., 10., 10.], [20., 20., 30., 30.], [0., 0., 9., 10.]]])
        >>> gts = np.array([[[0., 0., 10., 10.]]])
        >>> boxes, valid = append_gt_proposals(props, gts)  # the head scores these 4 boxes
        >>> logits, deltas = np.zeros((1, 4, 3)), np.zeros((1, 4, 12))
        >>> out = rcnn_head_loss(logits, deltas, boxes, gts, np.array([[1]]),
        ...                      proposal_valid=valid, rng=np.random.default_rng(0))
        >>> out["labels"].tolist(), float(out["num_foreground"]), float(out["num_sampled"])
        ([[2, 0, 2, 2]], 3.0, 4.0)
        >>> round(float(out["classification"]), 4)  # (2/3)² log 3: uniform logits, 3 classes
        0.4883

    References:
        Ren et al., *Faster R-CNN*, NeurIPS 2015 (arXiv:1506.01497); Girshick, *Fast
        R-CNN*, ICCV 2015 (smooth L1); Lin et al., *Focal Loss for Dense Object
        Detection*, ICCV 2017 (arXiv:1708.02002); torchvision
        ``models.detection.roi_heads.fastrcnn_loss``.
    """
    xp = namespace(class_logits=class_logits, box_deltas=box_deltas, proposals=proposals,
                   gt_boxes=gt_boxes, gt_labels=gt_labels, gt_valid=gt_valid,
                   proposal_valid=proposal_valid, sample=sample)
    v.check_choice("loss", loss, RCNN_LOSSES)
    b, n, k = _check_head(xp, class_logits, box_deltas, proposals)
    gamma = v.check_number("gamma", gamma, low=0.0)
    beta = v.check_number("beta", beta, low=0.0)
    box_weight = v.check_number("box_weight", box_weight, low=0.0)
    coder_weights = _check_weights(box_weights)
    num_samples = check_count("num_samples", num_samples, low=0)
    fraction = v.check_number("positive_fraction", positive_fraction, low=0.0, high=1.0)
    if gt_boxes.ndim != 3 or gt_boxes.shape[0] != b:
        raise ValueError(f"gt_boxes must have shape ({b}, G, 4), got {tuple(gt_boxes.shape)}")
    _check_mask(xp, proposal_valid, "proposal_valid", (b, n), "(B, N) from class_logits")
    _check_mask(xp, sample, "sample", (b, n), "(B, N) from class_logits")
    if sample is None:
        if rng is None:
            raise TypeError("rcnn_head_loss needs rng= (the random source of the sample, "
                            "see sample_balanced) or a fixed sample=")

    boxes = stop_gradient(xp, proposals)
    if xp.isdtype(gt_boxes.dtype, "real floating") and gt_boxes.dtype != boxes.dtype:
        gt_boxes = xp.astype(gt_boxes, boxes.dtype)  # as torchvision: gts in the boxes' dtype
    if proposal_valid is not None:
        # padding may hold anything: an empty box never matches and is never checked
        boxes = xp.where(proposal_valid[..., None], boxes, constant(xp, 0.0, boxes))
    labels, box_targets = _match_proposals(boxes, gt_boxes, gt_labels, gt_valid,
                                           proposal_valid, high=fg_iou_thresh,
                                           low=bg_iou_thresh, weights=coder_weights,
                                           num_classes=k - 1, xp=xp)
    c = lambda value: xp.asarray(value, dtype=labels.dtype,  # noqa: E731
                                 device=device_of(labels))
    if sample is None:
        sampled = sample_balanced(labels, rng=rng, num_samples=num_samples,
                                  positive_fraction=fraction)
    else:
        sampled = sample & (labels >= c(0))
    return _head_losses(class_logits, box_deltas, labels, sampled, box_targets, k=k,
                        loss=loss, alpha=alpha, gamma=gamma, beta=beta,
                        box_weight=box_weight, xp=xp,
                        capacity=num_samples if sample is None else None)
