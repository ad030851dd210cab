# A DAB-DETR sized for CPU on the built-in synthetic KITTI, trained like
# deformable_detr_r18_kitti_synthetic.py (same data, schedule, lr and batch) for comparison:
# R18 (frozen BN, stem frozen, from the synthetic-pretrained weights), single scale C5 (stride 32), D=128, 3+3 layers, 100 anchors.
# Data and training recipe: configs/common/kitti_synthetic_cpu.py.
from ..common.kitti_synthetic_cpu import dataloader, lr_multiplier, optimizer, train
from .models.dab_detr_r18 import model

model.num_classes = 3
model.embed_dim = 128
model.encoder.num_layers = 3
model.encoder.d_ffn = 512
model.decoder_layers.num_layers = 3
model.decoder_layers.d_ffn = 512
model.num_queries = 100
model.select_box_nums_for_evaluation = 100

train.output_dir = "./output/dab_detr_r18_kitti_synthetic"
