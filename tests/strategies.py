"""Hypothesis strategies for loss inputs."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

# XLA flushes subnormal products to zero; weights far from that range keep backends exact
WEIGHT = st.one_of(st.just(0.0), st.floats(1e-3, 3))


@st.composite
def sigmoid_case(draw):
    """(logits, targets, weights or None, options) as float64 NumPy data."""
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6))
    logits = draw(hnp.arrays(np.float64, shape,
                             elements=st.floats(-60, 60, allow_subnormal=False)))
    hard = draw(st.booleans())
    if hard:
        targets = draw(hnp.arrays(np.float64, shape, elements=st.sampled_from([0.0, 1.0])))
    else:
        targets = draw(hnp.arrays(np.float64, shape, elements=st.floats(0, 1)))
    weights = None
    if draw(st.booleans()):
        # a trailing part of the loss shape, some sides set to 1: broadcasts *to* it
        ndim = draw(st.integers(0, len(shape)))
        tail = shape[len(shape) - ndim:]
        wshape = tuple(side if draw(st.booleans()) else 1 for side in tail)
        weights = draw(hnp.arrays(np.float64, wshape, elements=WEIGHT))
    options = {
        "alpha": draw(st.one_of(st.none(), st.floats(0, 1))),
        "gamma": draw(st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.7])),
        "reduction": draw(st.sampled_from(["none", "sum", "mean"])),
        "label_smoothing": draw(st.sampled_from([0.0, 0.1])),
    }
    if options["reduction"] == "mean" and draw(st.booleans()):
        options["normalizer"] = draw(st.floats(0, 50))
    return logits, targets, weights, options


@st.composite
def softmax_case(draw):
    """(logits, labels, weights or None, options) with classes on the last axis."""
    batch = draw(hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=6))
    classes = draw(st.integers(2, 7))
    logits = draw(hnp.arrays(np.float64, (*batch, classes),
                             elements=st.floats(-60, 60, allow_subnormal=False)))
    labels = draw(hnp.arrays(np.int64, batch, elements=st.integers(-1, classes - 1)))
    weights = None
    if draw(st.booleans()):
        weights = draw(hnp.arrays(np.float64, batch, elements=WEIGHT))
    alpha = draw(st.one_of(
        st.none(), st.floats(0, 1),
        st.lists(st.floats(0, 1), min_size=classes, max_size=classes)))
    options = {
        "alpha": alpha,
        "gamma": draw(st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.7])),
        "reduction": draw(st.sampled_from(["none", "sum", "mean"])),
        "label_smoothing": draw(st.sampled_from([0.0, 0.1])),
    }
    return logits, labels, weights, options
