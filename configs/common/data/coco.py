from detectron2.config import LazyCall as L
from detectron2.data import build_detection_test_loader, get_detection_dataset_dicts
from detectron2.data import transforms as T
from omegaconf import OmegaConf

from clock_distill.data import DetrDatasetMapper
from clock_distill.data.resumable import build_resumable_train_loader

# detectron2's builtin COCO names (coco_2017_*), registered by detectron2 under
# $DETECTRON2_DATASETS/coco. DETR's augmentation: multi-scale 480..800 (long edge <= 1333),
# and with probability 0.5 the resize-crop-resize variant.
dataloader = OmegaConf.create()
# The training loader resumes exactly after --resume (same order and augmentations).
dataloader.train = L(build_resumable_train_loader)(
    dataset=L(get_detection_dataset_dicts)(names="coco_2017_train"),
    mapper=L(DetrDatasetMapper)(
        augmentation=[
            L(T.RandomFlip)(horizontal=True),
            L(T.ResizeShortestEdge)(short_edge_length=(480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800), max_size=1333, sample_style="choice"),
        ],
        augmentation_with_crop=[
            L(T.RandomFlip)(horizontal=True),
            L(T.ResizeShortestEdge)(short_edge_length=(400, 500, 600), sample_style="choice"),
            L(T.RandomCrop)(crop_type="absolute_range", crop_size=(384, 600)),
            L(T.ResizeShortestEdge)(short_edge_length=(480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800), max_size=1333, sample_style="choice"),
        ],
        is_train=True,
        image_format="RGB",
    ),
    total_batch_size=16,
    num_workers=4,
)
dataloader.test = L(build_detection_test_loader)(
    dataset=L(get_detection_dataset_dicts)(names="coco_2017_val", filter_empty=False),
    mapper=L(DetrDatasetMapper)(
        augmentation=[L(T.ResizeShortestEdge)(short_edge_length=800, max_size=1333)], is_train=False, image_format="RGB"
    ),
    num_workers=4,
)
