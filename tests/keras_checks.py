"""The checks of :mod:`focal_array.keras` on one Keras backend, run in a subprocess.

``KERAS_BACKEND`` must be set before Keras is imported, so tests/test_keras.py runs this
file once per backend (``python tests/keras_checks.py OUT.json``) and reports each check
as its own test. Every check compares with Keras' own losses (the peer) or with a float64
NumPy reference written here; none with our own output.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import focal_array  # noqa: E402

# importing the package imports neither Keras nor the submodule
NOT_IMPORTED = [m for m in ("keras", "focal_array.keras") if m in sys.modules]

import keras  # noqa: E402

import focal_array.keras as fk  # noqa: E402

REDUCTIONS = ["sum_over_batch_size", "sum", "mean", None, "none", "mean_with_sample_weight"]
RNG = np.random.default_rng(0)
N, C = 6, 4
LOGITS = RNG.normal(0.0, 2.0, (N, C)).astype("float32")
PROBS = (1.0 / (1.0 + np.exp(-LOGITS))).astype("float32")
TARGETS = (RNG.random((N, C)) < 0.4).astype("float32")
SOFT = RNG.random((N, C)).astype("float32")
LABELS = RNG.integers(0, C, N)
WEIGHTS = RNG.random(N).astype("float32")
SOFTMAX = np.exp(LOGITS) / np.exp(LOGITS).sum(-1, keepdims=True)


def close(actual, expected, rtol=2e-5, atol=1e-6):
    np.testing.assert_allclose(np.asarray(keras.ops.convert_to_numpy(actual), np.float64),
                               np.asarray(keras.ops.convert_to_numpy(expected), np.float64),
                               rtol=rtol, atol=atol)


def same_as_keras(ours_cls, ours_kw, theirs, y_true, y_pred, their_y_true=None, rtol=2e-5,
                  reductions=("sum_over_batch_size",)):
    """Our loss equals Keras' under ``reductions`` (every one: ``REDUCTIONS``), with and
    without sample weights."""
    their_y_true = y_true if their_y_true is None else their_y_true
    for reduction in reductions:
        ours = ours_cls(**ours_kw, reduction=reduction)
        peer = theirs(reduction=reduction)
        for sw in (None, WEIGHTS):
            close(ours(y_true, y_pred, sample_weight=sw),
                  peer(their_y_true, y_pred, sample_weight=sw), rtol=rtol)


def eager_only_on_torch(check):
    """Mark a check to run on the torch backend only. On JAX each new shape or option of
    an eager call compiles (~2 s on a loaded CPU), so the JAX run keeps the checks that
    are about JAX: jitted fit, masks on JAX arrays, one comparison under every reduction."""
    check.backends = ("torch",)
    return check


def _has_option(function, name):
    import inspect

    return name in inspect.signature(function).parameters


# ----------------------------------------------------------------------------- checks


def check_import_is_lazy():
    assert not NOT_IMPORTED, f"import focal_array imported {NOT_IMPORTED}"


@eager_only_on_torch
def check_doctests():
    import doctest

    result = doctest.testmod(fk)
    assert result.attempted >= 5 and result.failed == 0, result


def check_sigmoid_focal_equals_binary_focal_crossentropy():
    for alpha, gamma, from_logits, smoothing in [(0.25, 2.0, True, 0.0), (0.6, 0.5, True, 0.1),
                                                 (0.25, 2.0, False, 0.0), (0.4, 3.0, False, 0.2)]:
        y_pred = LOGITS if from_logits else PROBS
        for y_true in (TARGETS, SOFT):
            same_as_keras(
                fk.SigmoidFocalLoss,
                dict(alpha=alpha, gamma=gamma, from_logits=from_logits,
                     label_smoothing=smoothing),
                lambda reduction, a=alpha, g=gamma, f=from_logits, s=smoothing:
                    keras.losses.BinaryFocalCrossentropy(
                        apply_class_balancing=True, alpha=a, gamma=g, from_logits=f,
                        label_smoothing=s, reduction=reduction),
                y_true, y_pred, reductions=REDUCTIONS if smoothing == 0.1 else ("sum",))
    # no balancing
    same_as_keras(fk.SigmoidFocalLoss, dict(alpha=None, gamma=1.5),
                  lambda reduction: keras.losses.BinaryFocalCrossentropy(
                      gamma=1.5, from_logits=True, reduction=reduction), TARGETS, LOGITS)


@eager_only_on_torch
def check_docs_page_runs():
    import re

    page = os.path.join(ROOT, "docs", "keras.md")
    with open(page, encoding="utf-8") as f:
        blocks = re.findall(r"^```python\n(.*?)^```", f.read(), re.MULTILINE | re.DOTALL)
    assert blocks
    namespace = {"__name__": "docs_keras"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"keras.md[block {i}]", "exec"), namespace)


@eager_only_on_torch
def check_binary_cross_entropy_equals_keras():
    for from_logits, smoothing in [(True, 0.0), (False, 0.0), (True, 0.2)]:
        same_as_keras(fk.BinaryCrossEntropy,
                      dict(from_logits=from_logits, label_smoothing=smoothing),
                      lambda reduction, f=from_logits, s=smoothing:
                          keras.losses.BinaryCrossentropy(from_logits=f, label_smoothing=s,
                                                          reduction=reduction),
                      SOFT, LOGITS if from_logits else PROBS,
                      reductions=REDUCTIONS if smoothing else ("sum_over_batch_size",))


@eager_only_on_torch
def check_sigmoid_rank_one_targets_and_axis():
    # y_true (N,) against y_pred (N, 1), as Keras matches them
    loss = fk.BinaryCrossEntropy()
    peer = keras.losses.BinaryCrossentropy(from_logits=True)
    close(loss(TARGETS[:, 0], LOGITS[:, :1]), peer(TARGETS[:, 0], LOGITS[:, :1]))
    # the class axis first: the mean is over axis 0, per sample along axis 1
    x, y = LOGITS.T, TARGETS.T
    ref = np.mean(np.logaddexp(0, -x) * y + np.logaddexp(0, x) * (1 - y), axis=0)
    close(fk.BinaryCrossEntropy(axis=0, reduction=None)(y, x), ref)


def check_sigmoid_matches_float64_reference():
    x, y = LOGITS.astype(np.float64), SOFT.astype(np.float64)
    p = 1 / (1 + np.exp(-x))
    p_t = p * y + (1 - p) * (1 - y)
    a_t = 0.25 * y + 0.75 * (1 - y)
    ce = -(y * np.log(p) + (1 - y) * np.log1p(-p))
    ref = np.mean(a_t * (1 - p_t) ** 2 * ce, axis=-1)
    close(fk.SigmoidFocalLoss(reduction=None)(y, x), ref)
    close(fk.SigmoidFocalLoss()(y, x, sample_weight=WEIGHTS), np.mean(ref * WEIGHTS))


@eager_only_on_torch
def check_softmax_cross_entropy_equals_sparse_categorical():
    for from_logits in (True, False):
        y_pred = LOGITS if from_logits else SOFTMAX.astype("float32")
        same_as_keras(fk.SoftmaxCrossEntropy, dict(from_logits=from_logits),
                      lambda reduction, f=from_logits: keras.losses.SparseCategoricalCrossentropy(
                          from_logits=f, reduction=reduction), LABELS, y_pred,
                      reductions=REDUCTIONS if from_logits else ("sum",))
    # (N, 1) labels, as Keras' sparse losses accept them
    same_as_keras(fk.SoftmaxCrossEntropy, {},
                  lambda reduction: keras.losses.SparseCategoricalCrossentropy(
                      from_logits=True, reduction=reduction), LABELS[:, None], LOGITS)
    # the class axis in the middle: (N, C, H)
    x = RNG.normal(size=(3, C, 5)).astype("float32")
    labels = RNG.integers(0, C, (3, 5))
    peer = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)
    close(fk.SoftmaxCrossEntropy(axis=1, reduction=None)(labels, x),
          peer(labels, np.moveaxis(x, 1, -1)))


def check_softmax_negative_labels_are_masked():
    # a label −1 is ignored and not counted, as Keras' ignore_class
    labels = LABELS.copy()
    labels[[1, 4]] = -1
    same_as_keras(fk.SoftmaxCrossEntropy, {},
                  lambda reduction: keras.losses.SparseCategoricalCrossentropy(
                      from_logits=True, ignore_class=-1, reduction=reduction), labels, LOGITS,
                  reductions=REDUCTIONS)


@eager_only_on_torch
def check_softmax_focal_equals_categorical_focal():
    onehot = np.eye(C, dtype="float32")[LABELS]
    for alpha, gamma, smoothing in [(0.25, 2.0, 0.0), (0.7, 0.5, 0.0), (0.25, 2.0, 0.1)]:
        # Keras' scalar alpha weighs every class alike: our per-class vector [a] * C
        same_as_keras(fk.SoftmaxFocalLoss,
                      dict(alpha=[alpha] * C, gamma=gamma, label_smoothing=smoothing),
                      lambda reduction, a=alpha, g=gamma, s=smoothing:
                          keras.losses.CategoricalFocalCrossentropy(
                              alpha=a, gamma=g, from_logits=True, label_smoothing=s,
                              reduction=reduction),
                      LABELS, LOGITS, their_y_true=onehot, rtol=5e-5,
                      reductions=REDUCTIONS if smoothing else ("sum_over_batch_size",))
    # alpha=None is Keras' alpha=1
    same_as_keras(fk.SoftmaxFocalLoss, dict(alpha=None),
                  lambda reduction: keras.losses.CategoricalFocalCrossentropy(
                      alpha=1.0, from_logits=True, reduction=reduction),
                  LABELS, LOGITS, their_y_true=onehot, rtol=5e-5)
    # our scalar alpha: 1 − α for the background class 0, α for the others (hand-derived)
    p_t = SOFTMAX[np.arange(N), LABELS]
    a_t = np.where(LABELS == 0, 0.75, 0.25)
    close(fk.SoftmaxFocalLoss(alpha=0.25, reduction=None)(LABELS, LOGITS),
          -a_t * (1 - p_t) ** 2 * np.log(p_t))


@eager_only_on_torch
def check_softmax_probability_targets():
    try:
        focal_array.softmax_cross_entropy(np.zeros((1, 2), "float32"),
                                          np.array([[1.0, 0.0]], "float32"))
    except TypeError:
        return "skipped: softmax_cross_entropy takes no probability targets yet"
    onehot = np.eye(C, dtype="float32")[LABELS]
    for y_true in (onehot, SOFTMAX.astype("float32")[::-1].copy()):
        same_as_keras(fk.SoftmaxCrossEntropy, {},
                      lambda reduction: keras.losses.CategoricalCrossentropy(
                          from_logits=True, reduction=reduction), y_true, LOGITS)
    return None


@eager_only_on_torch
def check_softmax_ignore_index_and_class_weights():
    if not _has_option(focal_array.softmax_cross_entropy, "ignore_index"):
        return "skipped: softmax_cross_entropy has no ignore_index/class_weights yet"
    labels = LABELS.copy()
    labels[[0, 3]] = 2
    same_as_keras(fk.SoftmaxCrossEntropy, dict(ignore_index=2),
                  lambda reduction: keras.losses.SparseCategoricalCrossentropy(
                      from_logits=True, ignore_class=2, reduction=reduction), labels, LOGITS)
    # class weights: the per-example loss times w[label] (float64 reference)
    w = np.array([0.5, 2.0, 1.0, 3.0])
    ref = -np.log(SOFTMAX[np.arange(N), LABELS]) * w[LABELS]
    close(fk.SoftmaxCrossEntropy(class_weights=list(w), reduction=None)(LABELS, LOGITS), ref)
    return None


def check_bad_y_true():
    try:
        fk.SoftmaxCrossEntropy()(np.array([0.0, 1.5, 2.0, 1.0, 0.0, 3.0]), LOGITS)
    except ValueError as exc:
        assert "whole number" in str(exc), exc
    else:
        raise AssertionError("a fractional class index passed")
    try:
        fk.SoftmaxCrossEntropy()(np.zeros((N, C, 2)), LOGITS)
    except ValueError as exc:
        assert "y_true must be integer class indices of shape (6,)" in str(exc), exc
    else:
        raise AssertionError("y_true of a higher rank passed")
    for bad, kw in [("gamma", {"gamma": -1.0}), ("alpha", {"alpha": 2.0}),
                    ("reduction", {"reduction": "avg"})]:
        try:
            fk.SigmoidFocalLoss(**kw)
        except ValueError as exc:
            assert bad in str(exc), exc
        else:
            raise AssertionError(f"{kw} passed")


def check_config_round_trip():
    for loss in [fk.SigmoidFocalLoss(alpha=0.4, gamma=1.0, label_smoothing=0.1,
                                     reduction="sum"),
                 fk.BinaryCrossEntropy(alpha=0.3, from_logits=False, axis=0),
                 fk.SoftmaxFocalLoss(alpha=[0.1, 0.2, 0.3, 0.4], gamma=0.5, axis=1),
                 fk.SoftmaxCrossEntropy(alpha=0.25, reduction=None)]:
        config = json.loads(json.dumps(keras.saving.serialize_keras_object(loss)))
        assert config["registered_name"] == f"focal_array>{type(loss).__name__}", config
        again = keras.saving.deserialize_keras_object(config)
        assert type(again) is type(loss) and again.get_config() == loss.get_config(), (
            again.get_config(), loss.get_config())


def _float64_focal(x, y):
    x, y = x.astype(np.float64), y.astype(np.float64)
    p = 1 / (1 + np.exp(-x))
    p_t = p * y + (1 - p) * (1 - y)
    a_t = 0.25 * y + 0.75 * (1 - y)
    ce = np.logaddexp(0, -x) * y + np.logaddexp(0, x) * (1 - y)
    return np.mean(a_t * (1 - p_t) ** 2 * ce)


def check_compile_fit_evaluate_save_load():
    keras.utils.set_random_seed(0)
    x = RNG.normal(size=(64, 5)).astype("float32")
    y = (x[:, :3] + 0.3 * RNG.normal(size=(64, 3)) > 0.5).astype("float32")
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss=fk.SigmoidFocalLoss())
    # step 0: the loss Keras reports equals a float64 reference on the model's logits
    logits = model.predict(x, verbose=0, batch_size=64)
    start = model.evaluate(x, y, verbose=0, batch_size=64)
    close(start, _float64_focal(logits, y), rtol=1e-5)
    history = model.fit(x, y, epochs=4, batch_size=16, verbose=0).history["loss"]
    assert np.all(np.isfinite(history)), history
    end = model.evaluate(x, y, verbose=0, batch_size=64)
    assert end < 0.8 * start, (start, history, end)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)  # no custom_objects
    assert isinstance(loaded.loss, fk.SigmoidFocalLoss), loaded.loss
    close(loaded.evaluate(x, y, verbose=0, batch_size=64), end, rtol=1e-6)


@eager_only_on_torch
def check_softmax_fit():
    keras.utils.set_random_seed(0)
    x = RNG.normal(size=(48, 5)).astype("float32")
    labels = np.argmax(x[:, :3], axis=1)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss=fk.SoftmaxFocalLoss(alpha=0.25))
    start = model.evaluate(x, labels, verbose=0, batch_size=48)
    z = model.predict(x, verbose=0, batch_size=48).astype(np.float64)
    p_t = (np.exp(z) / np.exp(z).sum(-1, keepdims=True))[np.arange(48), labels]
    a_t = np.where(labels == 0, 0.75, 0.25)
    close(start, np.mean(-a_t * (1 - p_t) ** 2 * np.log(p_t)), rtol=1e-5)
    model.fit(x, labels, epochs=3, batch_size=16, verbose=0)
    assert model.evaluate(x, labels, verbose=0, batch_size=48) < start


def check_plain_function_in_compile_raises():
    """model.compile(loss=fa.sigmoid_focal_loss): Keras calls it (y_true, y_pred); under
    the jitted fit of the JAX backend nothing in the data tells. It must raise."""
    x = RNG.normal(size=(16, 5)).astype("float32")
    y = (RNG.random((16, 3)) < 0.3).astype("float32")
    for fn, cls in [(focal_array.sigmoid_focal_loss, "SigmoidFocalLoss"),
                    (focal_array.binary_cross_entropy, "BinaryCrossEntropy")]:
        for where in ("loss", "metrics"):
            model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])
            if where == "loss":
                model.compile(optimizer="sgd", loss=fn)
            else:
                model.compile(optimizer="sgd", loss="mse", metrics=[fn])
            try:
                model.fit(x, y, epochs=1, verbose=0)
            except TypeError as exc:
                msg = str(exc)
                assert "look swapped" in msg and "loss(y_true, y_pred)" in msg, msg
                assert f"focal_array.keras.{cls}" in msg, msg
            else:
                raise AssertionError(f"compile({where}={fn.__name__}) trained silently")
    # the user's own wrapper in the right order is not Keras' call: it trains
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])
    model.compile(optimizer="sgd", loss=lambda yt, yp: focal_array.sigmoid_focal_loss(yp, yt))
    assert np.isfinite(model.fit(x, y, epochs=1, verbose=0).history["loss"][-1])


CHECKS = {name: f for name, f in sorted(globals().items()) if name.startswith("check_")}


def main(out: str) -> None:
    results = {}
    backend = keras.backend.backend()
    for name, check in CHECKS.items():
        if backend not in getattr(check, "backends", (backend,)):
            results[name] = f"skipped: run on {', '.join(check.backends)} only (compile time)"
            continue
        try:
            start = time.perf_counter()
            results[name] = check() or "ok"
            print(f"{name}: {time.perf_counter() - start:.2f} s", file=sys.stderr)
        except Exception:
            results[name] = traceback.format_exc()
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"backend": backend, "results": results}, f)


if __name__ == "__main__":
    main(sys.argv[1])
