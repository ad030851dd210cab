# DAB-DETR, R50, COCO 2017: DAB-DETR's recipe (Liu et al., 2022).
#   AdamW, lr 1e-4, backbone lr x0.1, weight decay 1e-4, gradient clip 0.1, 16 images per step,
#   50 epochs with the lr x0.1 after epoch 40, ImageNet-pretrained R50 (FrozenBN).
#
# Epoch arithmetic (COCO train2017 with annotations: 117266 images; batch 16):
#   1 epoch   = 117266 / 16      =  7329.125 ->  7329 iterations (checkpoint period)
#   50 epochs = 50 * 117266 / 16 = 366456.25 -> 366456 iterations (max_iter)
#   epoch 40  = 40 * 117266 / 16 = 293165    -> 293165 iterations (lr decay)
#   5 epochs  =  5 * 117266 / 16 = 36645.625 -> 36646 iterations (eval period:
#                9 periodic evaluations, the last at 329814, then the final one at 366456)
from ..common.data.coco import dataloader
from ..common.optim import AdamW as optimizer
from ..common.schedule import epoch_schedule
from ..common.train import train
from .models.dab_detr_r50 import model

_NUM_TRAIN_IMAGES = 117266
_BATCH_SIZE = 16
_EPOCHS, _DECAY_EPOCH, _EVAL_EVERY_EPOCHS = 50, 40, 5

model.num_classes = 80

dataloader.train.total_batch_size = _BATCH_SIZE

optimizer.lr = 1e-4
optimizer.params.backbone_lr_factor = 0.1

train.checkpointer.max_to_keep = 10
train.clip_grad.params.max_norm = 0.1
train.init_checkpoint = "detectron2://ImageNetPretrained/torchvision/R-50.pkl"
train.output_dir = "./output/dab_detr_r50_coco_50ep"

lr_multiplier = epoch_schedule(
    train, _NUM_TRAIN_IMAGES, _BATCH_SIZE, _EPOCHS, _DECAY_EPOCH,
    eval_every_epochs=_EVAL_EVERY_EPOCHS, checkpoint_every_epochs=1,
)
