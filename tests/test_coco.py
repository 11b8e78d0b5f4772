"""Tests for focal_array.coco: loading, conversions, dropped boxes, padded batches, errors."""

from __future__ import annotations

import json
import warnings

import array_api_compat
import numpy as np
import pytest

from focal_array.coco import (
    CocoDataset,
    CocoFormatError,
    DroppedBoxesWarning,
    PaddedBatch,
    load,
    load_sample,
    sample_path,
)
from tests.helpers import assert_close, library, to_numpy


def small_doc() -> dict:
    """Two images, non-contiguous category ids listed out of order, one crowd box."""
    return {
        "images": [
            {"id": 7, "file_name": "a.jpg", "width": 640, "height": 480},
            {"id": 3, "file_name": "b.jpg", "width": 320, "height": 240},
        ],
        "categories": [
            {"id": 18, "name": "dog"},
            {"id": 1, "name": "person", "supercategory": "person"},
            {"id": 3, "name": "car"},
        ],
        "annotations": [
            {"id": 10, "image_id": 7, "category_id": 18, "bbox": [10, 20, 30, 40],
             "iscrowd": 0},
            {"id": 11, "image_id": 7, "category_id": 1, "bbox": [0.5, 1.5, 2.25, 3.0],
             "iscrowd": 1},
            {"id": 12, "image_id": 3, "category_id": 3, "bbox": [5, 5, 10, 10]},
        ],
    }


@pytest.fixture(scope="module")
def sample() -> CocoDataset:
    return load(sample_path(), warn=False)


# ------------------------------------------------------------------------ the sample


def test_sample_is_shipped_and_parses(sample):
    assert sample_path().is_file()
    assert sample_path().parent.name == "data"
    assert len(sample) == 5
    assert sample.image_ids == (123, 200, 300, 400, 500)
    assert sample.image(123).file_name == "image.jpg"
    assert (sample.image(123).width, sample.image(123).height) == (640, 480)


def test_sample_seed_image_has_three_persons(sample):
    ann = sample.annotations(123)
    # the source note's [x, y, w, h] boxes, as xyxy
    np.testing.assert_array_equal(
        ann.boxes, [[100, 100, 150, 250], [250, 50, 330, 250], [400, 150, 460, 330]])
    assert ann.boxes.dtype == np.float64
    assert ann.labels.tolist() == [0, 0, 0]
    assert ann.annotation_ids.tolist() == [456, 789, 101]
    assert not ann.crowd.any()


def test_sample_contents(sample):
    assert sample.class_names == ("person", "car", "dog")
    assert sample.category_to_label == {1: 0, 3: 1, 18: 2}
    assert sample.label_to_category_id == (1, 3, 18)
    assert len(sample.annotations(400)) == 0  # the image without boxes
    assert sample.annotations(200).crowd.tolist() == [True, False, False, False, False, False]
    assert sample.annotations(500).crowd.sum() == 1
    # tiny boxes are kept
    wh = np.concatenate([sample.annotations(i).boxes for i in sample.image_ids])
    assert ((wh[:, 2] - wh[:, 0]) * (wh[:, 3] - wh[:, 1]) < 16 * 16).sum() >= 3
    assert [d.annotation_id for d in sample.dropped] == [3004]
    assert sample.max_boxes == 6
    assert sample.num_annotations == 18


def test_sample_warns_about_its_dropped_box():
    with pytest.warns(DroppedBoxesWarning, match=r"dropped 1 .*ids 3004"):
        load(sample_path())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load_sample().dropped) == 1


def test_summary_and_repr_report_drops(sample):
    text = sample.summary()
    assert "5 images (1 without boxes)" in text
    assert "18 boxes (2 crowd)" in text
    assert "0=person (id 1), 1=car (id 3), 2=dog (id 18)" in text
    assert "dropped 1 degenerate box(es)" in text and "3004" in text
    assert "1 dropped" in repr(sample)


# ---------------------------------------------------------------------- conversions


def test_load_dict_xywh_to_xyxy_and_contiguous_labels():
    ds = load(small_doc())
    assert ds.source == "<dict>"
    assert ds.image_ids == (7, 3)  # file order, not sorted
    assert [c.id for c in ds.categories] == [1, 3, 18]
    assert [c.label for c in ds.categories] == [0, 1, 2]
    assert ds.categories[0].supercategory == "person"
    a = ds.annotations(7)
    np.testing.assert_array_equal(a.boxes, [[10, 20, 40, 60], [0.5, 1.5, 2.75, 4.5]])
    assert a.labels.tolist() == [2, 0]
    assert a.category_ids.tolist() == [18, 1]
    assert a.crowd.tolist() == [False, True]
    assert ds.annotations(3).crowd.tolist() == [False]  # iscrowd absent means 0
    assert a.labels.dtype == np.int64 and a.crowd.dtype == bool


def test_load_path_equals_load_dict(tmp_path):
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(small_doc()))
    from_file, from_dict = load(path), load(small_doc())
    assert from_file.source == str(path)
    for i in from_dict:
        np.testing.assert_array_equal(from_file.annotations(i).boxes,
                                      from_dict.annotations(i).boxes)
    assert load(str(path)).image_ids == (7, 3)


def test_arrays_handed_out_are_read_only(sample):
    with pytest.raises(ValueError, match="read-only"):
        sample.annotations(123).boxes[0, 0] = 1.0


def test_degenerate_boxes_dropped_and_reported():
    doc = small_doc()
    doc["annotations"] += [
        {"id": 20, "image_id": 3, "category_id": 1, "bbox": [1, 1, 0, 5]},
        {"id": 21, "image_id": 3, "category_id": 1, "bbox": [1, 1, 5, -2]},
        {"id": 22, "image_id": 7, "category_id": 1, "bbox": [1, 1, -1, 0]},
    ]
    with pytest.warns(DroppedBoxesWarning, match=r"dropped 3 .*ids 20, 21, 22"):
        ds = load(doc)
    assert [(d.annotation_id, d.image_id, d.reason) for d in ds.dropped] == [
        (20, 3, "width <= 0"), (21, 3, "height <= 0"), (22, 7, "width and height <= 0")]
    assert ds.dropped[0].bbox == (1.0, 1.0, 0.0, 5.0)
    assert ds.annotations(3).annotation_ids.tolist() == [12]
    assert "dropped 3" in ds.summary()


def test_empty_annotations_list():
    doc = small_doc()
    doc["annotations"] = []
    ds = load(doc)
    assert ds.max_boxes == 0 and ds.num_annotations == 0
    assert ds.annotations(7).boxes.shape == (0, 4)


def test_unknown_image_id_lookup(sample):
    with pytest.raises(KeyError, match="999"):
        sample.annotations(999)


# --------------------------------------------------------------------- padded batch


def test_padded_batch_every_backend(xp, sample):
    batch = sample.padded_batch([123, 400, 200], xp=xp)
    assert isinstance(batch, PaddedBatch)
    boxes, labels, valid, crowd = batch
    for arr in batch:
        assert library(array_api_compat.array_namespace(arr)) == library(xp)
    want = np.zeros((3, 6, 4))
    want[0, :3] = [[100, 100, 150, 250], [250, 50, 330, 250], [400, 150, 460, 330]]
    want[2] = sample.annotations(200).boxes
    assert_close(boxes, want, xp, dtype="float32", shape=(3, 6, 4))
    assert labels.dtype == xp.int64  # the default integer dtype (JAX runs with x64 here)
    assert xp.isdtype(labels.dtype, "integral")
    assert valid.dtype == xp.bool and crowd.dtype == xp.bool
    assert to_numpy(labels).tolist() == [
        [0, 0, 0, -1, -1, -1], [-1] * 6, [0, 0, 0, 1, 1, 0]]
    assert to_numpy(valid).sum(axis=1).tolist() == [3, 0, 6]
    assert to_numpy(crowd).tolist()[2] == [True, False, False, False, False, False]
    assert not to_numpy(crowd)[:2].any()


def test_padded_batch_dtype_and_device(xp, sample):
    device = xp.__array_namespace_info__().default_device()
    boxes, labels, _, _ = sample.padded_batch(
        [500], max_boxes=8, xp=xp, dtype=xp.float64, label_dtype=xp.int32, device=device)
    assert boxes.dtype == xp.float64 and labels.dtype == xp.int32
    assert tuple(boxes.shape) == (1, 8, 4)
    assert array_api_compat.device(boxes) == array_api_compat.device(xp.asarray(0.0))


def test_padded_batch_defaults(sample):
    boxes, labels, _, _ = sample.padded_batch()
    assert isinstance(boxes, np.ndarray) and boxes.dtype == np.float32
    assert boxes.shape == (5, 6, 4) and labels.dtype == np.int64
    # only empty images: still one (padding) slot so reductions over G are defined
    boxes, _, valid, _ = sample.padded_batch([400, 400])
    assert boxes.shape == (2, 1, 4) and not valid.any()
    # numpy arrays of ids are accepted
    assert sample.padded_batch(np.array([123, 300])).boxes.shape == (2, 3, 4)


def test_padded_batch_refuses_to_truncate_silently(sample):
    with pytest.raises(ValueError, match=r"image 200 has 6, image 500 has 6.*truncate=True"):
        sample.padded_batch([123, 200, 500], max_boxes=4)


def test_padded_batch_truncates_on_request(sample):
    boxes, _, valid, _ = sample.padded_batch([200, 123], max_boxes=2, truncate=True)
    np.testing.assert_array_equal(boxes[0], sample.annotations(200).boxes[:2])
    np.testing.assert_array_equal(boxes[1], sample.annotations(123).boxes[:2])
    assert valid.all()


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        (([],), {}, ValueError, "at least one image"),
        (([123, 999],), {}, ValueError, r"image ids not in .*\[999\]"),
        (([123],), {"max_boxes": 0}, ValueError, "max_boxes"),
        (([123],), {"max_boxes": 2.5}, ValueError, "max_boxes"),
        ((123,), {}, TypeError, "sequence of image ids"),
        ((["123"],), {}, TypeError, "integers"),
    ],
)
def test_padded_batch_bad_arguments(sample, args, kwargs, error, match):
    with pytest.raises(error, match=match):
        sample.padded_batch(*args, **kwargs)


def test_padded_batch_bad_dtypes(xp, sample):
    with pytest.raises(TypeError, match="real floating"):
        sample.padded_batch([123], xp=xp, dtype=xp.int32)
    with pytest.raises(TypeError, match="integer"):
        sample.padded_batch([123], xp=xp, label_dtype=xp.float32)


# ---------------------------------------------------------------------- bad files


def _set(section, index, key, value):
    def change(doc):
        doc[section][index][key] = value
    return change


def _delete(section, index, key):
    def change(doc):
        del doc[section][index][key]
    return change


MALFORMED = {
    "missing annotation bbox": (_delete("annotations", 0, "bbox"),
                                r'annotation id 10: missing key "bbox"'),
    "missing annotation image_id": (_delete("annotations", 1, "image_id"),
                                    r'annotation id 11: missing key "image_id"'),
    "missing annotation category_id": (_delete("annotations", 2, "category_id"),
                                       r'annotation id 12: missing key "category_id"'),
    "missing annotation id": (_delete("annotations", 1, "id"),
                              r'annotations\[1\]: missing key "id"'),
    "bbox three numbers": (_set("annotations", 0, "bbox", [1, 2, 3]),
                           r'annotation id 10: "bbox" must be a list of four numbers'),
    "bbox a string": (_set("annotations", 0, "bbox", "1,2,3,4"),
                      r'annotation id 10: "bbox" must be a list of four numbers'),
    "bbox with a string": (_set("annotations", 0, "bbox", [1, 2, "3", 4]),
                           r'annotation id 10: "bbox" must be a list of four numbers'),
    "bbox with null": (_set("annotations", 0, "bbox", [1, 2, None, 4]),
                       r'annotation id 10: "bbox" must be a list of four numbers'),
    "bbox NaN": (_set("annotations", 1, "bbox", [1, 2, float("nan"), 4]),
                 r'annotation id 11: "bbox" must hold finite numbers'),
    "bbox inf": (_set("annotations", 1, "bbox", [1, float("inf"), 3, 4]),
                 r'annotation id 11: "bbox" must hold finite numbers'),
    "unknown image_id": (_set("annotations", 2, "image_id", 99),
                         r'annotation id 12: "image_id" 99 does not exist'),
    "unknown category_id": (_set("annotations", 2, "category_id", 2),
                            r'annotation id 12: "category_id" 2 does not exist .*\[1, 3, 18\]'),
    "string image_id": (_set("annotations", 2, "image_id", "7"),
                        r'annotation id 12: "image_id" must be an integer'),
    "float annotation id": (_set("annotations", 0, "id", 10.0),
                            r'annotations\[0\]: "id" must be an integer'),
    "bad iscrowd": (_set("annotations", 0, "iscrowd", 2),
                    r'annotation id 10: "iscrowd" must be 0 or 1'),
    "annotation not an object": (lambda d: d["annotations"].__setitem__(0, [1, 2, 3]),
                                 r"annotations\[0\]: must be an object"),
    "duplicate annotation id": (_set("annotations", 2, "id", 10),
                                r"annotation id 10: duplicate annotation id 10"),
    "duplicate image id": (_set("images", 1, "id", 7), r"image id 7: duplicate image id 7"),
    "duplicate category id": (_set("categories", 2, "id", 1),
                              r"category id 1: duplicate category id 1"),
    "missing image width": (_delete("images", 0, "width"),
                            r'image id 7: missing key "width"'),
    "zero image height": (_set("images", 1, "height", 0),
                          r'image id 3: "height" must be positive'),
    "missing file_name": (_delete("images", 0, "file_name"),
                          r'image id 7: missing key "file_name"'),
    "missing category name": (_delete("categories", 0, "name"),
                              r'category id 18: missing key "name"'),
    "missing images": (lambda d: d.pop("images"), r'top level: missing key "images"'),
    "missing annotations": (lambda d: d.pop("annotations"),
                            r'top level: missing key "annotations"'),
    "missing categories": (lambda d: d.pop("categories"),
                           r'top level: missing key "categories"'),
    "annotations not a list": (lambda d: d.update(annotations={}),
                               r'"annotations" must be a list'),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_dict(case):
    change, match = MALFORMED[case]
    doc = small_doc()
    change(doc)
    with pytest.raises(CocoFormatError, match=match) as info:
        load(doc)
    assert isinstance(info.value, ValueError)
    assert str(info.value).startswith("<dict>: ")


def test_malformed_file_names_the_file(tmp_path):
    doc = small_doc()
    doc["annotations"][0]["bbox"] = [1, 2, 3]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(CocoFormatError, match=r"bad\.json: annotation id 10: \"bbox\""):
        load(path)


def test_non_finite_in_a_file(tmp_path):
    # Python's json reads NaN/Infinity literals; they must not slip through as boxes
    path = tmp_path / "nan.json"
    path.write_text(json.dumps(small_doc()).replace("[10, 20, 30, 40]", "[10, NaN, 30, 40]"))
    with pytest.raises(CocoFormatError, match="annotation id 10: \"bbox\" must hold finite"):
        load(path)


def test_invalid_json(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"images": [}')
    with pytest.raises(CocoFormatError, match=r"broken\.json: invalid JSON at line 1"):
        load(path)


def test_not_an_object(tmp_path):
    path = tmp_path / "list.json"
    path.write_text("[]")
    with pytest.raises(CocoFormatError, match="must be a JSON object"):
        load(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.json"):
        load(tmp_path / "nope.json")


def test_directory_is_not_a_file(tmp_path):
    with pytest.raises(CocoFormatError, match="is not a file"):
        load(tmp_path)


def test_bad_argument_type():
    with pytest.raises(TypeError, match="path or a dict"):
        load(42)


# ----------------------------------------------------------------------------- hostile input
# (issue 11) values that would overflow a dtype, integers beyond int64, deep nesting


def _one_box(bbox, **ids) -> dict:
    doc = {"images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
           "categories": [{"id": 1, "name": "c"}],
           "annotations": [{"id": 9, "image_id": 1, "category_id": 1, "bbox": bbox}]}
    for key, value in ids.items():
        section, field = key.split("__")
        doc[section][0][field] = value
    return doc


@pytest.mark.parametrize("bbox", [
    [1e39, 0, 10, 5],          # x itself is no float32
    [3e38, 0, 1e38, 5],        # x + width = 4e38 is not
    [0, -3e38, 5, -1e38],      # y + height = -4e38: refused, not dropped as degenerate
    [1.5e308, 0, 1.5e308, 5],  # x + width overflows even float64
])
def test_box_beyond_float32_is_refused(bbox):
    with pytest.raises(CocoFormatError, match=r"annotation id 9: \"bbox\" .* beyond the "
                                              r"float32 range"):
        load(_one_box(bbox))


def test_integer_beyond_every_float_in_bbox():
    with pytest.raises(CocoFormatError, match=r"annotation id 9: \"bbox\" must hold finite"):
        load(_one_box([10**400, 0, 1, 1]))


@pytest.mark.parametrize(("key", "field"), [
    ("annotations__id", "id"), ("annotations__image_id", "image_id"),
    ("annotations__category_id", "category_id"), ("images__width", "width"),
    ("categories__id", "id")])
def test_integers_beyond_int64_are_refused(key, field):
    with pytest.raises(CocoFormatError, match=rf"\"{field}\" must fit a signed 64-bit "
                                              rf"integer.*got {2**63}"):
        load(_one_box([1, 2, 3, 4], **{key: 2**63}))
    load(_one_box([1, 2, 3, 4], annotations__id=2**63 - 1))  # the largest int64 is fine


def test_deeply_nested_json_is_a_format_error(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CocoFormatError, match="nested too deeply"):
        load(path)


@pytest.mark.parametrize("name", ["uint8", "uint16", "uint64"])
def test_unsigned_label_dtype_is_refused(sample, name):
    # uint8 would hold the padding label -1 as 255
    with pytest.raises(ValueError, match=rf"label_dtype {name} holds \[0, \d+\], which "
                                         r"cannot hold the padding label -1"):
        sample.padded_batch(label_dtype=getattr(np, name))


def test_label_dtype_too_small_for_the_classes():
    doc = _one_box([1, 2, 3, 4])
    doc["categories"] = [{"id": i + 1, "name": f"c{i}"} for i in range(200)]
    ds = load(doc)
    with pytest.raises(ValueError, match=r"label_dtype int8 holds \[-128, 127\].*labels "
                                         r"0 … 199 of 200 categories"):
        ds.padded_batch(label_dtype=np.int8)
    assert ds.padded_batch(label_dtype=np.int16).labels.tolist() == [[0]]
    small = load(_one_box([1, 2, 3, 4]))  # int8 holds -1 and label 0
    assert small.padded_batch(label_dtype=np.int8, max_boxes=2).labels.tolist() == [[0, -1]]


def test_float16_boxes_that_overflow_are_refused():
    # float16 holds |x| <= 65504: the box [70000, 0, 70010, 5] would be inf
    ds = load(_one_box([70000, 0, 10, 5]))
    with pytest.raises(ValueError, match=r"annotation id 9 of image 1 has the box coordinate "
                                         r"70010, which float16 cannot hold"):
        ds.padded_batch(dtype=np.float16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning either
        boxes = ds.padded_batch(dtype=np.float32).boxes
    assert boxes.tolist() == [[[70000.0, 0.0, 70010.0, 5.0]]]
    # in range, float16 is fine
    assert load(_one_box([600, 0, 10, 5])).padded_batch(dtype=np.float16).boxes.dtype \
        == np.float16
