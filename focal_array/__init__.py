"""focal_array: classification losses and anchor matching for dense object detection.

Focal loss and cross-entropy (sigmoid and softmax), written once against the Python Array
API standard so the same functions run on NumPy, JAX and PyTorch arrays, returning arrays of
the caller's own library, dtype and device.
"""

from . import anchors, boxes, coco, detection, gradients, matcher, normalization
from .detection import dense_detection_loss
from .gradients import sigmoid_focal_loss_value_and_grad, softmax_focal_loss_value_and_grad
from .losses import (
    binary_cross_entropy,
    one_hot,
    sigmoid_focal_loss,
    softmax_cross_entropy,
    softmax_focal_loss,
)
from .matcher import BACKGROUND, IGNORE

__version__ = "0.1.0"

__all__ = [
    "BACKGROUND",
    "IGNORE",
    "__version__",
    "anchors",
    "binary_cross_entropy",
    "boxes",
    "coco",
    "dense_detection_loss",
    "detection",
    "gradients",
    "matcher",
    "normalization",
    "one_hot",
    "sigmoid_focal_loss",
    "sigmoid_focal_loss_value_and_grad",
    "softmax_cross_entropy",
    "softmax_focal_loss",
    "softmax_focal_loss_value_and_grad",
]
