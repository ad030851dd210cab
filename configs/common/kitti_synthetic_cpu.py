# The training recipe shared by the three CPU-sized experiments on the built-in synthetic KITTI
# (deformable_detr/, dab_detr/, dino/ *_r18_kitti_synthetic.py), defined once so that their
# numbers compare like for like: 4 images per step, 1000 steps (25 epochs of the 160 training
# images), AdamW lr 4e-4 with the backbone at full lr (it is trained from scratch), 50 warm-up
# steps, lr x0.1 from step 800, evaluation every 250 steps.
# `make demo` data: datasets/kitti_synthetic (160 train / 40 val images, 640x192).
from .data.kitti_synthetic import dataloader
from .optim import AdamW as optimizer
from .schedule import step_schedule
from .train import train

dataloader.train.total_batch_size = 4

train.max_iter = 1000
train.eval_period = 250
train.checkpointer.period = 500
train.log_period = 50
train.seed = 42
lr_multiplier = step_schedule(max_iter=1000, decay_iter=800, warmup_iter=50)
optimizer.lr = 4e-4
optimizer.params.backbone_lr_factor = 1.0
