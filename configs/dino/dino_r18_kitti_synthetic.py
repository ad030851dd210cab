# A DINO sized for CPU on the built-in synthetic KITTI, trained like
# deformable_detr_r18_kitti_synthetic.py (same data, levels, schedule, lr and batch) for comparison:
# R18 (frozen BN, stem frozen, from the synthetic-pretrained weights), 3 levels at strides 16, 32, 64 (C4, C5, one extra), D=128,
# 3+3 layers, 100 queries, up to 20 positive + 20 negative denoising queries per image.
# Data and training recipe: configs/common/kitti_synthetic_cpu.py.
from ..common.kitti_synthetic_cpu import dataloader, lr_multiplier, optimizer, train
from .models.dino_r18 import model

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
model.dn_number = 20
model.select_box_nums_for_evaluation = 100

train.output_dir = "./output/dino_r18_kitti_synthetic"
