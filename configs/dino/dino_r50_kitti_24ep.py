# DINO-4scale, R50, KITTI: the recipe of dino_r50_kitti_12ep.py with 24 epochs and the lr decay
# after epoch 20.
#
# Epoch arithmetic (KITTI train split: 3712 images; batch 16):
#   24 epochs = 24 * 3712 / 16 = 5568 iterations (max_iter)
#   epoch 20  = 20 * 3712 / 16 = 4640 iterations (lr decay)
#   4 epochs  =  4 * 3712 / 16 =  928 iterations (eval and checkpoint period)
from ..common.schedule import epoch_schedule
from .dino_r50_kitti_12ep import dataloader, model, optimizer, train

_NUM_TRAIN_IMAGES = 3712
_BATCH_SIZE = 16
_EPOCHS, _DECAY_EPOCH = 24, 20

train.output_dir = "./output/dino_r50_kitti_24ep"

lr_multiplier = epoch_schedule(train, _NUM_TRAIN_IMAGES, _BATCH_SIZE, _EPOCHS, _DECAY_EPOCH)
