from clock_distill.data import register_kitti_splits
from clock_distill.data.kitti import datasets_root

from .kitti_loaders import kitti_dataloaders

# Real KITTI 2D object under $DETECTRON2_DATASETS/kitti with ImageSets/{train,val}.txt (README).
register_kitti_splits("kitti", datasets_root() / "kitti", ("train", "val"))

# 1242x375 images: multi-scale short edge 320..448 for training, 384 at test (long edge <= 1500).
dataloader = kitti_dataloaders(
    "kitti_train", "kitti_val",
    train_short_edges=(320, 352, 384, 416, 448), test_short_edge=384, max_size=1500, batch_size=16, num_workers=4,
)
