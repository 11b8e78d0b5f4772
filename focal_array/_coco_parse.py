"""Validation and parsing of a COCO instances document into :mod:`focal_array._coco_records`.

:class:`_Parser` checks one entry field at a time, and every error it raises is a
:class:`~focal_array.coco.CocoFormatError` naming the source, the entry (by id, or by its
position when it has no usable id) and the field. :func:`_parse_document` turns a decoded
document into images, categories (contiguous labels by sorted id), per-image read-only
annotation arrays and the degenerate boxes left out; :func:`focal_array.coco.load` reads the
file and makes the :class:`~focal_array.coco.CocoDataset`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

from ._coco_records import (
    Category,
    CocoFormatError,
    DroppedAnnotation,
    ImageAnnotations,
    ImageInfo,
    _frozen,
)

#: Integers in the file (ids, sizes) must fit a signed 64-bit integer (the arrays' dtype).
_INT64 = (-(2**63), 2**63 - 1)
#: Box corners must be finite in float32, the default dtype of every batch.
_FLOAT32_MAX = float(np.finfo(np.float32).max)


class _Parser:
    """Validates one COCO document; every error names the entry (by id) and the field."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, message: str) -> CocoFormatError:
        return CocoFormatError(f"{self.source}: {where}: {message}")

    def entries(self, doc: Mapping[str, Any], key: str, *, required: bool) -> list[Any]:
        if key not in doc:
            if required:
                raise self.fail("top level", f'missing key "{key}"')
            return []
        value = doc[key]
        if not isinstance(value, list):
            raise self.fail("top level", f'"{key}" must be a list, got '
                                         f"{type(value).__name__}")
        return value

    def entry_name(self, kind: str, index: int, entry: Any) -> str:
        if isinstance(entry, Mapping) and _is_int(entry.get("id")):
            return f"{kind} id {entry['id']}"
        # no usable id: name it by its position, as a JSON path ("annotations[3]")
        return f"{kind}s[{index}]"

    def field(self, entry: Any, where: str, key: str) -> Any:
        if not isinstance(entry, Mapping):
            raise self.fail(where, f"must be an object, got {type(entry).__name__}")
        if key not in entry:
            raise self.fail(where, f'missing key "{key}"')
        return entry[key]

    def int_field(self, entry: Any, where: str, key: str, *, positive: bool = False) -> int:
        value = self.field(entry, where, key)
        if not _is_int(value):
            raise self.fail(where, f'"{key}" must be an integer, got {value!r}')
        if not _INT64[0] <= value <= _INT64[1]:
            raise self.fail(where, f'"{key}" must fit a signed 64-bit integer '
                                   f"([-2**63, 2**63 - 1]), got {value}")
        if positive and value <= 0:
            raise self.fail(where, f'"{key}" must be positive, got {value!r}')
        return int(value)

    def str_field(self, entry: Any, where: str, key: str) -> str:
        value = self.field(entry, where, key)
        if not isinstance(value, str):
            raise self.fail(where, f'"{key}" must be a string, got {value!r}')
        return value

    def unique(self, seen: set[int], value: int, where: str, kind: str) -> None:
        if value in seen:
            raise self.fail(where, f"duplicate {kind} id {value}")
        seen.add(value)


def _short(value: Any, limit: int = 120) -> str:
    """``repr`` of a (possibly huge) value, cut to one readable line."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _parse_document(doc: Any, source: str) -> tuple[
        list[ImageInfo], list[Category], dict[int, ImageAnnotations], list[DroppedAnnotation]]:
    """Validate ``doc`` (``source`` names it in errors): its images, categories sorted by id
    with their labels, the kept annotations of each image and the dropped ones."""
    p = _Parser(source)
    if not isinstance(doc, Mapping):
        raise p.fail("top level", f"must be a JSON object with \"images\", \"annotations\" "
                                  f"and \"categories\", got {type(doc).__name__}")

    images: list[ImageInfo] = []
    seen: set[int] = set()
    for index, entry in enumerate(p.entries(doc, "images", required=True)):
        where = p.entry_name("image", index, entry)
        image_id = p.int_field(entry, where, "id")
        p.unique(seen, image_id, where, "image")
        images.append(ImageInfo(
            id=image_id,
            file_name=p.str_field(entry, where, "file_name"),
            width=p.int_field(entry, where, "width", positive=True),
            height=p.int_field(entry, where, "height", positive=True),
        ))
    image_ids = {im.id for im in images}

    raw_categories = []
    seen = set()
    for index, entry in enumerate(p.entries(doc, "categories", required=True)):
        where = p.entry_name("category", index, entry)
        category_id = p.int_field(entry, where, "id")
        p.unique(seen, category_id, where, "category")
        name = p.str_field(entry, where, "name")
        super_ = entry.get("supercategory")
        raw_categories.append((category_id, name, super_ if isinstance(super_, str) else None))
    # contiguous labels follow the ids, not the file order, so two files listing the same
    # categories in different orders agree on every label
    categories = [Category(id=c, name=n, label=label, supercategory=s)
                  for label, (c, n, s) in enumerate(sorted(raw_categories))]
    to_label = {c.id: c.label for c in categories}

    per_image: dict[int, list[tuple[list[float], int, int, bool, int]]] = {}
    dropped: list[DroppedAnnotation] = []
    seen = set()
    for index, entry in enumerate(p.entries(doc, "annotations", required=True)):
        where = p.entry_name("annotation", index, entry)
        ann_id = p.int_field(entry, where, "id")
        p.unique(seen, ann_id, where, "annotation")
        image_id = p.int_field(entry, where, "image_id")
        if image_id not in image_ids:
            raise p.fail(where, f'"image_id" {image_id} does not exist in "images"')
        category_id = p.int_field(entry, where, "category_id")
        if category_id not in to_label:
            known = sorted(to_label)
            raise p.fail(where, f'"category_id" {category_id} does not exist in '
                                f'"categories" (ids {known})')
        bbox = p.field(entry, where, "bbox")
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(map(_is_number, bbox)):
            raise p.fail(where, f'"bbox" must be a list of four numbers '
                                f"[x, y, width, height], got {bbox!r}")
        try:
            x, y, w, h = (float(v) for v in bbox)
        except OverflowError:  # an integer literal beyond every float
            x = y = w = h = math.inf
        if not all(math.isfinite(v) for v in (x, y, w, h)):
            raise p.fail(where, f'"bbox" must hold finite numbers, got {_short(bbox)}')
        corners = (x, y, x + w, y + h)
        if not all(abs(v) <= _FLOAT32_MAX for v in corners):
            # refused like a non-finite number: in float32, the dtype of every batch by
            # default, such a box would be inf and poison every IoU it takes part in
            raise p.fail(where, f'"bbox" {_short(bbox)} has corners {list(corners)}, '
                                f"beyond the float32 range (|x| <= {_FLOAT32_MAX:.7g})")
        crowd_flag = entry.get("iscrowd", 0)
        if crowd_flag not in (0, 1) or isinstance(crowd_flag, float):
            raise p.fail(where, f'"iscrowd" must be 0 or 1, got {crowd_flag!r}')
        if w <= 0 or h <= 0:
            reason = "width <= 0" if w <= 0 else "height <= 0"
            if w <= 0 and h <= 0:
                reason = "width and height <= 0"
            dropped.append(DroppedAnnotation(ann_id, image_id, (x, y, w, h), reason))
            continue
        per_image.setdefault(image_id, []).append(
            ([x, y, x + w, y + h], to_label[category_id], category_id, bool(crowd_flag),
             ann_id))

    annotations = {}
    for image_id, rows in per_image.items():
        annotations[image_id] = ImageAnnotations(
            boxes=_frozen(np.array([r[0] for r in rows], dtype=np.float64).reshape(-1, 4)),
            labels=_frozen(np.array([r[1] for r in rows], dtype=np.int64)),
            category_ids=_frozen(np.array([r[2] for r in rows], dtype=np.int64)),
            crowd=_frozen(np.array([r[3] for r in rows], dtype=bool)),
            annotation_ids=_frozen(np.array([r[4] for r in rows], dtype=np.int64)),
        )
    return images, categories, annotations, dropped
