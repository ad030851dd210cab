"""DETR data mapping: detectron2 augmentations plus DETR's normalized targets."""

from __future__ import annotations

import copy
from typing import Sequence

import numpy as np
import torch

__all__ = ["DetrDatasetMapper", "detr_train_augmentation", "detr_test_augmentation"]


def detr_train_augmentation(
    min_sizes: Sequence[int], max_size: int, crop_size: tuple[int, int] | None = None, crop_min_sizes=None
):
    """The two DETR training pipelines as detectron2 augmentation lists.

    Returns ``(augmentation, augmentation_with_crop)``: random flip then a multi-scale resize of
    the short edge to one of ``min_sizes`` (at most ``max_size`` long edge); and, when
    ``crop_size`` is given, DETR's crop variant: flip, resize to one of ``crop_min_sizes``, a
    random absolute crop within ``crop_size`` = (min, max), then the multi-scale resize.
    ``augmentation_with_crop`` is None without ``crop_size``.
    """
    from detectron2.data import transforms as T

    base = [
        T.RandomFlip(horizontal=True),
        T.ResizeShortestEdge(short_edge_length=tuple(min_sizes), max_size=max_size, sample_style="choice"),
    ]
    if crop_size is None:
        return base, None
    with_crop = [
        T.RandomFlip(horizontal=True),
        T.ResizeShortestEdge(short_edge_length=tuple(crop_min_sizes or min_sizes), sample_style="choice"),
        T.RandomCrop(crop_type="absolute_range", crop_size=tuple(crop_size)),
        T.ResizeShortestEdge(short_edge_length=tuple(min_sizes), max_size=max_size, sample_style="choice"),
    ]
    return base, with_crop


def detr_test_augmentation(min_size: int, max_size: int):
    """Fixed test-time resize of the short edge to ``min_size`` (long edge at most ``max_size``)."""
    from detectron2.data import transforms as T

    return [T.ResizeShortestEdge(short_edge_length=min_size, max_size=max_size)]


class DetrDatasetMapper:
    """Map a detectron2 dataset dict to a DETR input.

    The output dict keeps ``file_name``, ``image_id``, ``height`` and ``width`` (the original
    size, to which predictions are rescaled) and adds:

    - ``image``: (3, H', W') uint8 tensor in ``image_format`` channel order, after augmentation;
    - ``instances``: detectron2 ``Instances`` with ``gt_boxes`` (XYXY, pixels of the augmented
      image) and ``gt_classes`` (training, or whenever the record has annotations);
    - ``target``: ``{"labels": (n,) int64, "boxes": (n, 4) float32}``, boxes as (cx, cy, w, h)
      normalized by the augmented image size, the form DETR losses use.

    Images with no objects are kept and get empty (0,) / (0, 4) targets. During training, with
    ``augmentation_with_crop`` set, each image uses that pipeline with probability 0.5 (DETR).
    """

    def __init__(
        self,
        augmentation: list,
        augmentation_with_crop: list | None = None,
        is_train: bool = True,
        image_format: str = "RGB",
        crop_probability: float = 0.5,
    ):
        from detectron2.data import transforms as T

        self.augmentation = T.AugmentationList(augmentation)
        self.augmentation_with_crop = T.AugmentationList(augmentation_with_crop) if augmentation_with_crop else None
        self.is_train = is_train
        self.image_format = image_format
        self.crop_probability = crop_probability

    def __call__(self, dataset_dict: dict) -> dict:
        from detectron2.data import detection_utils as utils
        from detectron2.data import transforms as T

        dataset_dict = copy.deepcopy(dataset_dict)
        image = utils.read_image(dataset_dict["file_name"], format=self.image_format)
        utils.check_image_size(dataset_dict, image)

        augmentation = self.augmentation
        if self.is_train and self.augmentation_with_crop is not None and np.random.rand() < self.crop_probability:
            augmentation = self.augmentation_with_crop
        aug_input = T.AugInput(image)
        transforms = augmentation(aug_input)
        image = aug_input.image
        h, w = image.shape[:2]
        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))

        annos = dataset_dict.pop("annotations", None)
        if annos is None:
            return dataset_dict
        annos = [
            utils.transform_instance_annotations(obj, transforms, (h, w))
            for obj in annos
            if obj.get("iscrowd", 0) == 0
        ]
        instances = utils.annotations_to_instances(annos, (h, w))
        # A crop can cut a box down to nothing; DETR cannot match an empty box.
        instances = utils.filter_empty_instances(instances)
        dataset_dict["instances"] = instances
        from ..modeling.layers.box_ops import box_xyxy_to_cxcywh

        boxes = instances.gt_boxes.tensor
        cxcywh = box_xyxy_to_cxcywh(boxes / boxes.new_tensor([w, h, w, h]))
        dataset_dict["target"] = {"labels": instances.gt_classes.to(torch.int64), "boxes": cxcywh.to(torch.float32)}
        return dataset_dict
