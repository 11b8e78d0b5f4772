"""COCO instances files -> per-image xyxy boxes, contiguous labels and padded batches.

Reads the ``images``, ``annotations`` and ``categories`` of a COCO "instances" file with the
standard library's :mod:`json` (no pycocotools). Conventions (also in ``docs/coco.md``):

* **Labels**: categories sorted by ``id`` get contiguous labels ``0 … K-1`` (COCO's 80
  categories use ids 1…90 with gaps). There is no background label here; a softmax head
  with a background class uses ``label + 1``.
* **Boxes**: COCO ``bbox = [x, y, width, height]`` becomes ``[x, y, x + width, y + height]``
  (float64, pixels, not clipped to the image). Boxes with ``width <= 0`` or
  ``height <= 0`` are dropped, recorded in :attr:`CocoDataset.dropped` and warned about.
  A ``bbox`` with a non-finite number, or a corner beyond float32's range (``|x| > 3.4e38``,
  which every float32 batch would hold as inf), is refused with :class:`CocoFormatError`.
* **Integers** (ids, sizes) must fit int64; deeper nesting than Python's JSON parser can
  follow is a :class:`CocoFormatError` too, never an ``OverflowError``/``RecursionError``.
* **Order**: images and each image's boxes keep the order of the file.
* **Padding** (:meth:`CocoDataset.padded_batch`): box ``[0, 0, 0, 0]``, label ``-1``,
  ``valid = False``, ``crowd = False``.
"""

from __future__ import annotations

import importlib.resources
import json
import numbers
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# the validation and the record types live in private modules; every name is importable
# from here as before (the private ones too, for code that reached for them)
from ._coco_parse import _FLOAT32_MAX as _FLOAT32_MAX
from ._coco_parse import _INT64 as _INT64
from ._coco_parse import _is_int as _is_int
from ._coco_parse import _is_number as _is_number
from ._coco_parse import _parse_document, _short
from ._coco_parse import _Parser as _Parser

# kept in definition order, the order the API page lists them in
# isort: off
from ._coco_records import (
    CocoFormatError,
    DroppedBoxesWarning,
    ImageInfo,
    Category,
    DroppedAnnotation,
    ImageAnnotations,
    PaddedBatch,
    _frozen,
)
# isort: on

# defined in a private module, shown (tracebacks, reprs, pickles) as this module's
for _public in (CocoFormatError, DroppedBoxesWarning, ImageInfo, Category, DroppedAnnotation,
                ImageAnnotations, PaddedBatch):
    _public.__module__ = __name__
del _public

__all__ = [
    "PAD_LABEL",
    "Category",
    "CocoDataset",
    "CocoFormatError",
    "DroppedAnnotation",
    "DroppedBoxesWarning",
    "ImageAnnotations",
    "ImageInfo",
    "PaddedBatch",
    "load",
    "load_sample",
    "sample_path",
]

#: Label of a padding slot in :meth:`CocoDataset.padded_batch` (never a real class).
PAD_LABEL = -1


def _empty_annotations() -> ImageAnnotations:
    return ImageAnnotations(
        boxes=_frozen(np.zeros((0, 4), dtype=np.float64)),
        labels=_frozen(np.zeros((0,), dtype=np.int64)),
        category_ids=_frozen(np.zeros((0,), dtype=np.int64)),
        crowd=_frozen(np.zeros((0,), dtype=bool)),
        annotation_ids=_frozen(np.zeros((0,), dtype=np.int64)),
    )


class CocoDataset:
    """Images, categories and per-image ground truth of one COCO instances file.

    Made by :func:`load`. Every array inside is NumPy (float64 boxes); arrays of another
    library come from :meth:`padded_batch`.

    Attributes:
        source: where the data came from (a path, or ``"<dict>"``).
        images: :class:`ImageInfo` of every image, in file order.
        image_ids: the image ids, in file order.
        categories: :class:`Category` of every category, sorted by id (label order).
        num_classes: ``K``, the number of categories.
        class_names: category names in label order.
        category_to_label: ``{category_id: label}``.
        label_to_category_id: ``label -> category_id`` as a tuple.
        dropped: :class:`DroppedAnnotation` of every degenerate box left out.
        max_boxes: the most boxes kept in one image (``G`` that fits the whole dataset).

    Examples:
        >>> ds = load(sample_path(), warn=False)
        >>> ds.class_names, ds.category_to_label
        (('person', 'car', 'dog'), {1: 0, 3: 1, 18: 2})
        >>> ds.annotations(123).boxes[0]
        array([100., 100., 150., 250.])
    """

    def __init__(self, *, source: str, images: Sequence[ImageInfo],
                 categories: Sequence[Category],
                 annotations: Mapping[int, ImageAnnotations],
                 dropped: Sequence[DroppedAnnotation]) -> None:
        self.source = source
        self.images = tuple(images)
        self.image_ids = tuple(im.id for im in self.images)
        self._image_by_id = {im.id: im for im in self.images}
        self.categories = tuple(categories)
        self.num_classes = len(self.categories)
        self.class_names = tuple(c.name for c in self.categories)
        self.category_to_label = {c.id: c.label for c in self.categories}
        self.label_to_category_id = tuple(c.id for c in self.categories)
        self._annotations = dict(annotations)
        self._empty = _empty_annotations()
        self.dropped = tuple(dropped)
        self.max_boxes = max((len(a) for a in self._annotations.values()), default=0)

    def __len__(self) -> int:
        """Number of images."""
        return len(self.images)

    def __iter__(self) -> Iterator[int]:
        """Iterate over image ids in file order."""
        return iter(self.image_ids)

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._image_by_id

    def __repr__(self) -> str:
        return (f"CocoDataset({self.source!r}: {len(self.images)} images, "
                f"{self.num_annotations} boxes, {self.num_classes} categories, "
                f"{len(self.dropped)} dropped)")

    @property
    def num_annotations(self) -> int:
        """Number of kept annotations (crowd ones included) over all images."""
        return sum(len(a) for a in self._annotations.values())

    def image(self, image_id: int) -> ImageInfo:
        """The :class:`ImageInfo` of ``image_id``; ``KeyError`` names an unknown id."""
        try:
            return self._image_by_id[image_id]
        except KeyError:
            raise KeyError(f"image id {image_id!r} is not in {self.source}") from None

    def annotations(self, image_id: int) -> ImageAnnotations:
        """The kept annotations of ``image_id`` (possibly none), NumPy, in file order.

        Args:
            image_id: a COCO image id of this dataset.

        Returns:
            :class:`ImageAnnotations` with ``boxes float64[N, 4]`` (xyxy),
            ``labels int64[N]``, ``category_ids int64[N]``, ``crowd bool[N]``,
            ``annotation_ids int64[N]``.

        Examples:
            >>> ds = load(sample_path(), warn=False)
            >>> ds.annotations(123).annotation_ids
            array([456, 789, 101])
        """
        self.image(image_id)
        return self._annotations.get(image_id, self._empty)

    def summary(self) -> str:
        """A few lines describing the dataset, including every dropped annotation id."""
        crowd = sum(int(a.crowd.sum()) for a in self._annotations.values())
        empty = sum(1 for i in self.image_ids if len(self.annotations(i)) == 0)
        lines = [
            f"{self.source}: {len(self.images)} images ({empty} without boxes), "
            f"{self.num_annotations} boxes ({crowd} crowd), {self.num_classes} categories, "
            f"at most {self.max_boxes} boxes per image",
            "labels: " + ", ".join(f"{c.label}={c.name} (id {c.id})" for c in self.categories),
        ]
        if self.dropped:
            ids = ", ".join(str(d.annotation_id) for d in self.dropped)
            lines.append(f"dropped {len(self.dropped)} degenerate box(es) "
                         f"(width or height <= 0), annotation ids: {ids}")
        else:
            lines.append("dropped 0 boxes")
        return "\n".join(lines)

    def padded_batch(
        self,
        image_ids: Sequence[int] | None = None,
        max_boxes: int | None = None,
        *,
        truncate: bool = False,
        xp: Any = None,
        dtype: Any = None,
        label_dtype: Any = None,
        device: Any = None,
    ) -> PaddedBatch:
        """Ground truth of several images as fixed-shape arrays of one library.

        Image ``b``'s boxes fill slots ``0 … n_b - 1`` in file order; the remaining slots
        are padding: box ``[0, 0, 0, 0]``, label ``-1``, ``valid`` False, ``crowd`` False.
        Crowd annotations are real (``valid`` True) and flagged in ``crowd``: the matcher
        never matches them but ignores the anchors they cover.

        Args:
            image_ids: ids of the ``B`` images, in batch order (repeats allowed); all
                images of the dataset in file order if None.
            max_boxes: ``G``, the number of slots per image. If None, the most boxes of
                any image in the batch, and at least 1 so reductions over the box axis are
                defined. Pass a fixed value (e.g. :attr:`max_boxes`) to keep shapes
                constant across batches, which avoids re-tracing under ``jax.jit``.
            truncate: if True, an image with more than ``max_boxes`` boxes keeps its first
                ``max_boxes`` (file order); if False (default) that is an error.
            xp: Array API namespace of the result; NumPy (``array_api_compat.numpy``) if
                None.
            dtype: real floating dtype of ``boxes``; ``xp.float32`` if None.
            label_dtype: integer dtype of ``labels``; ``xp``'s default integer dtype if
                None (int64, or int32 for JAX without x64).
            device: device of the results; ``xp``'s default device if None.

        Returns:
            :class:`PaddedBatch` ``(boxes, labels, valid, crowd)`` with ``boxes
            (Array[B, G, 4], dtype)``, ``labels (Array[B, G], label_dtype)``,
            ``valid (Array[B, G], bool)`` and ``crowd (Array[B, G], bool)``.

        Raises:
            ValueError: an unknown or empty list of image ids; ``max_boxes`` not a positive
                integer; an image has more than ``max_boxes`` boxes and ``truncate`` is
                False (the message lists those images and their counts).
                A ``label_dtype`` that cannot hold the padding label -1 and every label
                ``0 … K-1`` (any unsigned dtype; int8 for more than 128 categories), or a
                ``dtype`` in which a box coordinate of the batch would overflow to inf
                (float16 holds coordinates up to 65504), naming the annotation id and the value.
            TypeError: ``dtype`` not real floating or ``label_dtype`` not integer.

        Examples:
            >>> ds = load(sample_path(), warn=False)
            >>> boxes, labels, valid, crowd = ds.padded_batch([123, 400], max_boxes=4)
            >>> boxes.shape, labels.tolist()
            ((2, 4, 4), [[0, 0, 0, -1], [-1, -1, -1, -1]])
        """
        ids = list(self.image_ids if image_ids is None else _check_id_list(image_ids))
        if not ids:
            raise ValueError("padded_batch needs at least one image id")
        unknown = [i for i in ids if i not in self._image_by_id]
        if unknown:
            raise ValueError(f"image ids not in {self.source}: {unknown[:10]}"
                             + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""))
        per_image = [self.annotations(i) for i in ids]
        counts = [len(a) for a in per_image]
        if max_boxes is None:
            g = max(max(counts), 1)
        else:
            if isinstance(max_boxes, bool) or not isinstance(max_boxes, numbers.Integral) \
                    or max_boxes < 1:
                raise ValueError(f"max_boxes must be a positive integer or None, "
                                 f"got {max_boxes!r}")
            g = int(max_boxes)
            over = [(i, n) for i, n in zip(ids, counts, strict=True) if n > g]
            if over and not truncate:
                listed = ", ".join(f"image {i} has {n}" for i, n in dict(over).items())
                raise ValueError(
                    f"max_boxes={g} is smaller than the number of boxes of "
                    f"{len(dict(over))} image(s): {listed}; pass max_boxes >= "
                    f"{max(n for _, n in over)} (the dataset needs {self.max_boxes}) or "
                    f"truncate=True to keep the first {g} boxes of each image")

        if xp is None:
            import array_api_compat.numpy as xp
        if dtype is None:
            dtype = xp.float32
        elif not xp.isdtype(dtype, "real floating"):
            raise TypeError(f"dtype must be a real floating dtype of {xp.__name__}, "
                            f"got {dtype}")
        if label_dtype is None:
            label_dtype = xp.__array_namespace_info__().default_dtypes(
                device=device)["integral"]
        elif not xp.isdtype(label_dtype, "integral"):
            raise TypeError(f"label_dtype must be an integer dtype of {xp.__name__}, "
                            f"got {label_dtype}")
        self._check_label_dtype(xp, label_dtype)

        # assembled on the host: this is input data, not a computation on caller arrays
        b = len(ids)
        boxes = np.zeros((b, g, 4), dtype=np.float64)
        labels = np.full((b, g), PAD_LABEL, dtype=np.int64)
        valid = np.zeros((b, g), dtype=bool)
        crowd = np.zeros((b, g), dtype=bool)
        for row, ann in enumerate(per_image):
            n = min(len(ann), g)
            boxes[row, :n] = ann.boxes[:n]
            labels[row, :n] = ann.labels[:n]
            valid[row, :n] = True
            crowd[row, :n] = ann.crowd[:n]
        _check_box_dtype(xp, dtype, ids, per_image, g)
        return PaddedBatch(
            boxes=xp.asarray(boxes, dtype=dtype, device=device),
            labels=xp.asarray(labels, dtype=label_dtype, device=device),
            valid=xp.asarray(valid, dtype=xp.bool, device=device),
            crowd=xp.asarray(crowd, dtype=xp.bool, device=device),
        )

    def _check_label_dtype(self, xp: Any, label_dtype: Any) -> None:
        """Refuse an integer dtype that cannot hold PAD_LABEL and every label 0 … K-1
        (uint8 would turn the padding -1 into 255, a real class for K > 255)."""
        info = xp.iinfo(label_dtype)
        top = max(self.num_classes - 1, 0)
        if info.min > PAD_LABEL or info.max < top:
            raise ValueError(
                f"label_dtype {_dtype_name(label_dtype)} holds [{info.min}, {info.max}], "
                f"which cannot hold the padding label {PAD_LABEL} and the labels 0 … {top} of "
                f"{self.num_classes} categories: use a signed integer dtype with room for "
                "both (int16, int32 or int64)")


def _dtype_name(dtype: Any) -> str:
    # NumPy's and JAX's dtypes are classes (repr "<class 'numpy.uint8'>"), torch's objects
    return getattr(dtype, "__name__", None) or str(dtype)


def _check_box_dtype(xp: Any, dtype: Any, ids: Sequence[int],
                     per_image: Sequence[ImageAnnotations], g: int) -> None:
    """Refuse a box dtype in which a kept corner of the batch would overflow to inf (float16
    holds |x| <= 65504): name the first such annotation, its image and the value."""
    limit = float(xp.finfo(dtype).max)
    for image_id, ann in zip(ids, per_image, strict=True):
        kept = ann.boxes[:g]
        if kept.size == 0 or float(np.abs(kept).max()) <= limit:
            continue
        row, col = np.unravel_index(int(np.argmax(np.abs(kept))), kept.shape)
        raise ValueError(
            f"annotation id {int(ann.annotation_ids[row])} of image {image_id} has the box "
            f"coordinate {float(kept[row, col]):g}, which {_dtype_name(dtype)} cannot hold "
            f"(|x| <= {limit:g}): it would be inf; use float32 boxes (the default) or scale the "
            "boxes down first")


def _check_id_list(image_ids: Any) -> list[int]:
    if isinstance(image_ids, (str, bytes)) or not isinstance(image_ids, Sequence):
        # a NumPy array of ids is a common input; anything else is probably a slip
        if isinstance(image_ids, np.ndarray) and image_ids.ndim == 1:
            image_ids = image_ids.tolist()
        else:
            raise TypeError(f"image_ids must be a sequence of image ids, got "
                            f"{type(image_ids).__name__}")
    out = []
    for i in image_ids:
        if isinstance(i, bool) or not isinstance(i, numbers.Integral):
            raise TypeError(f"image ids must be integers, got {i!r}")
        out.append(int(i))
    return out


def _parse(doc: Any, source: str, *, warn: bool) -> CocoDataset:
    images, categories, annotations, dropped = _parse_document(doc, source)
    if dropped and warn:
        shown = ", ".join(str(d.annotation_id) for d in dropped[:10])
        more = f" and {len(dropped) - 10} more" if len(dropped) > 10 else ""
        warnings.warn(
            f"{source}: dropped {len(dropped)} annotation(s) whose box has zero or negative "
            f"width or height (ids {shown}{more}); see CocoDataset.dropped",
            DroppedBoxesWarning, stacklevel=3)
    return CocoDataset(source=source, images=images, categories=categories,
                       annotations=annotations, dropped=dropped)


def load(path_or_dict: str | os.PathLike[str] | Mapping[str, Any], *,
         warn: bool = True) -> CocoDataset:
    """Read a COCO instances file (or its already-parsed dict) into a :class:`CocoDataset`.

    Needs ``images`` (``id``, ``file_name``, ``width``, ``height``), ``categories``
    (``id``, ``name``) and ``annotations`` (``id``, ``image_id``, ``category_id``, ``bbox``;
    ``iscrowd`` optional, 0 if absent). Other keys (``area``, ``segmentation``, ``info``,
    ``licenses``) are ignored: the box area is the bbox's, not the mask's.

    Args:
        path_or_dict: path of a ``.json`` file, or a mapping with the same content.
        warn: emit a :class:`DroppedBoxesWarning` when degenerate boxes are dropped (they
            are listed in :attr:`CocoDataset.dropped` either way).

    Returns:
        The dataset: labels ``0 … K-1`` by sorted category id, xyxy float64 boxes.

    Raises:
        FileNotFoundError: the path does not exist.
        CocoFormatError: invalid JSON, or a malformed entry: a missing key, ``bbox`` not
            four numbers, a non-finite number, a box corner beyond float32's range, an
            integer beyond int64, JSON nested too deeply, an ``image_id``/``category_id``
            that does not exist, a duplicate id, ``iscrowd`` not 0/1. The message names
            the file, the entry (``annotation id 17``, or ``annotations[3]`` when it has
            no usable id) and the field.

    Examples:
        >>> ds = load({"images": [{"id": 1, "file_name": "a.jpg", "width": 64,
        ...                        "height": 48}],
        ...            "categories": [{"id": 18, "name": "dog"}, {"id": 3, "name": "car"}],
        ...            "annotations": [{"id": 7, "image_id": 1, "category_id": 18,
        ...                             "bbox": [10, 5, 20, 30]}]})
        >>> ds.annotations(1).boxes.tolist(), ds.annotations(1).labels.tolist()
        ([[10.0, 5.0, 30.0, 35.0]], [1])
    """
    if isinstance(path_or_dict, Mapping):
        return _parse(path_or_dict, "<dict>", warn=warn)
    if not isinstance(path_or_dict, (str, os.PathLike)):
        raise TypeError(f"load takes a path or a dict, got {type(path_or_dict).__name__}")
    path = Path(path_or_dict)
    if not path.is_file():
        if path.exists():
            raise CocoFormatError(f"{path}: is not a file")
        raise FileNotFoundError(f"COCO file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CocoFormatError(f"{path}: not UTF-8 text ({exc.reason})") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CocoFormatError(f"{path}: invalid JSON at line {exc.lineno}, column "
                              f"{exc.colno}: {exc.msg}") from None
    except RecursionError:
        # the standard parser recurses once per nesting level; a COCO file nests 4 deep
        raise CocoFormatError(f"{path}: JSON nested too deeply to parse (a COCO file is an "
                              "object of lists of objects)") from None
    except ValueError as exc:  # e.g. an integer literal longer than Python's digit limit
        raise CocoFormatError(f"{path}: invalid JSON: {_short(str(exc))}") from None
    return _parse(doc, str(path), warn=warn)


def sample_path() -> Path:
    """Path of the small COCO-format sample shipped in the package.

    Five 640×480-ish images: the source note's image (id 123) with three persons, a street
    with a crowd region, tiny boxes and one zero-width box (dropped on load), a parking lot
    with a crowd of cars, and an image without boxes; categories 1 person, 3 car, 18 dog.

    Returns:
        ``focal_array/data/sample_coco.json`` inside the installed package.

    Examples:
        >>> sample_path().name
        'sample_coco.json'
    """
    resource = importlib.resources.files("focal_array") / "data" / "sample_coco.json"
    # a regular (non-zipped) install, which setuptools produces, is a real directory
    return Path(str(resource))


def load_sample(*, warn: bool = False) -> CocoDataset:
    """Load :func:`sample_path`, quietly by default (its dropped box is deliberate).

    Examples:
        >>> load_sample().dropped[0].reason
        'width <= 0'
    """
    return load(sample_path(), warn=warn)
