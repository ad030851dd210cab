# DINO-4scale, R50, on KITTI 2D object detection (Car, Pedestrian, Cyclist): DINO's recipe
# (Zhang et al., 2023) on KITTI.
#   AdamW, lr 1e-4, backbone lr x0.1, weight decay 1e-4, gradient clip 0.1, 16 images per step,
#   12 epochs with the lr x0.1 after epoch 11, ImageNet-pretrained R50 (FrozenBN).
# 24 epochs: dino_r50_kitti_24ep.py.
#
# Epoch arithmetic (KITTI train split: 3712 images; batch 16):
#   1 epoch   = 3712 / 16      =  232 iterations
#   12 epochs = 12 * 3712 / 16 = 2784 iterations (max_iter)
#   epoch 11  = 11 * 3712 / 16 = 2552 iterations (lr decay)
#   4 epochs  =  4 * 3712 / 16 =  928 iterations (eval and checkpoint period: 928, 1856, 2784)
from ..common.data.kitti import dataloader
from ..common.optim import AdamW as optimizer
from ..common.schedule import epoch_schedule
from ..common.train import train
from .models.dino_r50 import model

_NUM_TRAIN_IMAGES = 3712
_BATCH_SIZE = 16
_EPOCHS, _DECAY_EPOCH, _EVAL_EVERY_EPOCHS = 12, 11, 4

model.num_classes = 3

dataloader.train.total_batch_size = _BATCH_SIZE

optimizer.lr = 1e-4
optimizer.params.backbone_lr_factor = 0.1

train.clip_grad.params.max_norm = 0.1
# torchvision's ImageNet R50 converted to detectron2's format. Set "" to train from scratch.
train.init_checkpoint = "detectron2://ImageNetPretrained/torchvision/R-50.pkl"
train.output_dir = "./output/dino_r50_kitti_12ep"

lr_multiplier = epoch_schedule(
    train, _NUM_TRAIN_IMAGES, _BATCH_SIZE, _EPOCHS, _DECAY_EPOCH,
    eval_every_epochs=_EVAL_EVERY_EPOCHS,
)
