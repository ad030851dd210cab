# Deformable DETR (no box refinement), R50, COCO 2017, the short 12-epoch ("1x") schedule:
# the recipe of deformable_detr_r50_coco_50ep.py with 12 epochs and the lr decay after epoch 11.
#
# Epoch arithmetic (COCO train2017 with annotations: 117266 images; batch 16):
#   1 epoch   = 117266 / 16      =  7329.125  ->  7329 iterations (checkpoint period)
#   12 epochs = 12 * 117266 / 16 = 87949.5    -> 87950 iterations (max_iter; round half to even)
#   epoch 11  = 11 * 117266 / 16 = 80620.375  -> 80620 iterations (lr decay)
#   5 epochs  =  5 * 117266 / 16 = 36645.625  -> 36646 iterations (eval period: evaluations at
#                36646 and 73292, then the final one at 87950)
from ..common.schedule import epoch_schedule
from .deformable_detr_r50_coco_50ep import dataloader, model, optimizer, train

_NUM_TRAIN_IMAGES = 117266
_BATCH_SIZE = 16
_EPOCHS, _DECAY_EPOCH, _EVAL_EVERY_EPOCHS = 12, 11, 5

train.checkpointer.max_to_keep = 12  # all of them
train.output_dir = "./output/deformable_detr_r50_coco_12ep"

lr_multiplier = epoch_schedule(
    train, _NUM_TRAIN_IMAGES, _BATCH_SIZE, _EPOCHS, _DECAY_EPOCH,
    eval_every_epochs=_EVAL_EVERY_EPOCHS, checkpoint_every_epochs=1,
)
