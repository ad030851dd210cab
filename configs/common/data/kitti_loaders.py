from detectron2.config import LazyCall as L
from detectron2.data import build_detection_test_loader, build_detection_train_loader, get_detection_dataset_dicts
from detectron2.data import transforms as T
from omegaconf import OmegaConf

from clock_distill.data import DetrDatasetMapper
from clock_distill.data.resumable import build_resumable_train_loader


def kitti_dataloaders(train_name, test_name, train_short_edges, test_short_edge, max_size, batch_size, num_workers=2,
                      resumable=True):
    """DETR train/test loaders for registered KITTI-format datasets (images without objects kept).
    ``resumable``: the training loader resumes exactly after --resume
    (:func:`clock_distill.data.resumable.build_resumable_train_loader`); else detectron2's."""
    dataloader = OmegaConf.create()
    dataloader.train = L(build_resumable_train_loader if resumable else build_detection_train_loader)(
        dataset=L(get_detection_dataset_dicts)(names=train_name, filter_empty=False),
        mapper=L(DetrDatasetMapper)(
            augmentation=[
                L(T.RandomFlip)(horizontal=True),
                L(T.ResizeShortestEdge)(short_edge_length=tuple(train_short_edges), max_size=max_size, sample_style="choice"),
            ],
            augmentation_with_crop=None,
            is_train=True,
            image_format="RGB",
        ),
        total_batch_size=batch_size,
        num_workers=num_workers,
    )
    dataloader.test = L(build_detection_test_loader)(
        dataset=L(get_detection_dataset_dicts)(names=test_name, filter_empty=False),
        mapper=L(DetrDatasetMapper)(
            augmentation=[L(T.ResizeShortestEdge)(short_edge_length=test_short_edge, max_size=max_size)],
            is_train=False,
            image_format="RGB",
        ),
        num_workers=num_workers,
    )
    return dataloader
