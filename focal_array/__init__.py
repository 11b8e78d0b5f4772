"""focal_array: classification losses and anchor matching for dense object detection.

Focal loss and cross-entropy (sigmoid and softmax), the focal family (QFL, DFL, VFL,
Poly-1, FL*) and the Faster R-CNN head's sampling and loss, written once against the Python Array
API standard so the same functions run on NumPy, JAX and PyTorch arrays, returning arrays of
the caller's own library, dtype and device.
"""

from . import (
    anchors,
    boxes,
    coco,
    detection,
    focal_variants,
    gradients,
    matcher,
    normalization,
    rcnn,
)
from .detection import dense_detection_loss
from .focal_variants import (
    distribution_focal_loss,
    poly1_focal_loss,
    quality_focal_loss,
    sigmoid_focal_loss_star,
    softmax_poly1_focal_loss,
    varifocal_loss,
)
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
    "distribution_focal_loss",
    "focal_variants",
    "gradients",
    "matcher",
    "normalization",
    "one_hot",
    "poly1_focal_loss",
    "quality_focal_loss",
    "rcnn",
    "sigmoid_focal_loss",
    "sigmoid_focal_loss_star",
    "sigmoid_focal_loss_value_and_grad",
    "softmax_cross_entropy",
    "softmax_focal_loss",
    "softmax_focal_loss_value_and_grad",
    "softmax_poly1_focal_loss",
    "varifocal_loss",
]
