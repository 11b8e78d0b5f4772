"""Regenerate ``sample_coco.json``, the small COCO-format sample shipped in the package.

Run ``python focal_array/data/make_sample.py`` from the repository root. The boxes are made
up (there are no pixels); what matters is what they exercise:

* image 123: the source note's example, three persons (annotation ids 456, 789, 101);
* image 200: a street with a crowd region of persons, tiny boxes and a car;
* image 300: a park with a dog, a tiny person and one zero-width box (dropped on load);
* image 400: a portrait image with no boxes at all;
* image 500: a parking lot with a crowd region of cars and a tiny car.

Category ids 1, 3 and 18 are not contiguous, so the id -> label mapping (0, 1, 2) matters.
"""

from __future__ import annotations

import json
from pathlib import Path

PERSON, CAR, DOG = 1, 3, 18

IMAGES = [
    (123, "image.jpg", 640, 480),
    (200, "street.jpg", 640, 480),
    (300, "park.jpg", 640, 427),
    (400, "empty_room.jpg", 480, 640),
    (500, "parking_lot.jpg", 640, 480),
]

# (annotation id, image id, category id, [x, y, width, height], iscrowd)
ANNOTATIONS: list[tuple[int, int, int, list[float], int]] = [
    (456, 123, PERSON, [100, 100, 50, 150], 0),
    (789, 123, PERSON, [250, 50, 80, 200], 0),
    (101, 123, PERSON, [400, 150, 60, 180], 0),
    (2001, 200, PERSON, [20, 180, 260, 120], 1),
    (2002, 200, PERSON, [300, 160, 45, 130], 0),
    (2003, 200, PERSON, [360, 170, 40, 120], 0),
    (2004, 200, CAR, [450, 250, 160, 90], 0),
    (2005, 200, CAR, [590.5, 205.25, 12, 8], 0),
    (2006, 200, PERSON, [210, 150, 5, 11], 0),
    (3001, 300, DOG, [120, 260, 140, 110], 0),
    (3002, 300, PERSON, [300, 80, 90, 300], 0),
    (3003, 300, PERSON, [560, 190, 6, 14], 0),
    (3004, 300, DOG, [500, 300, 0, 20], 0),
    (5001, 500, CAR, [0, 300, 640, 180], 1),
    (5002, 500, CAR, [40, 200, 150, 80], 0),
    (5003, 500, CAR, [230, 210, 140, 75], 0),
    (5004, 500, CAR, [420, 190, 160, 90], 0),
    (5005, 500, CAR, [300, 120, 9, 6], 0),
    (5006, 500, PERSON, [600, 170, 18, 50], 0),
]

CATEGORIES = [
    (PERSON, "person", "person"),
    (CAR, "car", "vehicle"),
    (DOG, "dog", "animal"),
]


def build() -> dict:
    """The sample as a COCO instances dict."""
    return {
        "info": {"description": "focal_array sample: synthetic boxes in COCO format",
                 "version": "1.0"},
        "images": [{"id": i, "file_name": f, "width": w, "height": h}
                   for i, f, w, h in IMAGES],
        "annotations": [{"id": a, "image_id": i, "category_id": c, "bbox": b,
                         "area": b[2] * b[3], "iscrowd": crowd}
                        for a, i, c, b, crowd in ANNOTATIONS],
        "categories": [{"id": c, "name": n, "supercategory": s} for c, n, s in CATEGORIES],
    }


def dumps(doc: dict) -> str:
    """JSON with one entry per line: small, and readable in a diff."""
    parts = ["{", f'  "info": {json.dumps(doc["info"])},']
    for key in ("images", "annotations", "categories"):
        rows = ",\n".join(f"    {json.dumps(entry)}" for entry in doc[key])
        comma = "," if key != "categories" else ""
        parts.append(f'  "{key}": [\n{rows}\n  ]{comma}')
    parts.append("}")
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    out = Path(__file__).with_name("sample_coco.json")
    out.write_text(dumps(build()), encoding="utf-8")
    print(f"wrote {out}")
