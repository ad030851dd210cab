# Deformable DETR (learned queries, no box refinement), R50, on KITTI 2D object detection
# (Car, Pedestrian, Cyclist): the paper-scale recipe of Zhu et al. (2021) on KITTI.
#   AdamW, lr 2e-4, backbone lr x0.1, weight decay 1e-4, gradient clip 0.1 (configs/common),
#   16 images per step, 50 epochs, lr x0.1 after epoch 40, ImageNet-pretrained R50 (FrozenBN).
# Variants: deformable_detr_r50_kitti_50ep_box_refine.py, deformable_detr_r50_kitti_50ep_two_stage.py.
#
# Epoch arithmetic (KITTI train split: 3712 images; batch 16):
#   1 epoch   = 3712 / 16      =   232 iterations
#   50 epochs = 50 * 3712 / 16 = 11600 iterations (max_iter)
#   epoch 40  = 40 * 3712 / 16 =  9280 iterations (lr decay)
#   5 epochs  =  5 * 3712 / 16 =  1160 iterations (eval and checkpoint period; the last
#                                                  evaluation is the final one at 11600)
from ..common.data.kitti import dataloader
from ..common.optim import AdamW as optimizer
from ..common.schedule import epoch_schedule
from ..common.train import train
from .models.deformable_detr_r50 import model

_NUM_TRAIN_IMAGES = 3712
_BATCH_SIZE = 16
_EPOCHS, _DECAY_EPOCH, _EVAL_EVERY_EPOCHS = 50, 40, 5

model.num_classes = 3
# The paper's code trains ResNet layer2..layer4 only: stem and res2 frozen (freeze_at=2).
model.backbone.freeze_at = 2

dataloader.train.total_batch_size = _BATCH_SIZE

optimizer.lr = 2e-4
optimizer.params.backbone_lr_factor = 0.1

train.clip_grad.params.max_norm = 0.1
# torchvision's ImageNet R50 converted to detectron2's format (RGB, torchvision mean/std, the
# stride-in-3x3 bottleneck that build_resnet uses for depth >= 50). Set "" to train from scratch.
train.init_checkpoint = "detectron2://ImageNetPretrained/torchvision/R-50.pkl"
train.output_dir = "./output/deformable_detr_r50_kitti_50ep"

lr_multiplier = epoch_schedule(
    train, _NUM_TRAIN_IMAGES, _BATCH_SIZE, _EPOCHS, _DECAY_EPOCH,
    eval_every_epochs=_EVAL_EVERY_EPOCHS,
)
