import torch
from detectron2.config import LazyCall as L

from clock_distill.solver import detr_param_groups

# AdamW as in Deformable DETR / DINO: lr 2e-4, weight decay 1e-4, backbone lr x0.1.
AdamW = L(torch.optim.AdamW)(
    params=L(detr_param_groups)(
        # params.model is set by the training script
        base_lr="${..lr}",
        weight_decay=1e-4,
        weight_decay_norm=0.0,
        backbone_lr_factor=0.1,
    ),
    lr=2e-4,
    betas=(0.9, 0.999),
    weight_decay=1e-4,
)
