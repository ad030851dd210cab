"""Datasets and mapping. Nothing here registers a dataset at import time."""

from .kitti import (
    KITTI_CLASSES,
    KittiFormatError,
    load_kitti_instances,
    read_kitti_label_file,
    register_kitti,
    register_kitti_splits,
)
from .mapper import DetrDatasetMapper, detr_test_augmentation, detr_train_augmentation

__all__ = [
    "KITTI_CLASSES",
    "KittiFormatError",
    "load_kitti_instances",
    "read_kitti_label_file",
    "register_kitti",
    "register_kitti_splits",
    "DetrDatasetMapper",
    "detr_train_augmentation",
    "detr_test_augmentation",
]
