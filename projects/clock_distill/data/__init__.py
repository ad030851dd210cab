"""Datasets and mapping. Nothing here registers a dataset at import time.

The mapper (torch, detectron2 transforms) is imported lazily, so that label parsing and the
KITTI metric's command-line tool need neither.
"""

from .kitti import (
    KITTI_CLASSES,
    KittiFormatError,
    load_kitti_instances,
    read_kitti_label_file,
    register_kitti,
    register_kitti_splits,
)

_MAPPER_NAMES = ("DetrDatasetMapper", "detr_train_augmentation", "detr_test_augmentation")

__all__ = [
    "KITTI_CLASSES",
    "KittiFormatError",
    "load_kitti_instances",
    "read_kitti_label_file",
    "register_kitti",
    "register_kitti_splits",
    *_MAPPER_NAMES,
]


def __getattr__(name):
    if name in _MAPPER_NAMES:
        from . import mapper

        return getattr(mapper, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
