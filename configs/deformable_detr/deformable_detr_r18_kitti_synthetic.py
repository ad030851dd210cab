# A Deformable DETR (two-stage, box refinement) sized for CPU on the built-in synthetic KITTI:
# R18 (frozen BN, stem frozen, from the synthetic-pretrained weights), D=128, 3+3 layers, 100 queries,
# 3 levels at strides 16, 32 and 64 (C4, C5 and one extra level). Starting at C4 instead of C3
# gives a quarter of the encoder tokens and halves the step time on 2 CPU cores (2.2 -> 1.1 s).
# Data and training recipe: configs/common/kitti_synthetic_cpu.py.
from ..common.kitti_synthetic_cpu import dataloader, lr_multiplier, optimizer, train
from .models.deformable_detr_r18 import model

model.num_classes = 3
model.backbone.out_features = ("res4", "res5")
model.neck.in_features = ("res4", "res5")
model.neck.in_channels = (256, 512)
model.neck.num_outs = 3
model.embed_dim = 128
model.encoder.num_layers = 3
model.encoder.d_ffn = 512
model.encoder.n_levels = 3
model.decoder_layers.num_layers = 3
model.decoder_layers.d_ffn = 512
model.decoder_layers.n_levels = 3
model.num_queries = 100
model.with_box_refine = True
model.as_two_stage = True

train.output_dir = "./output/deformable_detr_r18_kitti_synthetic"
