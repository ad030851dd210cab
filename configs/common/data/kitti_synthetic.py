from clock_distill.data import register_kitti_splits
from clock_distill.data.kitti import datasets_root
from clock_distill.data.synthetic import synthetic_on_first_use

from .kitti_loaders import kitti_dataloaders

# Registered here, when the config is loaded, never at package import. The first load of a split
# generates the standard set (train 1000 / tune 200 / val 400 images) under
# $DETECTRON2_DATASETS/kitti_synthetic if nothing is there (about 30 s, deterministic); the same
# as `python tools/make_synthetic_kitti.py --out $DETECTRON2_DATASETS/kitti_synthetic`.
# Tune on `tune` (dataloader.test.dataset.names=kitti_synthetic_tune); `val` is what is reported.
_root = datasets_root() / "kitti_synthetic"
register_kitti_splits("kitti_synthetic", _root, ("train", "tune", "val"), prepare=synthetic_on_first_use(_root))

# 640x192 images: multi-scale short edge around 192 for training, 192 at test. The training
# loader resumes exactly after --resume (clock_distill.data.resumable); the benchmark's `quick`
# profile pins detectron2's loader instead, the one its first cells ran with.
dataloader = kitti_dataloaders(
    "kitti_synthetic_train", "kitti_synthetic_val",
    train_short_edges=(160, 176, 192, 208, 224), test_short_edge=192, max_size=800, batch_size=4,
)
