# DINO-4scale, R50, COCO 2017: the recipe of dino_r50_coco_12ep.py with 24 epochs and the lr
# decay after epoch 20.
#
# Epoch arithmetic (COCO train2017 with annotations: 117266 images; batch 16):
#   24 epochs = 24 * 117266 / 16 = 175899   -> 175899 iterations (max_iter)
#   epoch 20  = 20 * 117266 / 16 = 146582.5 -> 146582 iterations (lr decay; round half to even)
#   5 epochs  =  5 * 117266 / 16 =  36645.6 ->  36646 iterations (eval period: 4 periodic
#                evaluations, the last at 146584, then the final one at 175899)
from ..common.schedule import epoch_schedule
from .dino_r50_coco_12ep import dataloader, model, optimizer, train

_NUM_TRAIN_IMAGES = 117266
_BATCH_SIZE = 16
_EPOCHS, _DECAY_EPOCH = 24, 20

train.checkpointer.max_to_keep = 24
train.output_dir = "./output/dino_r50_coco_24ep"

lr_multiplier = epoch_schedule(train, _NUM_TRAIN_IMAGES, _BATCH_SIZE, _EPOCHS, _DECAY_EPOCH)
