from clock_distill.data import register_kitti_splits
from clock_distill.data.kitti import datasets_root

from .kitti_loaders import kitti_dataloaders

# Registered here, when the config is loaded, never at package import. The data is made by
# `make demo` or `python tools/make_synthetic_kitti.py --out $DETECTRON2_DATASETS/kitti_synthetic`.
register_kitti_splits("kitti_synthetic", datasets_root() / "kitti_synthetic", ("train", "val"))

# 640x192 images: multi-scale short edge around 192 for training, 192 at test.
dataloader = kitti_dataloaders(
    "kitti_synthetic_train", "kitti_synthetic_val",
    train_short_edges=(160, 176, 192, 208, 224), test_short_edge=192, max_size=800, batch_size=4,
)
