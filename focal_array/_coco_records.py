"""The records of a COCO dataset: images, categories, per-image annotations, padded batches.

Plain frozen types that :mod:`focal_array.coco` hands out (and re-exports), with the error
and the warning of the format; :mod:`focal_array._coco_parse` builds them from a document.
The conventions (labels, xyxy boxes, padding) are in :mod:`focal_array.coco`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np


class CocoFormatError(ValueError):
    """A COCO file is not valid JSON or breaks the format (the message says where)."""


class DroppedBoxesWarning(UserWarning):
    """Some annotations had a box with zero or negative width or height and were dropped."""


@dataclass(frozen=True)
class ImageInfo:
    """One entry of ``images``: its ``id``, ``file_name`` and size in pixels."""

    id: int
    file_name: str
    width: int
    height: int


@dataclass(frozen=True)
class Category:
    """One entry of ``categories`` with its contiguous ``label`` (rank of ``id``)."""

    id: int
    name: str
    label: int
    supercategory: str | None = None


@dataclass(frozen=True)
class DroppedAnnotation:
    """An annotation left out because its box is degenerate (``reason`` says how)."""

    annotation_id: int
    image_id: int
    bbox: tuple[float, float, float, float]
    reason: str


@dataclass(frozen=True, eq=False)
class ImageAnnotations:
    """The kept annotations of one image, in file order (read-only NumPy arrays).

    Attributes:
        boxes: ``float64[N, 4]`` xyxy boxes in pixels.
        labels: ``int64[N]`` contiguous labels in ``[0, K)``.
        category_ids: ``int64[N]`` the original COCO ``category_id``.
        crowd: ``bool[N]`` the ``iscrowd`` flags.
        annotation_ids: ``int64[N]`` the COCO annotation ``id``.
    """

    boxes: np.ndarray
    labels: np.ndarray
    category_ids: np.ndarray
    crowd: np.ndarray
    annotation_ids: np.ndarray

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


class PaddedBatch(NamedTuple):
    """Ground truth of ``B`` images padded to ``G`` boxes each (unpacks as a 4-tuple).

    Attributes:
        boxes: ``Array[B, G, 4]`` floating, xyxy; padding rows are zero.
        labels: ``Array[B, G]`` integer, contiguous labels; padding is ``-1``.
        valid: ``Array[B, G]`` bool, True for real annotations (crowd ones included).
        crowd: ``Array[B, G]`` bool, True for ``iscrowd`` annotations; False in padding.
    """

    boxes: Any
    labels: Any
    valid: Any
    crowd: Any


def _frozen(a: np.ndarray) -> np.ndarray:
    # the dataset hands out its own arrays; read-only keeps callers from corrupting it
    a.setflags(write=False)
    return a
