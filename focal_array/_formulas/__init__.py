"""Each loss's elementwise (or per-row) math, value and analytic derivative, with ``xp`` only.

A *formula* is a frozen dataclass holding a loss's scalar options (α, γ, …). It is the one
place where that loss's numerics live: :meth:`Formula.value` gives the loss and
:meth:`Formula.value_and_grad` the loss and its derivative with respect to the logits, both
written with the caller's array namespace only. The executors of
:mod:`focal_array._executors` run any formula fast on each backend (NumPy block by block,
JAX behind a ``custom_jvp``, PyTorch behind an ``autograd.Function``); the API modules
(:mod:`focal_array.losses`, :mod:`focal_array.gradients`) validate, choose a formula and
reduce. Adding a loss means writing a formula here, nothing in a backend.

Shapes. An *elementwise* formula (``rowwise = False``) maps logits ``x`` and auxiliary
arrays of ``x``'s shape (targets) to a loss of ``x``'s shape. A *row-wise* formula
(``rowwise = True``) reduces over a class axis ``axis`` of ``x``: its auxiliary arrays have
``x``'s shape without that axis (labels), ``x``'s own shape (probability targets), or are
per-class vectors of shape ``(C,)`` (see :attr:`Formula.aux_kinds`), and its loss has the
row shape. The derivative always has
``x``'s shape: that of ``sum(loss)``.

Formulas are hashable (JAX takes them as static arguments) and never branch on data, so
they run unchanged inside ``jax.jit``, ``vmap`` and ``torch.compile`` and on any device.
"""

from __future__ import annotations

from .base import Formula
from .distribution import DistributionFocal
from .poly import SigmoidPoly1, SoftmaxPoly1
from .sigmoid import SigmoidFocal, SigmoidFocalLabels, SigmoidFocalProbs
from .softmax import SoftmaxFocal, SoftmaxFocalProbs, SoftmaxFocalSmoothed, SoftmaxFocalSoft
from .variants import QualityFocal, SigmoidFocalStar, Varifocal

__all__ = ["DistributionFocal", "Formula", "QualityFocal", "SigmoidFocal",
           "SigmoidFocalLabels", "SigmoidFocalProbs", "SigmoidFocalStar", "SigmoidPoly1",
           "SoftmaxFocal", "SoftmaxFocalProbs", "SoftmaxFocalSmoothed", "SoftmaxFocalSoft",
           "SoftmaxPoly1",
           "Varifocal"]
