"""focal_array.matcher on every backend: each matching rule by hand, properties against the
float64 reference, jit/vmap/compile, and every bad-input error."""

from __future__ import annotations

import math

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from focal_array import boxes as fb
from focal_array import matcher as fm
from focal_array.matcher import BACKGROUND, IGNORE
from tests import reference_matcher as ref
from tests.helpers import asarray, assert_close, library, require, to_numpy

SETTINGS = settings(max_examples=6, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
COMPILE_WARNINGS = pytest.mark.filterwarnings(
    "ignore:Dynamo detected a call to a `functools.lru_cache`:UserWarning")
B, N, M = -1, -2, None  # shorthands in expected arrays: BACKGROUND, IGNORE


def f32(xp, value):
    return asarray(xp, value, "float32")


def ints(x):
    return to_numpy(x).astype(np.int64)


def check_ints(actual, expected, xp):
    assert library(__import__("array_api_compat").array_namespace(actual)) == library(xp)
    assert xp.isdtype(actual.dtype, "signed integer")
    np.testing.assert_array_equal(ints(actual), np.asarray(expected))


def test_constants_match_package():
    import focal_array

    assert (fm.BACKGROUND, fm.IGNORE) == (focal_array.BACKGROUND, focal_array.IGNORE) == (-1, -2)


# --------------------------------------------------------------------------- thresholds


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_threshold_boundaries_are_exact(xp, dtype):
    # anchor of area 2 against gts of area 4, 4.25, 5, 6: IoU 0.5, 0.47, 0.4, 1/3 exactly
    anchors = asarray(xp, [[0.0, 0.0, 2.0, 1.0]], dtype)
    gts = asarray(xp, [[[0.0, 0.0, 4.0, 1.0]], [[0.0, 0.0, 4.25, 1.0]],
                       [[0.0, 0.0, 5.0, 1.0]], [[0.0, 0.0, 6.0, 1.0]]], dtype)
    got = fm.match_anchors(anchors, gts, allow_low_quality_matches=False)
    check_ints(got, [[0], [IGNORE], [IGNORE], [BACKGROUND]], xp)
    # no ignore band when low == high
    got = fm.match_anchors(anchors, gts, high=0.5, low=0.5, allow_low_quality_matches=False)
    check_ints(got, [[0], [BACKGROUND], [BACKGROUND], [BACKGROUND]], xp)


@pytest.mark.parametrize(("high", "low", "expected"), [
    (0.5, 0.4, [0, 0, B, B]),  # RetinaNet
    (0.5, 0.3, [0, 0, N, B]),  # the source note
    (0.7, 0.3, [0, N, N, B]),  # RPN
])
def test_threshold_presets(xp, high, low, expected):
    q = f32(xp, [[0.75], [0.65], [0.35], [0.25]])
    check_ints(fm.match(q, high=high, low=low, allow_low_quality_matches=False), expected, xp)


def test_ties_go_to_lowest_gt_index(xp):
    anchors = f32(xp, [[0.0, 0.0, 10.0, 10.0]])
    dup = [0.0, 0.0, 10.0, 10.0]
    check_ints(fm.match_anchors(anchors, f32(xp, [dup, dup])), [0], xp)
    check_ints(fm.match_anchors(anchors, f32(xp, [[50.0, 50.0, 60.0, 60.0], dup, dup])), [1],
               xp)
    check_ints(fm.match(f32(xp, [[0.3, 0.7, 0.7]])), [1], xp)


# --------------------------------------------------------------------------- low quality


def test_low_quality_matches_claim_tied_best_anchors(xp):
    anchors = f32(xp, [[0.0, 0.0, 10.0, 10.0], [20.0, 0.0, 30.0, 10.0],
                       [100.0, 100.0, 110.0, 110.0]])
    # gt1's best IoU is 0.2, reached by anchors 0 and 1 (a tie); anchor 0 keeps its own gt0
    gts = f32(xp, [[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 25.0, 10.0]])
    check_ints(fm.match_anchors(anchors, gts), [0, 1, BACKGROUND], xp)
    check_ints(fm.match_anchors(anchors, gts, allow_low_quality_matches=False),
               [0, BACKGROUND, BACKGROUND], xp)


def test_claimed_anchor_takes_its_own_best_gt(xp):
    # anchor 0: IoU 0.4 with gt0 (its best), 1/3 with gt1; gt1's best anchor is anchor 0
    anchors = f32(xp, [[0.0, 0.0, 10.0, 10.0], [300.0, 300.0, 310.0, 310.0]])
    gts = f32(xp, [[0.0, 0.0, 10.0, 25.0], [5.0, 0.0, 15.0, 10.0]])
    check_ints(fm.match_anchors(anchors, gts), [0, BACKGROUND], xp)
    check_ints(fm.match_anchors(anchors, gts, allow_low_quality_matches=False),
               [IGNORE, BACKGROUND], xp)


def test_gt_without_overlap_claims_nothing(xp):
    anchors = f32(xp, [[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    gts = f32(xp, [[100.0, 100.0, 110.0, 110.0], [5.0, 5.0, 5.0, 5.0]])  # far; zero-area
    check_ints(fm.match_anchors(anchors, gts), [BACKGROUND, BACKGROUND], xp)


def test_tie_tolerance_widens_low_quality_ties(xp):
    q = f32(xp, [[0.3], [0.29], [0.0]])
    check_ints(fm.match(q), [0, B, B], xp)
    check_ints(fm.match(q, tie_tolerance=0.02), [0, 0, B], xp)
    check_ints(fm.match(q, tie_tolerance=0.5), [0, 0, B], xp)  # zero overlap never claimed


# --------------------------------------------------------------------------- padding, crowd


def test_padded_gts_never_match(xp):
    anchors = f32(xp, [[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]])
    gts = f32(xp, [[[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]],
                   [[math.nan, 0.0, -5.0, math.inf], [0.0, 0.0, 10.0, 10.0]]])
    valid = asarray(xp, [[False, True], [False, False]])
    got = fm.match_anchors(anchors, gts, gt_valid=valid)
    check_ints(got, [[BACKGROUND, 1], [BACKGROUND, BACKGROUND]], xp)  # image 1: all padding
    q, keep_second = f32(xp, [[0.9, 0.1]]), asarray(xp, [False, True])
    check_ints(fm.match(q, gt_valid=keep_second, allow_low_quality_matches=False), [B], xp)
    check_ints(fm.match(q, gt_valid=keep_second), [1], xp)  # gt 1's best anchor, low quality


def test_zero_gts_all_background(xp):
    anchors = f32(xp, np.tile([[0.0, 0.0, 1.0, 1.0]], (3, 1)))
    check_ints(fm.match_anchors(anchors, f32(xp, np.zeros((0, 4)))), [B, B, B], xp)
    check_ints(fm.match_anchors(anchors, f32(xp, np.zeros((2, 0, 4)))), [[B, B, B]] * 2, xp)
    labels, targets, _ = fm.assign_targets(anchors, f32(xp, np.zeros((0, 4))),
                                           asarray(xp, np.zeros(0, np.int32)))
    check_ints(labels, [B, B, B], xp)
    assert_close(targets, np.zeros((3, 4)), xp, dtype="float32")
    assert tuple(fm.match_anchors(f32(xp, np.zeros((0, 4))), anchors).shape) == (0,)
    # empty masks alongside zero gts (a padded batch of images without boxes)
    empty = asarray(xp, np.zeros((2, 0), dtype=bool))
    check_ints(fm.match_anchors(anchors, f32(xp, np.zeros((2, 0, 4))), gt_valid=empty,
                                gt_crowd=empty), [[B, B, B]] * 2, xp)


def test_crowd_regions(xp):
    anchors = f32(xp, [
        [0.0, 0.0, 10.0, 10.0],        # inside crowd 0 (IoA 1): ignored
        [95.0, 95.0, 105.0, 105.0],    # IoA 0.25 with crowd 0: background
        [200.0, 200.0, 210.0, 210.0],  # positive for gt 1, inside crowd 2: stays positive
        [0.0, 0.0, 100.0, 100.0],      # identical to crowd 0 (IoU 1): never matched
        [5.0, 5.0, 5.0, 5.0],          # degenerate: background
    ])
    gts = f32(xp, [[0.0, 0.0, 100.0, 100.0], [200.0, 200.0, 210.0, 210.0],
                   [150.0, 150.0, 250.0, 250.0]])
    crowd = asarray(xp, [True, False, True])
    check_ints(fm.match_anchors(anchors, gts, gt_crowd=crowd), [N, B, 1, N, B], xp)
    check_ints(fm.match_anchors(anchors, gts, gt_crowd=crowd, crowd_ioa=0.25),
               [N, N, 1, N, B], xp)
    # a padded crowd box is no crowd region
    valid = asarray(xp, [False, True, True])
    check_ints(fm.match_anchors(anchors, gts, gt_crowd=crowd, gt_valid=valid),
               [B, B, 1, B, B], xp)


def test_degenerate_anchor_is_background(xp):
    anchors = f32(xp, [[5.0, 5.0, 5.0, 5.0], [0.0, 0.0, 10.0, 0.0]])
    gts = f32(xp, [[0.0, 0.0, 10.0, 10.0]])
    check_ints(fm.match_anchors(anchors, gts), [B, B], xp)


# --------------------------------------------------------------------------- batching


def test_shared_and_padded_batch_layouts(xp):
    rng = np.random.default_rng(1)
    anchors = _grid_boxes(rng, (9,))
    gts = _grid_boxes(rng, (3, 4))
    valid = rng.random((3, 4)) > 0.3
    expected = np.stack([ref.match_anchors(anchors, gts[b], valid[b]) for b in range(3)])
    got = fm.match_anchors(f32(xp, anchors), f32(xp, gts), gt_valid=asarray(xp, valid))
    check_ints(got, expected, xp)
    batched = np.broadcast_to(anchors, (3, 9, 4))
    got = fm.match_anchors(f32(xp, batched), f32(xp, gts), gt_valid=asarray(xp, valid))
    check_ints(got, expected, xp)


def _grid_boxes(rng, lead, size=20, max_wh=12):
    xy = rng.integers(0, size, size=(*lead, 2))
    wh = rng.integers(0, max_wh, size=(*lead, 2))
    return np.concatenate([xy, xy + wh], axis=-1).astype(np.float64)


# --------------------------------------------------------------------------- properties


@st.composite
def problems(draw, n_images=2, n_anchors=12, n_gts=5):
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    anchors = _grid_boxes(rng, (n_anchors,))
    gts = _grid_boxes(rng, (n_images, n_gts))
    valid = rng.random((n_images, n_gts)) > 0.25
    crowd = rng.random((n_images, n_gts)) > 0.8
    labels = rng.integers(0, 7, size=(n_images, n_gts))
    options = draw(st.fixed_dictionaries({
        "thresholds": st.sampled_from([(0.5, 0.4), (0.5, 0.3), (0.7, 0.3), (0.5, 0.5)]),
        "allow_low_quality_matches": st.booleans(),
        "crowd_ioa": st.sampled_from([0.5, 0.25, 1.0]),
    }))
    return anchors, gts, valid, crowd, labels, options


def _options(options):
    high, low = options["thresholds"]
    return {"high": high, "low": low, "crowd_ioa": options["crowd_ioa"],
            "allow_low_quality_matches": options["allow_low_quality_matches"]}


@SETTINGS
@given(problem=problems())
def test_match_anchors_equals_reference(xp, problem):
    anchors, gts, valid, crowd, _, options = problem
    kw = _options(options)
    expected = np.stack([ref.match_anchors(anchors, gts[b], valid[b], crowd[b], **kw)
                         for b in range(len(gts))])
    got = fm.match_anchors(f32(xp, anchors), f32(xp, gts), gt_valid=asarray(xp, valid),
                           gt_crowd=asarray(xp, crowd), **kw)
    check_ints(got, expected, xp)


@SETTINGS
@given(problem=problems(n_images=1), perm_seed=st.integers(0, 1000))
def test_permuting_gts_permutes_matches(xp, problem, perm_seed):
    anchors, gts, valid, _, _, options = problem
    gts, valid = gts[0], valid[0]
    perm = np.random.default_rng(perm_seed).permutation(len(gts))
    kw = _options(options)
    got = ints(fm.match_anchors(f32(xp, anchors), f32(xp, gts), gt_valid=asarray(xp, valid),
                                **kw))
    got_p = ints(fm.match_anchors(f32(xp, anchors), f32(xp, gts[perm]),
                                  gt_valid=asarray(xp, valid[perm]), **kw))
    np.testing.assert_array_equal(np.minimum(got, 0), np.minimum(got_p, 0))
    iou = ref.iou(anchors, gts)
    for a in np.nonzero(got >= 0)[0]:
        j = perm[got_p[a]]
        assert j == got[a] or iou[a, j] == iou[a, got[a]]  # same gt, or an exact tie


@SETTINGS
@given(problem=problems())
def test_assign_targets_equals_reference(xp, problem):
    anchors, gts, valid, crowd, labels, options = problem
    kw = _options(options)
    w = (10.0, 10.0, 5.0, 5.0)
    got_labels, got_targets, got_matched = fm.assign_targets(
        asarray(xp, anchors, "float64"), asarray(xp, gts, "float64"),
        asarray(xp, labels, "int32"), gt_valid=asarray(xp, valid),
        gt_crowd=asarray(xp, crowd), weights=w, num_classes=7, **kw)
    for b in range(len(gts)):
        m = ref.match_anchors(anchors, gts[b], valid[b], crowd[b], **kw)
        np.testing.assert_array_equal(ints(got_matched)[b], m)
        want_labels = np.where(m >= 0, labels[b][np.maximum(m, 0)], m)
        np.testing.assert_array_equal(ints(got_labels)[b], want_labels)
        want_t = np.zeros((len(anchors), 4))
        for a in np.nonzero(m >= 0)[0]:
            want_t[a] = ref.encode(anchors[a], gts[b][m[a]], w)
        np.testing.assert_allclose(to_numpy(got_targets)[b], want_t, rtol=1e-12, atol=1e-12)
    assert got_labels.dtype == xp.int32


# --------------------------------------------------------------------------- assign_targets


def test_assign_targets_hand_case(xp):
    anchors = f32(xp, [[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0],
                       [0.0, 0.0, 10.0, 25.0], [7.0, 7.0, 7.0, 7.0]])
    gts = f32(xp, [[1.0, 0.0, 11.0, 10.0], [0.0, 0.0, 10.0, 10.0]])
    gt_labels = asarray(xp, [4, 2], "int64")
    labels, targets, matched = fm.assign_targets(anchors, gts, gt_labels,
                                                 allow_low_quality_matches=False)
    # anchor 0: IoU 1 with gt1; anchor 2: IoU 0.4 with gt1 -> ignored; degenerate -> bg
    check_ints(matched, [1, B, N, B], xp)
    check_ints(labels, [2, B, N, B], xp)
    assert_close(targets, np.zeros((4, 4)), xp, dtype="float32")
    check_ints(labels + 1, [3, 0, -1, 0], xp)  # softmax head: background class 0
    labels, targets, matched = fm.assign_targets(anchors[:1, ...], gts[:1, ...], gt_labels[:1])
    assert_close(targets, [ref.encode([0, 0, 10, 10], [1, 0, 11, 10])], xp, dtype="float32")


def test_assign_targets_unsigned_labels_get_index_dtype(xp):
    anchors = f32(xp, [[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]])
    gts = f32(xp, [[0.0, 0.0, 10.0, 10.0]])
    labels, _, matched = fm.assign_targets(anchors, gts, asarray(xp, [3], "uint8"))
    assert labels.dtype == matched.dtype
    check_ints(labels, [3, B], xp)


# --------------------------------------------------------------------------- hard negatives


def test_hard_negative_mining_hand_case(xp):
    loss = f32(xp, [0.1, 0.9, 0.5, 0.7, 0.2, 0.3])
    labels = asarray(xp, [3, B, B, N, B, B], "int64")
    got = fm.hard_negative_mining(loss, labels, neg_pos_ratio=2.0)
    assert got.dtype == xp.bool
    np.testing.assert_array_equal(to_numpy(got), [True, True, True, False, False, False])
    # more requested than available: every negative, never the ignored one
    got = fm.hard_negative_mining(loss, labels, neg_pos_ratio=10.0)
    np.testing.assert_array_equal(to_numpy(got), [True, True, True, False, True, True])


def test_hard_negative_mining_minimum_without_positives(xp):
    loss = f32(xp, [[0.1, 0.9, 0.5, 0.5], [0.1, 0.9, 0.5, 0.5]])
    labels = asarray(xp, [[B, B, B, B], [0, B, B, B]], "int64")
    got = fm.hard_negative_mining(loss, labels, min_negatives=2)
    # row 0: no positive, 2 hardest (tie at 0.5 -> lower index); row 1: 3 x 1 positive
    np.testing.assert_array_equal(to_numpy(got), [[False, True, True, False],
                                                  [True, True, True, True]])
    got = fm.hard_negative_mining(loss, labels)
    np.testing.assert_array_equal(to_numpy(got)[0], [False] * 4)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), ratio=st.sampled_from([0.0, 1.0, 2.5, 3.0]),
       minimum=st.integers(0, 3))
def test_hard_negative_mining_equals_reference(xp, seed, ratio, minimum):
    rng = np.random.default_rng(seed)
    loss = rng.integers(0, 5, size=(3, 16)).astype(np.float64) / 4  # many ties
    labels = rng.choice([-2, -1, -1, -1, 0, 1], size=(3, 16))
    got = fm.hard_negative_mining(asarray(xp, loss, "float32"), asarray(xp, labels, "int64"),
                                  neg_pos_ratio=ratio, min_negatives=minimum)
    expected = np.stack([ref.hard_negative_mining(loss[b], labels[b], ratio, minimum)
                         for b in range(3)])
    np.testing.assert_array_equal(to_numpy(got), expected)


# --------------------------------------------------------------------------- transforms


def _jax_problem():
    rng = np.random.default_rng(5)
    anchors = _grid_boxes(rng, (10,))
    gts = _grid_boxes(rng, (3, 4))
    valid = rng.random((3, 4)) > 0.3
    crowd = rng.random((3, 4)) > 0.7
    labels = rng.integers(0, 5, (3, 4))
    return anchors, gts, valid, crowd, labels


def test_jax_jit_and_vmap_equal_python_loop():
    jax = require("jax")
    import jax.numpy as jnp

    anchors, gts, valid, crowd, labels = (jnp.asarray(x) for x in _jax_problem())
    anchors, gts = anchors.astype(jnp.float32), gts.astype(jnp.float32)

    def one(g, v, c, lab):
        return fm.assign_targets(anchors, g, lab, gt_valid=v, gt_crowd=c)

    loop = [one(gts[b], valid[b], crowd[b], labels[b]) for b in range(3)]
    jitted = jax.jit(lambda g, v, c, lab: fm.assign_targets(anchors, g, lab, gt_valid=v,
                                                            gt_crowd=c))(gts, valid, crowd,
                                                                         labels)
    vmapped = jax.jit(jax.vmap(one))(gts, valid, crowd, labels)
    for out in (jitted, vmapped):
        for k in range(3):
            np.testing.assert_array_equal(np.asarray(out[k]),
                                          np.stack([np.asarray(r[k]) for r in loop]))
    loss = jnp.asarray(np.random.default_rng(0).random((3, 10)), dtype=jnp.float32)
    mined = jax.jit(jax.vmap(fm.hard_negative_mining))(loss, loop_labels := vmapped[0])
    eager = np.stack([np.asarray(fm.hard_negative_mining(loss[b], loop_labels[b]))
                      for b in range(3)])
    np.testing.assert_array_equal(np.asarray(mined), eager)


@COMPILE_WARNINGS
def test_torch_compile_fullgraph():
    torch = require("torch")
    anchors, gts, valid, crowd, labels = (torch.asarray(x) for x in _jax_problem())
    anchors, gts = anchors.float(), gts.float()
    eager_m = fm.match_anchors(anchors, gts, gt_valid=valid, gt_crowd=crowd)
    eager_a = fm.assign_targets(anchors, gts, labels, gt_valid=valid, gt_crowd=crowd)
    # fullgraph capture and AOT autograd's functional graph, run eagerly: Inductor's code
    # for the matcher is checked inside the whole detection loss (test_detection)
    compiled_m = torch.compile(
        lambda a, g, v, c: fm.match_anchors(a, g, gt_valid=v, gt_crowd=c), fullgraph=True,
        backend="aot_eager")
    compiled_a = torch.compile(
        lambda a, g, lab, v, c: fm.assign_targets(a, g, lab, gt_valid=v, gt_crowd=c),
        fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled_m(anchors, gts, valid, crowd), eager_m)
    for got, want in zip(compiled_a(anchors, gts, labels, valid, crowd), eager_a,
                         strict=True):
        torch.testing.assert_close(got, want)


def test_value_checks_skipped_under_jit():
    jax = require("jax")
    import jax.numpy as jnp

    bad = jnp.asarray([[3.0, 0.0, 1.0, 1.0]])
    out = jax.jit(fm.match_anchors)(bad, bad)  # not checked in a trace: counts as empty
    np.testing.assert_array_equal(np.asarray(out), [BACKGROUND])


# --------------------------------------------------------------------------- bad input


def test_bad_shapes(xp):
    a = f32(xp, np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"anchors must have shape \(\.\.\., 4\)"):
        fm.match_anchors(f32(xp, np.zeros((3, 5))), a)
    with pytest.raises(ValueError, match=r"gt_boxes must have shape \(\.\.\., 4\)"):
        fm.match_anchors(a, f32(xp, np.zeros((2, 3))))
    with pytest.raises(ValueError, match=r"batch dimensions of anchors \(2,\) and gt_boxes"):
        fm.match_anchors(f32(xp, np.zeros((2, 3, 4))), f32(xp, np.zeros((3, 1, 4))))
    with pytest.raises(ValueError, match=r"gt_valid must have shape \(3,\)"):
        fm.match_anchors(a, a, gt_valid=asarray(xp, [True, False]))
    with pytest.raises(ValueError, match=r"gt_labels must have shape \(3,\)"):
        fm.assign_targets(a, a, asarray(xp, [1, 2], "int64"))
    with pytest.raises(ValueError, match=r"quality must have shape \(\.\.\., A, G\)"):
        fm.match(f32(xp, [0.5]))
    with pytest.raises(ValueError, match=r"labels must have shape \(4,\)"):
        fm.hard_negative_mining(f32(xp, np.zeros(4)), asarray(xp, [1, 2], "int64"))


def test_mixed_libraries(xp):
    if library(xp) == "numpy":
        pytest.skip("needs a second library")
    a = f32(xp, np.zeros((3, 4)))
    with pytest.raises(TypeError, match=r"'anchors' is a .*'gt_boxes' is a numpy.ndarray"):
        fm.match_anchors(a, np.zeros((3, 4), np.float32))


@pytest.mark.parametrize(("kw", "message"), [
    ({"high": 0.4, "low": 0.5}, r"low \(0.5\) must not exceed high \(0.4\)"),
    ({"high": 1.5}, r"high must be in \[0.0, 1.0\]"),
    ({"low": -0.1}, r"low must be in \[0.0, 1.0\]"),
    ({"crowd_ioa": 0.0}, r"crowd_ioa must be in \(0.0, 1.0\]"),
    ({"tie_tolerance": -1.0}, r"tie_tolerance must be in"),
])
def test_bad_options(xp, kw, message):
    a = f32(xp, [[0.0, 0.0, 1.0, 1.0]])
    with pytest.raises(ValueError, match=message):
        fm.match_anchors(a, a, **kw)


def test_bad_dtypes(xp):
    a = f32(xp, [[0.0, 0.0, 1.0, 1.0]])
    with pytest.raises(TypeError, match="gt_labels must have an integer dtype"):
        fm.assign_targets(a, a, f32(xp, [1.0]))
    with pytest.raises(TypeError, match="gt_valid must be a boolean array"):
        fm.match_anchors(a, a, gt_valid=asarray(xp, [1], "int32"))
    with pytest.raises(TypeError, match="anchors must have a real floating dtype"):
        fm.match_anchors(asarray(xp, [[0, 0, 1, 1]], "int32"), a)
    with pytest.raises(TypeError, match="labels must have an integer dtype"):
        fm.hard_negative_mining(f32(xp, [1.0]), f32(xp, [1.0]))
    with pytest.raises(ValueError, match="min_negatives must be a non-negative integer"):
        fm.hard_negative_mining(f32(xp, [1.0]), asarray(xp, [1], "int64"), min_negatives=-1)


def test_malformed_boxes_named(xp):
    a = f32(xp, [[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    gts = np.asarray([[[0.0, 0.0, 1.0, 1.0], [5.0, 0.0, 1.0, 1.0]],
                      [[0.0, 4.0, 1.0, 1.0], [0.0, 0.0, math.inf, 1.0]]])
    with pytest.raises(ValueError, match=r"gt_boxes\[0, 1\] = \[5\.0, .* has x2 < x1"):
        fm.match_anchors(a, f32(xp, gts))
    valid = asarray(xp, [[True, False], [True, True]])
    with pytest.raises(ValueError, match=r"gt_boxes\[1, 0\] = .* has y2 < y1"):
        fm.match_anchors(a, f32(xp, gts), gt_valid=valid)
    with pytest.raises(ValueError, match=r"anchors\[1\] = .* has a non-finite coordinate"):
        fm.match_anchors(f32(xp, [[0.0, 0.0, 1.0, 1.0], [math.nan, 0, 1, 1]]), a)


def test_bad_labels(xp):
    a = f32(xp, [[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 2.0, 2.0]])
    labels = asarray(xp, [1, 3], "int64")
    with pytest.raises(ValueError, match=r"gt_labels\[1\] = 3 is not below num_classes=3"):
        fm.assign_targets(a, a, labels, num_classes=3)
    with pytest.raises(ValueError, match=r"gt_labels\[0\] = -1 is negative"):
        fm.assign_targets(a, a, asarray(xp, [-1, 0], "int64"))
    # padding may carry any label (anchor 0 has IoU 1/4 with the one real gt: background)
    out = fm.assign_targets(a, a, asarray(xp, [-1, 0], "int64"),
                            gt_valid=asarray(xp, [False, True]), num_classes=1)
    check_ints(out[0], [B, 0], xp)
    with pytest.raises(ValueError, match="num_classes must be a positive integer"):
        fm.assign_targets(a, a, labels, num_classes=0)


@pytest.mark.parametrize("tie_tolerance", [0.0, 0.05])
def test_many_anchors_equal_reference(xp, tie_tolerance):
    # enough anchors for the blocked max over anchors (not a multiple of its block), on a
    # grid with many exact IoU ties; padding and crowd gts in a batch of two
    rng = np.random.default_rng(11)
    anchors = _grid_boxes(rng, (5_003,), size=60, max_wh=20)
    gts = _grid_boxes(rng, (2, 9), size=60, max_wh=20)
    # a gt whose only (low-quality, IoU 1/3) overlap is the very last anchor
    gts[0, 8], anchors[-1] = [100, 100, 110, 110], [105, 100, 115, 110]
    valid = np.ones((2, 9), bool)
    valid[1, 6:] = False
    crowd = np.zeros((2, 9), bool)
    crowd[0, 2] = True
    kw = {"tie_tolerance": tie_tolerance}
    expected = np.stack([ref.match_anchors(anchors, gts[b], valid[b], crowd[b], **kw)
                         for b in range(2)])
    assert (expected >= 0).sum() > 50 and (expected == IGNORE).sum() > 50
    assert expected[0, -1] == 8
    got = fm.match_anchors(f32(xp, anchors), f32(xp, gts), gt_valid=asarray(xp, valid),
                           gt_crowd=asarray(xp, crowd), **kw)
    check_ints(got, expected, xp)


def test_iou_of_match_anchors_equals_box_iou(xp):
    # the memory-lean IoU inside the matcher agrees with the public box_iou
    rng = np.random.default_rng(3)
    anchors, gts = _grid_boxes(rng, (30,)), _grid_boxes(rng, (6,))
    iou = to_numpy(fb.box_iou(f32(xp, anchors), f32(xp, gts)))
    got = ints(fm.match_anchors(f32(xp, anchors), f32(xp, gts)))
    check_ints(fm.match(f32(xp, iou)), got, xp)


# --------------------------------------------------------------------------- gt-major paths


@pytest.mark.parametrize("n_gts", [0, 1, 2, 3, 7, 20])
def test_gt_major_match_equals_reference_at_coco_counts(xp, n_gts):
    # NumPy/PyTorch/array_api_strict build the IoU gt-major (G, A), JAX anchor-major: every
    # backend must give the reference's matches, on a tie-heavy grid with padding and crowds
    rng = np.random.default_rng(100 + n_gts)
    anchors = _grid_boxes(rng, (300,), size=40, max_wh=16)
    gts = _grid_boxes(rng, (2, n_gts), size=40, max_wh=16)
    if n_gts >= 2:
        gts[:, 1] = gts[:, 0]  # duplicate gts: ties between gts go to the lower index
        gts[0, -1] = anchors[7]  # a gt equal to an anchor (IoU exactly 1)
    valid = rng.random((2, n_gts)) > 0.2
    crowd = rng.random((2, n_gts)) > 0.8
    for kw in ({}, {"allow_low_quality_matches": False}, {"tie_tolerance": 0.05}):
        for v, c in ((None, None), (valid, None), (valid, crowd)):
            expected = np.stack([
                ref.match_anchors(anchors, gts[b], None if v is None else v[b],
                                  None if c is None else c[b], **kw) for b in range(2)])
            got = fm.match_anchors(f32(xp, anchors), f32(xp, gts),
                                   gt_valid=None if v is None else asarray(xp, v),
                                   gt_crowd=None if c is None else asarray(xp, c), **kw)
            check_ints(got, expected, xp)


@pytest.mark.parametrize("n_gts", [1, 3, 255, 256, 300])
def test_first_max_over_gts_is_the_first_argmax(xp, n_gts):
    # the tie-scored argmax (uint8 scores below 256 gts, uint16 above; float on PyTorch)
    # against xp.argmax, on a matrix of few distinct values, so most columns have ties
    from focal_array import _matching

    rng = np.random.default_rng(n_gts)
    q = f32(xp, rng.integers(0, 3, size=(2, n_gts, 50)) / 2 - (rng.random((2, n_gts, 1)) < 0.1))
    best = xp.max(q, axis=-2)
    scratch = xp.empty(q.shape, dtype=q.dtype)
    got = _matching._first_max_gt(q, best, scratch, xp)
    check_ints(got, ints(xp.argmax(q, axis=-2)), xp)


def test_match_anchors_equals_match_of_box_iou_across_gt_counts(xp):
    # the gt-major IoU inside match_anchors against the public (A, G) box_iou + match, with
    # exact (integer-box) IoUs so both layouts see the same ties
    rng = np.random.default_rng(8)
    anchors = _grid_boxes(rng, (400,), size=30, max_wh=12)
    for n_gts in (1, 2, 3, 5, 7, 50):
        gts = _grid_boxes(rng, (n_gts,), size=30, max_wh=12)
        iou = fb.box_iou(f32(xp, anchors), f32(xp, gts))
        check_ints(fm.match_anchors(f32(xp, anchors), f32(xp, gts)), ints(fm.match(iou)), xp)


def test_torch_gradients_untouched_by_matching():
    torch = require("torch")
    # the in-place work happens on detached private temporaries: the caller's boxes keep
    # requires_grad and their values
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 0.0, 30.0, 10.0]],
                           requires_grad=True)
    gts = torch.tensor([[0.0, 0.0, 10.0, 12.0]], requires_grad=True)
    before = anchors.detach().clone(), gts.detach().clone()
    out = fm.match_anchors(anchors, gts)
    assert out.tolist() == [0, BACKGROUND] and anchors.requires_grad
    assert torch.equal(anchors.detach(), before[0]) and torch.equal(gts.detach(), before[1])


# --------------------------------------------------------------------------- hostile input
# (issue 11) NaN qualities and losses, label codes below IGNORE: an eager error naming the
# position, and inside a trace a documented, finite behaviour.


def test_match_nan_quality_is_named(xp):
    q = f32(xp, [[0.6, 0.1], [0.2, math.nan], [0.1, 0.3]])
    with pytest.raises(ValueError, match=r"quality\[1, 1\] is NaN"):
        fm.match(q)
    with pytest.raises(ValueError, match=r"quality\[0, 1, 1\] is NaN"):
        fm.match(f32(xp, np.stack([to_numpy(q)] * 2)))


def test_match_nan_in_a_padded_column_is_allowed(xp):
    # gt 1 is padding: its column may hold anything; gt 0 alone: anchor 0 (0.6) positive,
    # anchor 1 (0.2) background, anchor 2 (0.1) background
    q = f32(xp, [[0.6, math.nan], [0.2, math.nan], [0.1, math.nan]])
    got = fm.match(q, gt_valid=asarray(xp, np.asarray([True, False])))
    check_ints(got, [0, BACKGROUND, BACKGROUND], xp)


def test_match_nan_under_jit_never_wins():
    jax = require("jax")
    import jax.numpy as jnp

    # by hand, NaN as "no overlap": anchor 0's real best is gt 1 at 0.2 (< low) but gt 1's
    # best anchor is anchor 0, so the low-quality rule gives it gt 1; anchor 1 has 0.6 with
    # gt 0; anchor 2 only 0.1s: background. With high = low = 0 a NaN still cannot win:
    # anchor 0 takes gt 1 (0.2 >= 0), not gt 0
    q = jnp.asarray([[math.nan, 0.2], [0.6, 0.1], [0.1, 0.1]], dtype=jnp.float32)
    assert np.asarray(jax.jit(lambda m: fm.match(m))(q)).tolist() == [1, 0, BACKGROUND]
    got = jax.jit(lambda m: fm.match(m, high=0.0, low=0.0))(q)
    assert np.asarray(got).tolist() == [1, 0, 0]
    # a gt column of NaNs only claims nothing and wins nothing
    q = jnp.asarray([[math.nan, 0.7], [math.nan, 0.0]], dtype=jnp.float32)
    assert np.asarray(jax.jit(lambda m: fm.match(m))(q)).tolist() == [1, BACKGROUND]


@pytest.mark.parametrize("code", [-3, -7, -100])
def test_hard_negative_mining_rejects_unknown_codes(xp, code):
    loss = asarray(xp, np.asarray([[0.1, 0.9, 0.5], [0.2, 0.3, 0.4]]), "float64")
    labels = asarray(xp, np.asarray([[0, -1, -2], [-1, code, 1]]))
    with pytest.raises(ValueError, match=rf"labels\[1, 1\] = {code} is not a label code"):
        fm.hard_negative_mining(loss, labels)


def test_hard_negative_mining_nan_loss_of_a_negative_is_named(xp):
    loss = asarray(xp, np.asarray([0.1, 0.5, math.nan, math.nan]), "float64")
    # anchor 3's NaN is at a positive (kept whatever its loss): allowed; anchor 2's is not
    with pytest.raises(ValueError, match=r"loss\[2\] is NaN at a negative anchor"):
        fm.hard_negative_mining(loss, asarray(xp, np.asarray([-2, -1, -1, 0])))
    got = fm.hard_negative_mining(loss, asarray(xp, np.asarray([-2, -1, -2, 0])))
    assert to_numpy(got).tolist() == [False, True, False, True]


def test_hard_negative_mining_under_jit():
    jax = require("jax")
    import jax.numpy as jnp

    # unchecked inside the trace: -7 is ignored like IGNORE; the NaN negative ranks below
    # every number. One positive, ratio 2: the two hardest negatives are 0.5 and 0.2
    loss = jnp.asarray([0.1, math.nan, 0.5, 0.2, 0.9])
    labels = jnp.asarray([0, -1, -1, -1, -7])
    got = jax.jit(lambda a, b: fm.hard_negative_mining(a, b, neg_pos_ratio=2.0))(loss, labels)
    assert np.asarray(got).tolist() == [True, False, True, True, False]
