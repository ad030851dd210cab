# The training recipe shared by the three CPU-sized experiments on the built-in synthetic KITTI
# (deformable_detr/, dab_detr/, dino/ *_r18_kitti_synthetic.py and the clock_distill/ synthetic
# configs), defined once so that their numbers compare like for like: 4 images per step, 1000
# steps, AdamW lr 4e-4 with the backbone at lr x0.1, 50 warm-up steps, lr x0.1 from step 800,
# evaluation every 250 steps.
# The backbone starts pretrained, as every real DETR does from ImageNet: here from the stand-in,
# a ResNet pretrained on the synthetic crops (tools/pretrain_backbone.py), which
# "synthetic-pretrained://R-18" names and makes on first use (cached under output/pretrained).
# With real ImageNet weights: train.init_checkpoint=/path/to/R-18.pkl.
# Data: configs/common/data/kitti_synthetic.py (train 1000 / tune 200 / val 400, made on first use).
from clock_distill.pretrain import register_pretrained_handler

from .data.kitti_synthetic import dataloader
from .optim import AdamW as optimizer
from .schedule import step_schedule
from .train import train

register_pretrained_handler()

dataloader.train.total_batch_size = 4

train.init_checkpoint = "synthetic-pretrained://R-18"
train.max_iter = 1000
train.eval_period = 250
train.checkpointer.period = 500
train.log_period = 50
train.seed = 42
lr_multiplier = step_schedule(max_iter=1000, decay_iter=800, warmup_iter=50)
optimizer.lr = 4e-4
optimizer.params.backbone_lr_factor = 0.1
