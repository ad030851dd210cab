"""KITTI parsing, loading and registration."""

import subprocess
import sys

import pytest
from detectron2.structures import BoxMode

from clock_distill.data.kitti import (
    KittiFormatError,
    kitti_difficulty,
    load_kitti_instances,
    read_kitti_label_file,
    register_kitti,
)

GOOD = """\
Car 0.00 0 -1.58 587.01 173.33 614.12 200.12 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59
Van 0.12 1 1.20 10.00 20.00 110.00 90.50 2.20 1.90 5.08 1.00 1.65 10.00 1.20

DontCare -1 -1 -10 503.89 169.71 590.61 190.13 -1 -1 -1 -1000 -1000 -1000 -10
"""


def test_parse_good_file(tmp_path):
    path = tmp_path / "000001.txt"
    path.write_text(GOOD)
    objs = read_kitti_label_file(path)
    assert [o["type"] for o in objs] == ["Car", "Van", "DontCare"]  # blank line skipped
    car = objs[0]
    assert car["bbox"] == [587.01, 173.33, 614.12, 200.12]
    assert car["occluded"] == 0 and isinstance(car["occluded"], int)
    assert car["dimensions"] == [1.65, 1.67, 3.64] and car["location"] == [-0.65, 1.71, 46.70]
    assert car["rotation_y"] == -1.59 and "score" not in car
    assert objs[2]["occluded"] == -1


def test_parse_result_file_with_score(tmp_path):
    path = tmp_path / "r.txt"
    path.write_text("Pedestrian -1 -1 -10 1 2 30 80 -1 -1 -1 -1000 -1000 -1000 -10 0.875\n")
    assert read_kitti_label_file(path)[0]["score"] == 0.875


@pytest.mark.parametrize(
    "bad, message",
    [
        ("Car 0.00 0 -1.58 587.01 173.33 614.12 200.12 1.65 1.67 3.64 -0.65 1.71 46.70", "expected 15 fields"),
        ("Car 0.00 0 -1.58 587.01 abc 614.12 200.12 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59", "non-numeric"),
        ("Truck2 0.00 0 -1.58 587.01 173.33 614.12 200.12 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59", "unknown object type"),
        ("Car 0.00 5 -1.58 587.01 173.33 614.12 200.12 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59", "occluded must be"),
        ("Car 0.00 0 -1.58 614.12 173.33 587.01 200.12 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59", "x2 < x1"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, bad, message):
    path = tmp_path / "000007.txt"
    path.write_text(GOOD.splitlines()[0] + "\n" + bad + "\n")
    with pytest.raises(KittiFormatError, match=rf"000007\.txt:2: .*{message}"):
        read_kitti_label_file(path)


def _kitti_root(tmp_path, ids=("000000", "000001"), labels=None):
    import numpy as np
    from PIL import Image

    for d in ("training/image_2", "training/label_2", "ImageSets"):
        (tmp_path / d).mkdir(parents=True, exist_ok=True)
    for i in ids:
        Image.fromarray(np.zeros((30, 100, 3), np.uint8)).save(tmp_path / f"training/image_2/{i}.png")
        (tmp_path / f"training/label_2/{i}.txt").write_text((labels or {}).get(i, GOOD))
    (tmp_path / "ImageSets/train.txt").write_text("\n".join(ids) + "\n")
    return tmp_path


def test_load_records(tmp_path):
    root = _kitti_root(tmp_path, labels={"000001": ""})
    records = load_kitti_instances(root, "train")
    assert [r["image_id"] for r in records] == ["000000", "000001"]
    r0 = records[0]
    assert (r0["height"], r0["width"]) == (30, 100)
    assert len(r0["annotations"]) == 1  # only Car of (Car, Van, DontCare) is a thing class
    ann = r0["annotations"][0]
    assert ann["bbox_mode"] == BoxMode.XYXY_ABS and ann["category_id"] == 0
    assert ann["bbox"] == [587.01, 173.33, 614.12, 200.12]
    # Everything the official evaluation needs is kept, neutral and DontCare included.
    assert [o["type"] for o in r0["kitti_objects"]] == ["Car", "Van", "DontCare"]
    assert records[1]["annotations"] == [] and records[1]["kitti_objects"] == []
    records = load_kitti_instances(root, "train", classes=("Pedestrian", "Van"))
    assert records[0]["annotations"][0]["category_id"] == 1


def test_missing_image_and_split_name_the_path(tmp_path):
    root = _kitti_root(tmp_path)
    (root / "training/image_2/000001.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"training/image_2/000001\.png"):
        load_kitti_instances(root, "train")
    with pytest.raises(FileNotFoundError, match=r"ImageSets/val\.txt"):
        load_kitti_instances(root, "val")


def test_register_sets_metadata(tmp_path):
    from detectron2.data import DatasetCatalog, MetadataCatalog

    root = _kitti_root(tmp_path)
    register_kitti("test_kitti_reg_train", root, "train")
    register_kitti("test_kitti_reg_train", root, "train")  # same arguments: no-op
    meta = MetadataCatalog.get("test_kitti_reg_train")
    assert meta.thing_classes == ["Car", "Pedestrian", "Cyclist"]
    assert meta.evaluator_type == "kitti"
    assert len(DatasetCatalog.get("test_kitti_reg_train")) == 2
    with pytest.raises(ValueError, match="already registered"):
        register_kitti("test_kitti_reg_train", root, "val")


def test_import_registers_nothing():
    code = (
        "from detectron2.data import DatasetCatalog; before = set(DatasetCatalog.list());"
        "import clock_distill, clock_distill.data, clock_distill.data.kitti, clock_distill.data.synthetic;"
        "assert set(DatasetCatalog.list()) == before, set(DatasetCatalog.list()) - before"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_difficulty_filters():
    def obj(h, occ, trunc):
        return {"bbox": [0, 0, 10, h], "occluded": occ, "truncated": trunc}

    assert kitti_difficulty(obj(40.5, 0, 0.15)) == "easy"  # truncation limit is inclusive
    assert kitti_difficulty(obj(40, 0, 0.0)) == "moderate"  # height must be strictly above 40
    assert kitti_difficulty(obj(60, 1, 0.0)) == "moderate"
    assert kitti_difficulty(obj(60, 0, 0.3)) == "moderate"
    assert kitti_difficulty(obj(60, 2, 0.5)) == "hard"
    assert kitti_difficulty(obj(25, 0, 0.0)) is None
    assert kitti_difficulty(obj(60, 3, 0.0)) is None
    assert kitti_difficulty(obj(60, 0, 0.51)) is None


def test_zero_area_boxes_are_dropped_and_counted_negative_boxes_refused(tmp_path, caplog):
    line = "Car 0.00 0 -1.58 {} 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59\n"
    flat = line.format("10.00 20.00 50.00 20.00")  # zero height
    root = _kitti_root(tmp_path, labels={"000000": GOOD + flat, "000001": flat + flat})
    with caplog.at_level("WARNING"):
        records = load_kitti_instances(root, "train")
    assert [len(r["annotations"]) for r in records] == [1, 0]  # never a NaN-making empty box
    assert len(records[1]["kitti_objects"]) == 2  # the evaluation still sees them (height rule)
    assert "dropped 3 zero-area ground-truth boxes" in caplog.text and "000000.txt:5" in caplog.text

    (root / "training/label_2/000001.txt").write_text(GOOD + line.format("-3.00 20.00 50.00 40.00"))
    with pytest.raises(KittiFormatError, match=r"000001\.txt:5: bbox has a negative coordinate: -3\.0 20\.0 50\.0 40\.0"):
        load_kitti_instances(root, "train")


def test_unreadable_image_names_the_file(tmp_path):
    root = _kitti_root(tmp_path)
    (root / "training/image_2/000001.png").write_bytes(b"not a png")
    with pytest.raises(KittiFormatError, match=r"KITTI image .*000001\.png cannot be read as an image"):
        load_kitti_instances(root, "train")
