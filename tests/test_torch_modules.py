"""focal_array.torch: the nn.Module losses, checked against torch's own losses and float64
transcriptions of the published formulas, never against focal_array's own output.

The peers: ``F.cross_entropy(weight=, ignore_index=, label_smoothing=, reduction=)`` (integer
and probability targets, (N, C) and (N, C, H, W)), ``F.binary_cross_entropy_with_logits``,
and the sigmoid focal loss of Lin et al. 2017 as torchvision and mmdetection write it.
Module behaviour: buffers and state_dict, ``.to``/``.double``, pickle and deepcopy,
``torch.compile(fullgraph=True)``, ``gradcheck``, the constructor's errors.

torch missing is a skip on a user's machine and a failure in CI (``CI`` set), as for the
array backends (tests/conftest.py).
"""

from __future__ import annotations

import copy
import doctest
import os
import pickle
import sys

import numpy as np
import pytest

try:
    import torch
    import torch.nn.functional as F
except ImportError as exc:  # pragma: no cover - depends on the environment
    if os.environ.get("CI"):
        pytest.fail(f"torch must be installed in CI: {exc}", pytrace=False)
    pytest.skip(f"torch not installed: {exc}", allow_module_level=True)

import focal_array
import focal_array.torch as ft
from focal_array.torch import (
    BinaryCrossEntropy,
    SigmoidFocalLoss,
    SoftmaxCrossEntropy,
    SoftmaxFocalLoss,
)

F64 = torch.float64
N, C, H, W = 6, 5, 3, 4
REDUCTIONS = ["mean", "sum", "none"]
UNIT = r"\[0(\.0)?, 1(\.0)?\]"  # [0, 1] in a message

def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _logits(*shape: int, seed: int = 0, scale: float = 2.0) -> torch.Tensor:
    return torch.randn(*shape, generator=_gen(seed), dtype=F64) * scale


def _labels(shape: tuple[int, ...], *, seed: int = 1, ignore: int | None = -100,
            frac: float = 0.25) -> torch.Tensor:
    labels = torch.randint(0, C, shape, generator=_gen(seed))
    if ignore is not None:
        drop = torch.rand(shape, generator=_gen(seed + 1)) < frac
        labels = torch.where(drop, torch.full_like(labels, ignore), labels)
    return labels


def _probabilities(shape: tuple[int, ...], *, seed: int = 3) -> torch.Tensor:
    """Soft targets along axis 1."""
    return torch.softmax(torch.randn(*shape, generator=_gen(seed), dtype=F64) * 1.5, dim=1)


def _class_weight(seed: int = 4) -> torch.Tensor:
    return torch.rand(C, generator=_gen(seed), dtype=F64) * 2.0 + 0.1


def _close(got: torch.Tensor, want: torch.Tensor, rtol: float = 1e-12,
           atol: float = 1e-14) -> None:
    assert got.shape == want.shape, (tuple(got.shape), tuple(want.shape))
    np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=rtol,
                               atol=atol)


# --------------------------------------------------------------------------- references


def lin_sigmoid_focal(x: torch.Tensor, y: torch.Tensor, alpha: float | None,
                      gamma: float) -> torch.Tensor:
    """Lin et al. 2017, as torchvision.ops.sigmoid_focal_loss writes it (float64)."""
    p = torch.sigmoid(x)
    ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    p_t = p * y + (1 - p) * (1 - y)
    loss = ce * (1 - p_t) ** gamma
    if alpha is not None:
        loss = (alpha * y + (1 - alpha) * (1 - y)) * loss
    return loss


def lin_softmax_focal(x: torch.Tensor, labels: torch.Tensor, alpha: list[float] | None,
                      gamma: float) -> torch.Tensor:
    """-α_t (1 - p_t)^γ log p_t over the softmax along axis 1; 0 for negative labels."""
    logp = torch.log_softmax(x, dim=1)
    safe = labels.clamp(min=0)
    logp_t = logp.gather(1, safe.unsqueeze(1)).squeeze(1)
    loss = -((1 - logp_t.exp()) ** gamma) * logp_t
    if alpha is not None:
        loss = torch.tensor(alpha, dtype=F64)[safe] * loss
    return torch.where(labels >= 0, loss, torch.zeros_like(loss))


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    return {"none": loss, "sum": loss.sum(), "mean": loss.mean()}[reduction]


# --------------------------------------------------------------------------- the module


def test_importing_focal_array_does_not_import_the_module():
    assert "focal_array.torch" not in sys.modules or focal_array.torch is ft
    import subprocess

    code = ("import sys, focal_array; "
            "assert 'focal_array.torch' not in sys.modules and 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_import_torch_inside_gets_the_real_torch():
    # focal_array/torch.py's own `import torch` is absolute: the library, not itself
    assert ft.torch is sys.modules["torch"] and ft.nn is torch.nn
    assert ft.__name__ == "focal_array.torch"


def test_docstring_examples():
    result = doctest.testmod(ft)
    assert result.attempted >= 6 and result.failed == 0, result


def test_the_seed_worked_example():
    probs = torch.tensor([[0.1, 0.9], [0.8, 0.2]], dtype=F64)
    labels = torch.tensor([1, 0])
    fl = SoftmaxFocalLoss(alpha=0.25, from_logits=False, reduction="none")(probs, labels)
    ce = SoftmaxCrossEntropy(from_logits=False, reduction="none")(probs, labels)
    np.testing.assert_allclose(fl.numpy(), [0.0002634, 0.0066943], atol=5e-8)
    np.testing.assert_allclose(ce.numpy(), [0.105361, 0.223144], atol=1e-6)
    sig = SigmoidFocalLoss(from_logits=False, reduction="none")(
        probs[:, 1], torch.tensor([1.0, 0.0], dtype=F64))
    np.testing.assert_allclose(sig.numpy(), [0.0002634, 0.0066943], atol=5e-8)


# --------------------------------------------------------------------------- cross-entropy


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(N, C), (N, C, H, W)], ids=["NC", "NCHW"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_cross_entropy_equals_torch(reduction, shape, label_smoothing):
    """Integer targets with torch's default ignore_index (-100) among them."""
    x = _logits(*shape)
    t = _labels((shape[0], *shape[2:]))
    got = SoftmaxCrossEntropy(reduction=reduction, label_smoothing=label_smoothing)(x, t)
    want = F.cross_entropy(x, t, reduction=reduction, label_smoothing=label_smoothing)
    if reduction == "none":  # torch gives the ignored examples 0, as focal_array does
        assert bool((want[t == -100] == 0).all())
    _close(got, want)


def test_unbatched_input_has_its_classes_on_axis_0():
    x = _logits(C)
    for t in (torch.tensor(2), torch.tensor(-100)):
        _close(SoftmaxCrossEntropy(reduction="sum")(x, t), F.cross_entropy(x, t,
                                                                          reduction="sum"))


def test_class_axis_option():
    """``axis=-1``: classes last (the functions' convention) is the transpose of torch's."""
    x = _logits(N, H, C)
    t = _labels((N, H))
    got = SoftmaxCrossEntropy(axis=-1, reduction="none")(x, t)
    _close(got, F.cross_entropy(x.permute(0, 2, 1), t, reduction="none"))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(N, C), (N, C, H, W)], ids=["NC", "NCHW"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_weighted_cross_entropy_with_ignore_index_equals_torch(reduction, shape,
                                                               label_smoothing):
    """The headline: nn.CrossEntropyLoss(weight=, ignore_index=255, label_smoothing=) is
    swapped for SoftmaxCrossEntropy with the same arguments and gives the same number."""
    x = _logits(*shape)
    t = _labels((shape[0], *shape[2:]), ignore=255)
    w = _class_weight()
    options = {"weight": w, "ignore_index": 255, "label_smoothing": label_smoothing,
               "reduction": reduction}
    got = SoftmaxCrossEntropy(**options)(x, t)
    _close(got, torch.nn.CrossEntropyLoss(**options)(x, t))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_ignore_index_255_without_weight(reduction):
    x = _logits(N, C, H, W)
    t = _labels((N, H, W), ignore=255)
    got = SoftmaxCrossEntropy(ignore_index=255, reduction=reduction)(x, t)
    _close(got, F.cross_entropy(x, t, ignore_index=255, reduction=reduction))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(N, C), (N, C, H, W)], ids=["NC", "NCHW"])
@pytest.mark.parametrize("weighted", [False, True], ids=["", "weight"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_probability_targets_equal_torch(reduction, shape, weighted, label_smoothing):
    x = _logits(*shape)
    y = _probabilities(shape)
    w = _class_weight() if weighted else None
    got = SoftmaxCrossEntropy(w, reduction=reduction, label_smoothing=label_smoothing)(x, y)
    want = F.cross_entropy(x, y, weight=w, reduction=reduction,
                           label_smoothing=label_smoothing)
    _close(got, want)


def test_focal_loss_with_gamma_0_is_torch_cross_entropy():
    x = _logits(N, C, H, W)
    t = _labels((N, H, W), ignore=255)
    w = _class_weight()
    got = SoftmaxFocalLoss(weight=w, gamma=0.0, ignore_index=255, label_smoothing=0.1)(x, t)
    _close(got, F.cross_entropy(x, t, weight=w, ignore_index=255, label_smoothing=0.1))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("alpha", [None, 0.25, [0.1, 0.2, 0.3, 0.4, 0.5]],
                         ids=["none", "scalar", "per_class"])
def test_softmax_focal_loss_equals_the_formula(reduction, alpha):
    x = _logits(N, C, H)
    t = _labels((N, H), ignore=-1)
    got = SoftmaxFocalLoss(alpha=alpha, gamma=2.0, reduction=reduction)(x, t)
    per_class = None if alpha is None else (
        [1 - alpha] + [alpha] * (C - 1) if isinstance(alpha, float) else alpha)
    want = lin_softmax_focal(x, t, per_class, 2.0)
    if reduction == "mean":
        want = want.sum() / (t >= 0).sum()
    else:
        want = _reduce(want, reduction)
    _close(got, want)


def test_per_example_weight_and_normalizer():
    x = _logits(N, C)
    t = _labels((N,), ignore=None)
    w = torch.rand(N, generator=_gen(9), dtype=F64)
    ce = F.cross_entropy(x, t, reduction="none")
    _close(SoftmaxCrossEntropy(reduction="sum")(x, t, w), (w * ce).sum())
    _close(SoftmaxCrossEntropy()(x, t, w), (w * ce).sum() / w.sum())
    _close(SoftmaxCrossEntropy()(x, t, w, normalizer=torch.tensor(2.0)), (w * ce).sum() / 2)
    _close(SoftmaxCrossEntropy()(x, t, normalizer=0), ce.sum())  # max(normalizer, 1)


# --------------------------------------------------------------------------- sigmoid


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
def test_binary_cross_entropy_equals_torch(reduction, soft):
    x = _logits(N, C, H)
    y = torch.rand(N, C, H, generator=_gen(5), dtype=F64)
    y = y if soft else (y < 0.3).to(F64)
    got = BinaryCrossEntropy(reduction=reduction)(x, y)
    _close(got, F.binary_cross_entropy_with_logits(x, y, reduction=reduction))


def test_binary_cross_entropy_weight_and_pos_weight_against_torch():
    x = _logits(N, C)
    y = (torch.rand(N, C, generator=_gen(6), dtype=F64) < 0.3).to(F64)
    w = torch.rand(N, 1, generator=_gen(7), dtype=F64)
    for reduction in ("none", "sum"):
        _close(BinaryCrossEntropy(reduction=reduction)(x, y, w),
               F.binary_cross_entropy_with_logits(x, y, weight=w, reduction=reduction))
    # torch's "mean" with a weight divides by the number of elements, this one by Σ w
    torch_mean = F.binary_cross_entropy_with_logits(x, y, weight=w)
    _close(BinaryCrossEntropy()(x, y, w, normalizer=x.numel()), torch_mean)
    wb = w.expand(N, C)
    _close(BinaryCrossEntropy()(x, y, w), torch_mean * x.numel() / wb.sum())
    # pos_weight p is (1 + p) times the α-balanced loss with α = p / (1 + p)
    p = 3.0
    _close((1 + p) * BinaryCrossEntropy(alpha=p / (1 + p))(x, y),
           F.binary_cross_entropy_with_logits(x, y, pos_weight=torch.tensor(p, dtype=F64)))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("alpha", "gamma"), [(0.25, 2.0), (None, 1.5), (0.6, 0.5)])
@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
def test_sigmoid_focal_loss_equals_lin_et_al(reduction, alpha, gamma, soft):
    x = _logits(N, C, H, scale=3.0)
    y = torch.rand(N, C, H, generator=_gen(8), dtype=F64)
    y = y if soft else (y < 0.2).to(F64)
    got = SigmoidFocalLoss(alpha=alpha, gamma=gamma, reduction=reduction)(x, y)
    _close(got, _reduce(lin_sigmoid_focal(x, y, alpha, gamma), reduction))


def test_sigmoid_focal_loss_as_mmdetection_uses_it():
    """mmdetection's FocalLoss(use_sigmoid=True): integer labels with background = C,
    a per-anchor weight, ``avg_factor`` = the number of positives, ``loss_weight``."""
    x = _logits(N, C)
    labels = torch.randint(0, C + 1, (N,), generator=_gen(10))
    anchor_weight = torch.rand(N, generator=_gen(11), dtype=F64)
    avg_factor, loss_weight = 3.0, 2.0
    onehot = F.one_hot(labels, C + 1)[:, :C].to(F64)  # mmdet's background column dropped
    mmdet = loss_weight * (lin_sigmoid_focal(x, onehot, 0.25, 2.0) * anchor_weight[:, None]
                           ).sum() / (avg_factor + torch.finfo(torch.float32).eps)
    ours = loss_weight * SigmoidFocalLoss()(x, onehot, anchor_weight[:, None],
                                             normalizer=avg_factor)
    _close(ours, mmdet, rtol=1e-7)  # mmdet adds float32's eps to avg_factor


def test_sigmoid_focal_loss_gradient_is_finite_for_gamma_below_1():
    """Where p_t rounds to 1, (1 - p_t)^γ with γ < 1 has an infinite derivative: the
    torchvision formula's gradient is NaN there, the module's is finite (and ~0)."""
    x = torch.tensor([40.0, -40.0, 0.3], dtype=F64, requires_grad=True)
    y = torch.tensor([1.0, 0.0, 1.0], dtype=F64)
    (g_ref,) = torch.autograd.grad(lin_sigmoid_focal(x, y, 0.25, 0.5).sum(), x)
    assert bool(torch.isnan(g_ref[:2]).all())
    (g,) = torch.autograd.grad(SigmoidFocalLoss(gamma=0.5, reduction="sum")(x, y), x)
    assert bool(torch.isfinite(g).all()) and abs(g[0].item()) < 1e-12
    _close(g[2], g_ref[2], rtol=1e-10)


def test_half_precision_is_computed_in_float32():
    x = _logits(N, C).to(torch.bfloat16)
    t = _labels((N,))
    out = SoftmaxFocalLoss()(x, t)
    assert out.dtype == torch.float32
    _close(out.double(), (lin_softmax_focal(x.double(), t, None, 2.0).sum() / (t >= 0).sum()),
           rtol=1e-6)
    y = (torch.rand(N, C, generator=_gen(2)) < 0.5).to(torch.float16)
    assert SigmoidFocalLoss()(x.to(torch.float16), y).dtype == torch.float32


# --------------------------------------------------------------------------- module habits


def _modules(weight: torch.Tensor | None = None) -> list[torch.nn.Module]:
    return [SigmoidFocalLoss(alpha=0.3, gamma=1.5, reduction="sum", label_smoothing=0.1),
            BinaryCrossEntropy(alpha=0.4, reduction="none"),
            SoftmaxFocalLoss(weight=weight, alpha=[0.2, 0.4, 0.6, 0.8, 1.0], gamma=1.0,
                             ignore_index=255, label_smoothing=0.05, axis=1),
            SoftmaxCrossEntropy(weight, ignore_index=None, reduction="sum", axis=-1)]


def test_extra_repr_shows_the_options():
    reprs = [repr(m) for m in _modules()]
    assert reprs[0] == ("SigmoidFocalLoss(alpha=0.3, gamma=1.5, reduction='sum', "
                        "from_logits=True, label_smoothing=0.1)")
    assert reprs[1] == ("BinaryCrossEntropy(alpha=0.4, reduction='none', from_logits=True, "
                        "label_smoothing=0.0)")
    assert "ignore_index=255" in reprs[2] and "alpha=(0.2, 0.4, 0.6, 0.8, 1.0)" in reprs[2]
    assert reprs[3] == ("SoftmaxCrossEntropy(alpha=None, ignore_index=None, reduction='sum', "
                        "label_smoothing=0.0, from_logits=True, axis=-1)")
    assert all(m.reduction == "mean" for m in (SigmoidFocalLoss(), BinaryCrossEntropy(),
                                               SoftmaxFocalLoss(), SoftmaxCrossEntropy()))
    assert SoftmaxCrossEntropy().ignore_index == -100 and SoftmaxFocalLoss().axis == 1


def test_class_weight_is_a_buffer_in_the_state_dict():
    w = _class_weight().float()
    m = SoftmaxCrossEntropy(weight=w)
    assert m.weight is w and dict(m.named_buffers())["weight"] is w
    state = m.state_dict()
    assert list(state) == ["weight"]
    other = SoftmaxCrossEntropy(weight=torch.ones(C))
    other.load_state_dict(state)
    assert torch.equal(other.weight, w)
    assert m.double().weight.dtype == F64 and m.weight.dtype == F64
    assert SoftmaxFocalLoss(weight=[1.0, 2.0]).to(F64).weight.dtype == F64
    assert SoftmaxFocalLoss(weight=[1.0, 2.0]).weight.dtype == torch.get_default_dtype()
    # without one, nothing is saved (torch's _WeightedLoss registers None the same way)
    assert SoftmaxCrossEntropy().weight is None and SoftmaxCrossEntropy().state_dict() == {}
    assert SigmoidFocalLoss().state_dict() == {}


def test_class_weight_follows_the_module_to_float64():
    x = _logits(N, C)
    t = _labels((N,))
    w = _class_weight()
    m = SoftmaxCrossEntropy(weight=w.float()).to(F64)
    _close(m(x, t), F.cross_entropy(x, t, weight=w.float().double()))
    # a float32 buffer with a float64 input: computed in the input's dtype, as the result
    m32 = SoftmaxFocalLoss(weight=w.float(), gamma=0.0)
    assert m32(x, t).dtype == F64


@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
def test_pickle_and_deepcopy(how):
    w = _class_weight().float()
    for m in _modules(w):
        clone = pickle.loads(pickle.dumps(m)) if how == "pickle" else copy.deepcopy(m)
        assert type(clone) is type(m) and repr(clone) == repr(m)
        assert {k: v.tolist() for k, v in clone.state_dict().items()} == \
               {k: v.tolist() for k, v in m.state_dict().items()}
    x = _logits(N, C)
    y = (torch.rand(N, C, generator=_gen(3), dtype=F64) < 0.3).to(F64)
    for m in _modules()[:2]:
        clone = pickle.loads(pickle.dumps(m))
        _close(clone(x, y), m(x, y), rtol=0, atol=0)


def test_torch_compile_fullgraph_matches_eager():
    """Forward and backward of a compiled step (fullgraph: no graph break) equal eager."""
    torch._dynamo.reset()
    x = torch.randn(N, C, H, W, generator=_gen(12))
    t = torch.randint(-1, C, (N, H, W), generator=_gen(13))
    t = torch.where(t == 1, torch.full_like(t, 255), t)
    y = (torch.rand(N, C, generator=_gen(14)) < 0.3).float()
    w = torch.rand(N, H, W, generator=_gen(15))
    probs = _probabilities((N, C, H, W)).float()
    softmax = SoftmaxFocalLoss(weight=_class_weight().float(), alpha=0.25, ignore_index=255,
                               label_smoothing=0.1)
    ce = SoftmaxCrossEntropy(_class_weight(seed=5).float())
    sigmoid = SigmoidFocalLoss()

    def step(x):
        return (softmax(x, t, w) + ce(x, probs)
                + sigmoid(x[:, :, 0, 0], y, normalizer=3))

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    results = []
    for f in (step, compiled):
        xg = x.clone().requires_grad_(True)
        out = f(xg)
        out.backward()
        results.append((out.detach(), xg.grad))
    _close(results[1][0], results[0][0], rtol=1e-6)
    _close(results[1][1], results[0][1], rtol=1e-5, atol=1e-8)


def test_torch_compile_fullgraph_inductor():
    """The default backend (inductor) as a training step would use it."""
    torch._dynamo.reset()
    m = SoftmaxCrossEntropy(label_smoothing=0.1)
    x = torch.randn(N, C, generator=_gen(16), requires_grad=True)
    t = torch.randint(-1, C, (N,), generator=_gen(17))
    out = torch.compile(m, fullgraph=True)(x, t)
    (g,) = torch.autograd.grad(out, x)
    xe = x.detach().double().requires_grad_(True)
    want = F.cross_entropy(xe, torch.where(t >= 0, t, -100), label_smoothing=0.1)
    (ge,) = torch.autograd.grad(want, xe)
    _close(out.double(), want, rtol=1e-6)
    _close(g.double(), ge, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("make", [
    lambda: (SigmoidFocalLoss(alpha=0.3, gamma=1.5, label_smoothing=0.1), "soft"),
    lambda: (BinaryCrossEntropy(alpha=0.7), "soft"),
    lambda: (SoftmaxFocalLoss(alpha=0.25, gamma=2.0, label_smoothing=0.1), "labels"),
    lambda: (SoftmaxCrossEntropy(reduction="sum"), "labels"),
    lambda: (SoftmaxCrossEntropy(torch.tensor([0.5, 1.0, 2.0, 1.5], dtype=F64),
                                 ignore_index=255, label_smoothing=0.1), "labels255"),
    lambda: (SoftmaxFocalLoss(weight=torch.tensor([0.5, 1.0, 2.0, 1.5], dtype=F64)), "probs"),
], ids=["sigmoid_focal", "bce", "softmax_focal", "softmax_ce", "softmax_ce_weighted",
        "softmax_focal_probs"])
def test_gradcheck(make):
    """Autograd through the library's analytic derivatives equals finite differences."""
    module, kind = make()
    x = _logits(3, 4, 2, seed=20).requires_grad_(True)
    if kind == "soft":
        target = torch.rand(3, 4, 2, generator=_gen(21), dtype=F64)
    elif kind == "probs":
        target = _probabilities((3, 4, 2), seed=23)
    else:
        target = torch.tensor([[0, 3], [-100, 1], [2, 255 if kind == "labels255" else 0]])
    weight = torch.rand(3, 1, 1, generator=_gen(22), dtype=F64) if kind == "soft" else None
    assert torch.autograd.gradcheck(lambda x: module(x, target, weight), (x,))
    assert torch.autograd.gradgradcheck(lambda x: module(x, target, weight), (x,)) \
        if kind == "soft" else True


# --------------------------------------------------------------------------- bad options


@pytest.mark.parametrize(("make", "error", "match"), [
    (lambda: SigmoidFocalLoss(gamma=-1.0), ValueError, r"gamma must be in \[0"),
    (lambda: SigmoidFocalLoss(alpha=1.5), ValueError, rf"alpha must be in {UNIT}, got 1.5"),
    (lambda: SigmoidFocalLoss(alpha=[0.25]), TypeError, "alpha must be None or a number"),
    (lambda: BinaryCrossEntropy(reduction="avg"), ValueError,
     "reduction must be one of 'none', 'sum', 'mean', got 'avg'"),
    (lambda: SigmoidFocalLoss(label_smoothing=1.0), ValueError, r"label_smoothing must be in"),
    (lambda: BinaryCrossEntropy(from_logits=1), TypeError, "from_logits must be True or False"),
    (lambda: SoftmaxCrossEntropy(ignore_index=2.0), TypeError, "ignore_index must be None or"),
    (lambda: SoftmaxCrossEntropy(axis=1.0), TypeError, "axis must be an integer"),
    (lambda: SoftmaxFocalLoss(alpha=[0.2, 1.2]), ValueError,
     rf"alpha\[1\] must be in {UNIT}, got 1.2"),
    (lambda: SoftmaxFocalLoss(alpha="0.25"), TypeError, "alpha must be None, a number"),
    (lambda: SoftmaxFocalLoss(alpha=torch.ones(2, 2)), ValueError, r"shape \(C,\)"),
    (lambda: SoftmaxCrossEntropy(torch.tensor([1, 2])), TypeError, "weight must be a floating"),
    (lambda: SoftmaxCrossEntropy(torch.ones(2, 3)), ValueError, r"weight must be a 1-d"),
    (lambda: SoftmaxCrossEntropy(torch.tensor([1.0, -1.0])), ValueError, "finite values >= 0"),
    (lambda: SoftmaxCrossEntropy([1.0, float("nan")]), ValueError, r"weight\[1\] must be in"),
    (lambda: SoftmaxCrossEntropy(weight="balanced"), TypeError, "weight must be None or a 1-d"),
    (lambda: SoftmaxCrossEntropy(0.5), TypeError, "weight must be None or a 1-d"),
    (lambda: SoftmaxFocalLoss(gamma=float("nan")), ValueError, "gamma must be in"),
])
def test_bad_options_raise_in_the_constructor(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_options_are_keyword_only_except_the_class_weight():
    with pytest.raises(TypeError):
        SigmoidFocalLoss(0.25)  # type: ignore
    with pytest.raises(TypeError):
        SoftmaxFocalLoss([1.0, 2.0])  # type: ignore
    assert torch.equal(SoftmaxCrossEntropy(torch.ones(3)).weight, torch.ones(3))
