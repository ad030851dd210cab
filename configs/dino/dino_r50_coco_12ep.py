# DINO-4scale, R50, COCO 2017: DINO's 12-epoch recipe (Zhang et al., 2023).
#   AdamW, lr 1e-4, backbone lr x0.1, weight decay 1e-4, gradient clip 0.1, 16 images per step,
#   12 epochs with the lr x0.1 after epoch 11, ImageNet-pretrained R50 (FrozenBN).
# 24 epochs: dino_r50_coco_24ep.py.
#
# Epoch arithmetic (COCO train2017 with annotations: 117266 images; batch 16):
#   1 epoch   = 117266 / 16      =  7329.125 ->  7329 iterations (checkpoint period)
#   12 epochs = 12 * 117266 / 16 = 87949.5   -> 87950 iterations (max_iter; round half to even)
#   epoch 11  = 11 * 117266 / 16 = 80620.375 -> 80620 iterations (lr decay)
#   5 epochs  =  5 * 117266 / 16 = 36645.625 -> 36646 iterations (eval period: evaluations at
#                36646 and 73292, then the final one at 87950)
from ..common.data.coco import dataloader
from ..common.optim import AdamW as optimizer
from ..common.schedule import epoch_schedule
from ..common.train import train
from .models.dino_r50 import model

_NUM_TRAIN_IMAGES = 117266
_BATCH_SIZE = 16
_EPOCHS, _DECAY_EPOCH, _EVAL_EVERY_EPOCHS = 12, 11, 5

model.num_classes = 80

dataloader.train.total_batch_size = _BATCH_SIZE

optimizer.lr = 1e-4
optimizer.params.backbone_lr_factor = 0.1

train.checkpointer.max_to_keep = 12
train.clip_grad.params.max_norm = 0.1
train.init_checkpoint = "detectron2://ImageNetPretrained/torchvision/R-50.pkl"
train.output_dir = "./output/dino_r50_coco_12ep"

lr_multiplier = epoch_schedule(
    train, _NUM_TRAIN_IMAGES, _BATCH_SIZE, _EPOCHS, _DECAY_EPOCH,
    eval_every_epochs=_EVAL_EVERY_EPOCHS, checkpoint_every_epochs=1,
)
