"""The DETR dataset mapper: keys, shapes, normalized targets, empty images."""

import numpy as np
import pytest
import torch
from detectron2.data import transforms as T
from detectron2.structures import BoxMode
from PIL import Image

from clock_distill.data import DetrDatasetMapper, detr_test_augmentation, detr_train_augmentation


@pytest.fixture
def record(tmp_path):
    Image.fromarray(np.zeros((50, 200, 3), np.uint8)).save(tmp_path / "im.png")
    return {
        "file_name": str(tmp_path / "im.png"), "image_id": "000000", "height": 50, "width": 200,
        "annotations": [
            {"bbox": [20.0, 10.0, 60.0, 40.0], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 2},
            {"bbox": [100.0, 0.0, 200.0, 50.0], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0},
        ],
    }


def test_test_mapping_keys_shapes_and_normalized_boxes(record):
    mapper = DetrDatasetMapper(detr_test_augmentation(100, 1000), is_train=False)
    out = mapper(record)
    assert out["image"].shape == (3, 100, 400) and out["image"].dtype == torch.uint8
    assert (out["height"], out["width"]) == (50, 200)  # original size kept for postprocessing
    target = out["target"]
    assert target["labels"].tolist() == [2, 0] and target["labels"].dtype == torch.int64
    # Box 1 (20,10)-(60,40) of a 200x50 image: cx=40/200, cy=25/50, w=40/200, h=30/50.
    torch.testing.assert_close(target["boxes"][0], torch.tensor([0.2, 0.5, 0.2, 0.6]))
    torch.testing.assert_close(target["boxes"][1], torch.tensor([0.75, 0.5, 0.5, 1.0]))
    assert out["instances"].gt_boxes.tensor.shape == (2, 4)
    assert "annotations" not in out


def test_flip_moves_normalized_boxes(record):
    mapper = DetrDatasetMapper([T.RandomFlip(prob=1.0), T.ResizeShortestEdge(50, 1000)], is_train=True)
    target = mapper(record)["target"]
    torch.testing.assert_close(target["boxes"][0], torch.tensor([0.8, 0.5, 0.2, 0.6]))


def test_empty_image_is_kept(record):
    record["annotations"] = []
    aug, aug_crop = detr_train_augmentation((40, 50, 60), 1000, crop_size=(30, 45))
    mapper = DetrDatasetMapper(aug, aug_crop, is_train=True)
    for _ in range(5):
        out = mapper(record)
        assert out["target"]["boxes"].shape == (0, 4) and out["target"]["labels"].shape == (0,)


def test_train_augmentation_keeps_boxes_valid(record):
    aug, aug_crop = detr_train_augmentation((40, 50, 60), 1000, crop_size=(30, 45))
    mapper = DetrDatasetMapper(aug, aug_crop, is_train=True, crop_probability=1.0)
    np.random.seed(0)
    for _ in range(20):
        out = mapper(record)
        boxes = out["target"]["boxes"]
        assert min(out["image"].shape[1:]) in (40, 50, 60)  # the short edge, whichever it is after a crop
        assert ((boxes >= 0) & (boxes <= 1)).all() and (boxes[:, 2:] > 0).all()
        assert len(boxes) == len(out["target"]["labels"]) <= 2


def test_mapper_on_synthetic_kitti(synthetic_kitti):
    from clock_distill.data.kitti import load_kitti_instances

    records = load_kitti_instances(synthetic_kitti, "val")
    mapper = DetrDatasetMapper(detr_test_augmentation(96, 1000), is_train=False)
    for r in records:
        out = mapper(r)
        assert out["image"].shape == (3, 96, 320)
        assert len(out["target"]["boxes"]) == len(r["annotations"])
