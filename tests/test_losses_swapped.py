"""Arguments in Keras' order, (targets, logits), to the plain functions: a clear error.

``model.compile(loss=fa.sigmoid_focal_loss)`` calls ``loss(y_true, y_pred)``; under the
jitted fit of Keras' JAX backend no value check runs. What dtypes, shapes or the caller
tell is checked here on every backend; the end-to-end Keras case is in test_keras.py.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

import focal_array as fa
from focal_array._loss_checks import _check_softmax_order
from tests.helpers import asarray

SIGMOID = [(fa.sigmoid_focal_loss, "SigmoidFocalLoss"),
           (fa.binary_cross_entropy, "BinaryCrossEntropy")]


def _swapped(keras_class: str) -> str:
    return rf"look swapped(.|\n)*loss\(y_true, y_pred\)(.|\n)*focal_array\.keras\.{keras_class}"


@pytest.mark.parametrize(("fn", "cls"), SIGMOID)
@pytest.mark.parametrize("dtype", ["int32", "bool"])
def test_sigmoid_integer_logits_with_float_targets(xp, fn, cls, dtype):
    logits = asarray(xp, np.array([[1.5, -2.0], [0.3, 4.0]]), "float32")
    targets = asarray(xp, np.array([[1, 0], [0, 1]]), dtype)
    with pytest.raises(TypeError, match=_swapped(cls)) as info:
        fn(targets, logits)
    # it still names the argument and its dtype, as the plain dtype error did
    assert "logits must have a real floating dtype" in str(info.value)
    # the right order computes
    assert fn(logits, targets).shape == (2, 2)


@pytest.mark.parametrize(("fn", "cls"), SIGMOID)
def test_sigmoid_float_swap_is_named_by_the_value_check(xp, fn, cls):
    # both floating, as Keras casts them: eager backends catch logits outside [0, 1]
    logits = asarray(xp, np.array([[1.5, -2.0], [0.3, 4.0]]), "float32")
    targets = asarray(xp, np.array([[1.0, 0.0], [0.0, 1.0]]), "float32")
    with pytest.raises(ValueError, match=r"targets must be in \[0, 1\](.|\n)*not Keras' "
                       rf"\(y_true, y_pred\)(.|\n)*focal_array\.keras\.{cls}"):
        fn(targets, logits)


@pytest.mark.parametrize(("fn", "cls"), SIGMOID)
def test_called_by_keras_code_raises(xp, fn, cls, monkeypatch):
    """A call from a module of the keras package (as LossFunctionWrapper.call makes it) is
    the swapped order, whatever the values; a user's own wrapper is not."""
    monkeypatch.setitem(sys.modules, "keras", types.ModuleType("keras"))
    y_true = asarray(xp, np.array([[1.0, 0.0]]), "float32")
    y_pred = asarray(xp, np.array([[0.4, 0.7]]), "float32")  # inside [0, 1]: no value check
    keras_code = {"__name__": "keras.src.losses.losses", "fn": fn}
    exec("def call(y_true, y_pred):\n    return fn(y_true, y_pred)", keras_code)
    with pytest.raises(TypeError, match=_swapped(cls)) as info:
        keras_code["call"](y_true, y_pred)
    assert "keras.src.losses.losses" in str(info.value)
    user_code = {"__name__": "my_training", "fn": fn}
    exec("def call(y_true, y_pred):\n    return fn(y_pred, y_true)", user_code)
    assert user_code["call"](y_true, y_pred).shape == (1, 2)


def test_called_by_keras_under_jit(monkeypatch):
    """Under jax.jit (Keras' JAX fit) the check runs at trace time: no value is read."""
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    monkeypatch.setitem(sys.modules, "keras", types.ModuleType("keras"))
    code = {"__name__": "keras.src.losses.losses", "fn": fa.sigmoid_focal_loss}
    exec("def call(y_true, y_pred):\n    return fn(y_true, y_pred)", code)
    with pytest.raises(TypeError, match=_swapped("SigmoidFocalLoss")):
        jax.jit(code["call"])(jnp.ones((2, 3)), jnp.zeros((2, 3)))


def test_softmax_order_helper(xp):
    logits = asarray(xp, np.zeros((4, 3)), "float32")
    labels = asarray(xp, np.array([0, 2, 1, 0]))
    cls = "SoftmaxCrossEntropy"
    # the right order, and probability targets of the logits' shape, pass
    _check_softmax_order(xp, logits, labels, -1, "softmax_cross_entropy", cls)
    _check_softmax_order(xp, logits, logits, -1, "softmax_cross_entropy", cls)
    # integer labels as logits
    with pytest.raises(TypeError, match=_swapped(cls)):
        _check_softmax_order(xp, labels, logits, -1, "softmax_cross_entropy", cls)
    # Keras' order after its cast to float: (float labels (4,), logits (4, 3))
    float_labels = asarray(xp, np.array([0.0, 2.0, 1.0, 0.0]), "float32")
    with pytest.raises(TypeError, match=_swapped(cls)):
        _check_softmax_order(xp, float_labels, logits, -1, "softmax_cross_entropy", cls)
    with pytest.raises(TypeError, match=_swapped(cls)):
        _check_softmax_order(xp, asarray(xp, np.zeros(3), "float32"), logits, 0,
                             "softmax_cross_entropy", cls)
    # a float (4,) with logits of another shape is not told swapped (its own error follows)
    _check_softmax_order(xp, asarray(xp, np.zeros(5), "float32"), logits, -1,
                         "softmax_cross_entropy", cls)
