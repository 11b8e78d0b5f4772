"""focal_array: classification losses and anchor matching for dense object detection.

Focal loss and cross-entropy (sigmoid and softmax), written once against the Python Array
API standard so the same functions run on NumPy, JAX and PyTorch arrays, returning arrays of
the caller's own library, dtype and device.
"""

from .losses import (
    binary_cross_entropy,
    one_hot,
    sigmoid_focal_loss,
    softmax_cross_entropy,
    softmax_focal_loss,
)

__version__ = "0.1.0"

#: Matcher label of an anchor assigned to background (IoU below the low threshold).
BACKGROUND = -1
#: Matcher label of an anchor in the ignore band (left out of the loss).
IGNORE = -2

__all__ = [
    "BACKGROUND",
    "IGNORE",
    "__version__",
    "binary_cross_entropy",
    "one_hot",
    "sigmoid_focal_loss",
    "softmax_cross_entropy",
    "softmax_focal_loss",
]
